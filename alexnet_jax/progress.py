"""Progress of the training loop: a tqdm bar on a terminal, periodic log lines (images/s, ETA)
otherwise, and the host's time per step by part."""

from __future__ import annotations

import contextlib
import sys
import time

import jax
from absl import logging


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
    self._interval_start = (time.perf_counter(), start)
    self.bar = None
    if sys.stderr.isatty() and jax.process_index() == 0:
      from tqdm import tqdm

      self.bar = tqdm(total=total, initial=start, unit="step", dynamic_ncols=True)

  def __enter__(self) -> "Progress":
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def rate(self) -> float:
    """Images per second since this run started (compilation included)."""
    elapsed = time.time() - self.t0
    return (self.last - self.s0) * self.batch_size / elapsed if elapsed > 0 else 0.0

  @contextlib.contextmanager
  def timing(self, part: str):
    start = time.perf_counter()
    try:
      yield
    finally:
      self.seconds[part] += time.perf_counter() - start

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
            f"top1 {summary['top1_error']:.4f} lr {summary['lr']:.3g} "
            f"|g| {summary['grad_norm']:.3g} {rate:.0f} img/s (input wait "
            f"{100 * summary['input_wait_fraction']:.0f}%) ETA {eta / 60:.1f} min")
    if summary.get("skipped_images"):
      text += f" ({summary['skipped_images']} unreadable images skipped)"
    if self.bar:
      self.bar.set_postfix_str(f"loss {summary['loss']:.3f} {rate:.0f} img/s")
    else:
      logging.info(text)

  def log_eval(self, step: int, evaluation: dict) -> None:
    parts = [f"{split}: top-1 {r['top1_error']:.4f} top-5 {r['top5_error']:.4f} loss "
             f"{r['loss']:.4f}" + (f" ({r['skipped_images']} unreadable skipped)"
                                   if r.get("skipped_images") else "")
             for split, r in evaluation.items()]
    message = f"eval at step {step}: " + "; ".join(parts)
    if self.bar:
      self.bar.write(message)
    logging.info(message)

  def close(self) -> None:
    if self.bar:
      self.bar.close()
      self.bar = None
