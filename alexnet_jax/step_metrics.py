"""The training steps' metrics on their way to the host: fetched and checked for divergence by a
background thread as the device finishes each step (the loop's thread never waits on a
transfer), then averaged over the steps since the last log line.

Divergence stops the run before anything is saved: a loss that is not finite, or a loss or
global parameter norm above `divergence.factor` times its running mean (0: finiteness only).
Every checkpoint is written right after `fetch` has seen every step before it, so the last one
holds sane values.
"""

from __future__ import annotations

import math
import queue
import threading

import jax
import numpy as np

from alexnet_jax.errors import UserError


def validate(divergence_config) -> None:
  """`divergence.factor`: 0 (finiteness only) or a finite number above 1."""
  factor = divergence_config.factor
  if not (factor == 0 or (math.isfinite(factor) and factor > 1)):
    raise UserError(f"divergence.factor must be 0 (off) or a finite number > 1, got {factor}")


class StepMetrics:
  """See the module docstring; `close` (or leaving the `with` block) ends the thread."""

  WATCHED = {"loss": "loss", "param_norm": "parameter norm"}

  def __init__(self, divergence_factor: float = 0.0):
    self._factor = float(divergence_factor)
    self._running = {}  # watched metric -> running mean (exponential, 0.9)
    self._fetched = []  # (step, metrics on the host) since the last summary
    self._queue = queue.Queue()
    self._added = self._done = 0
    self._divergence = None  # (step, what, value, running mean or None): the first one
    self._error = None  # what the first failed fetch or check raised
    self._changed = threading.Condition()
    self._thread = threading.Thread(target=self._run, name="step-metrics", daemon=True)
    self._thread.start()

  def __enter__(self) -> "StepMetrics":
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def add(self, step: int, step_metrics) -> None:
    self._added += 1
    self._queue.put((step, step_metrics))

  def _run(self) -> None:
    while (item := self._queue.get()) is not None:
      try:
        self._take(*item)
      except Exception as e:  # a step that failed on the device fails its fetch: `wait` raises it
        self._error = e
      with self._changed:
        self._done += 1
        self._changed.notify_all()

  def _take(self, step: int, values) -> None:
    if self._divergence is not None or self._error is not None:
      return
    host = jax.device_get(values)
    divergence = self._check(step, host)
    with self._changed:
      if divergence is None:
        self._fetched.append((step, host))
      self._divergence = divergence

  def _check(self, step: int, values: dict):
    for name, said in self.WATCHED.items():
      value = float(values[name])
      running = self._running.get(name)
      if not np.isfinite(value):
        return step, said, value, None
      if self._factor and running and value > self._factor * running:
        return step, said, value, running
      self._running[name] = value if running is None else 0.9 * running + 0.1 * value
    return None

  def behind(self, steps: int) -> None:
    """Blocks while more than `steps` of the steps added are not fetched yet: each is fetched
    as the device finishes it, so the device is then at most `steps` steps behind."""
    with self._changed:
      self._changed.wait_for(lambda: self._added - self._done <= steps)

  def wait(self) -> None:
    """Blocks until every step added so far has been fetched and checked; raises what a failed
    fetch raised (a device error surfaces here, not as a thread's traceback and a wait forever)."""
    with self._changed:
      self._changed.wait_for(lambda: self._done == self._added)
    if self._error is not None:
      raise self._error

  def fetch(self, last_saved: int | None) -> None:
    """Waits for the steps added so far; raises `UserError` if one diverged."""
    self.wait()
    if self._divergence is None:
      return
    step, said, value, running = self._divergence
    kept = (f"the last checkpoint (step {last_saved}) was written before it and is intact"
            if last_saved is not None else "no checkpoint was written")
    what = (f"became {value}" if running is None else
            f"exploded at step {step} ({value:.4g}, more than {self._factor:g} x its running "
            f"mean {running:.4g})")
    at = f" at step {step}" if running is None else ""
    raise UserError(f"the {said} {what}{at}: stopping without saving; {kept}. Lower "
                    "--config.optimizer.learning_rate or check the input data")

  def close(self) -> None:
    self._queue.put(None)
    self._thread.join(timeout=60)

  def summary(self) -> dict | None:
    """Means of the scalar metrics since the last summary, the per-layer values of the last
    step that has them (keys with '/'); None when no step has run since."""
    if not self._fetched:
      return None
    steps = self._fetched
    out = {k: float(np.mean([m[k] for _, m in steps])) for k in steps[-1][1] if "/" not in k}
    for _, m in steps:
      out.update({k: float(v) for k, v in m.items() if "/" in k})
    self._fetched = []
    return out
