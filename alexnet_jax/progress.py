"""Progress of long jobs: the training loop's (a tqdm bar on a terminal, periodic log lines with
images/s and ETA otherwise, the host's time per step by part), and any loop's (`track`:
evaluations, `evaluate`, `features`, `ablate`)."""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Iterable, Iterator

import jax
from absl import logging

from alexnet_jax.metrics import EVALUATIONS


def track(iterable: Iterable, total: int | None, what: str, unit: str = "batch") -> Iterator:
  """The items of `iterable`, with progress: a tqdm bar on a terminal; otherwise a log line
  with the count, rate and ETA every 30 s (none for work done within 10 s)."""
  if sys.stderr.isatty() and jax.process_index() == 0:
    from tqdm import tqdm

    yield from tqdm(iterable, total=total, desc=what, unit=unit, dynamic_ncols=True, leave=False)
    return
  start = last = time.time()
  for done, item in enumerate(iterable, 1):
    yield item
    now = time.time()
    if now - last >= 30 and now - start >= 10:
      last = now
      rate = done / (now - start)
      eta = f", ETA {(total - done) / rate / 60:.1f} min" if total else ""
      logging.info("%s: %d%s %s(s), %.2f %s/s%s", what, done, f"/{total}" if total else "",
                   unit, rate, unit, eta)


class Progress:
  """The training loop's progress from step `start` to `total`; `close` (or leaving the `with`
  block) closes the bar."""

  # The main thread's time per step, by part: waiting for input, dispatching the step, waiting
  # for the device to finish the steps whose metrics a log line needs, fetching and checking
  # those metrics and writing the log line, checkpoints; the rest of the loop is "other".
  PARTS = ("input_wait", "dispatch", "device_wait", "metrics", "checkpoint")

  def __init__(self, start: int, total: int, batch_size: int):
    self.start, self.total, self.batch_size = start, total, batch_size
    self.t0, self.s0, self.last = time.time(), start, start
    self.seconds = dict.fromkeys(self.PARTS, 0.0)  # since the last interval
    self.totals = dict.fromkeys(self.PARTS, 0.0)  # since the loop started
    self.counts = dict.fromkeys(self.PARTS, 0)  # the parts timed since the loop started
    self._interval_start = (time.perf_counter(), start)
    self.bar = None
    if sys.stderr.isatty() and jax.process_index() == 0:
      from tqdm import tqdm

      self.bar = tqdm(total=total, initial=start, unit="step", dynamic_ncols=True)

  def __enter__(self) -> "Progress":
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def elapsed(self) -> float:
    """Seconds since this run's loop started."""
    return time.time() - self.t0

  def rate(self) -> float:
    """Images per second since this run started (compilation included)."""
    elapsed = self.elapsed()
    return (self.last - self.s0) * self.batch_size / elapsed if elapsed > 0 else 0.0

  @contextlib.contextmanager
  def timing(self, part: str):
    """Times `part` of the step and annotates it for a profile (`profiling`)."""
    start = time.perf_counter()
    try:
      with jax.profiler.TraceAnnotation(part):
        yield
    finally:
      spent = time.perf_counter() - start
      self.seconds[part] += spent
      self.totals[part] += spent
      self.counts[part] += 1

  def interval(self, step: int, transfer_seconds: float = 0.0) -> dict:
    """Since the last call: images/s, the fraction of the loop's time spent waiting for the
    input pipeline (the device idles for want of data), and the host's milliseconds per step
    by part (`host_ms/*`; `transfer` is the prefetch thread's, beside the main thread)."""
    now = time.perf_counter()
    (then, first), self._interval_start = self._interval_start, (now, step)
    elapsed, steps = max(now - then, 1e-9), max(step - first, 1)
    parts, self.seconds = self.seconds, dict.fromkeys(self.PARTS, 0.0)
    out = {"img_per_s": (step - first) * self.batch_size / elapsed,
           "input_wait_fraction": min(parts["input_wait"] / elapsed, 1.0)}
    out.update({f"host_ms/{k}": 1e3 * v / steps for k, v in parts.items()})
    out["host_ms/other"] = 1e3 * max(elapsed - sum(parts.values()), 0.0) / steps
    out["host_ms/transfer"] = 1e3 * transfer_seconds / steps
    return out

  def update(self, step: int) -> None:
    self.last = step
    if self.bar:
      self.bar.update(1)

  def log(self, step: int, summary: dict) -> None:
    overall, rate = self.rate(), summary["img_per_s"]
    eta = (self.total - step) * self.batch_size / overall if overall else float("nan")
    text = (f"step {step}/{self.total} epoch {summary['epoch']:.2f} loss {summary['loss']:.4f} "
            f"training top-1 error {100 * summary['top1_error']:.2f} % ε {summary['lr']:.3g} "
            f"|g| {summary['grad_norm']:.3g} {rate:.0f} img/s (input wait "
            f"{100 * summary['input_wait_fraction']:.0f} %) ETA {eta / 60:.1f} min")
    if summary.get("skipped_images"):
      text += f" ({summary['skipped_images']} unreadable images skipped)"
    if self.bar:
      self.bar.set_postfix_str(f"loss {summary['loss']:.3f} {rate:.0f} img/s")
    else:
      logging.info(text)

  def log_eval(self, step: int, epoch: float, evaluation: dict, seconds: float) -> None:
    parts = [f"{EVALUATIONS.get(split, split)}: top-1 error {100 * r['top1_error']:.2f} % "
             f"(accuracy {100 * (1 - r['top1_error']):.2f} %), top-5 error "
             f"{100 * r['top5_error']:.2f} %, loss {r['loss']:.4f}"
             + (f" ({r['skipped_images']} unreadable skipped)" if r.get("skipped_images") else "")
             for split, r in evaluation.items()]
    message = (f"validation at step {step} (epoch {epoch:.2f}, {seconds:.1f} s): "
               + "; ".join(parts))
    if self.bar:
      self.bar.write(message)
    logging.info(message)

  def close(self) -> None:
    if self.bar:
      self.bar.close()
      self.bar = None
