"""A `jax.profiler` trace of a window of training steps (`profile.steps` of them, after this
process's first `profile.skip_steps`), where TensorBoard's Profile tab and Perfetto read it.

Inside the window each step is one `StepTraceAnnotation` ('train', its number: the step-time
views), and the loop's host parts (`Progress.timing`: input wait, dispatch, device wait,
metrics, checkpoint) and the prefetch thread's (the host batch, its transfer) are annotations
of their own on every step, traced or not, so the trace shows where the host's time goes
beside the device's ops. A profile that cannot be started or written is a warning: the run
goes on.
"""

from __future__ import annotations

import gzip
import json
import os

import jax
from absl import logging

from alexnet_jax.errors import UserError, first_line


def validate(profile) -> None:
  """`profile.steps` and `profile.skip_steps` >= 0."""
  for name in ("steps", "skip_steps"):
    if profile[name] < 0:
      raise UserError(f"profile.{name} must be >= 0, got {profile[name]}")


def trace_dir(tensorboard_dir: str, process_index: int) -> str:
  """Where a process writes its trace: the run's TensorBoard folder (process 0's), a folder of
  its own in it for the others (processes on one host would write the same file names)."""
  if process_index == 0:
    return tensorboard_dir
  return os.path.join(tensorboard_dir, f"process_{process_index}")


def newest(directory: str) -> str:
  """The newest profile's folder in `directory` (a trace's log dir); OSError or ValueError when
  it holds none."""
  folder = os.path.join(directory, "plugins", "profile")
  return max((os.path.join(folder, d) for d in os.listdir(folder)), key=os.path.getmtime)


def read(folder: str) -> list[dict]:
  """The events of a profile folder's perfetto_trace.json.gz."""
  with gzip.open(os.path.join(folder, "perfetto_trace.json.gz"), "rt", encoding="utf-8") as f:
    return json.load(f)["traceEvents"]


def ms_per_step(events: list[dict], parts) -> dict:
  """The traced steps' count, their mean host time ('train' annotations) and each of `parts`'
  annotated time per step, in ms."""
  events = [e for e in events if e.get("ph") == "X"]
  steps = [e for e in events if e["name"] == "train"]
  if not steps:
    return {"steps": 0}
  per_step = lambda name: round(sum(float(e["dur"]) for e in events if e["name"] == name)
                                / 1e3 / len(steps), 3)
  return {"steps": len(steps), "step_ms": per_step("train"),
          "host_ms": {part: per_step(part) for part in parts}}


class StepTrace:
  """The trace of steps `first` ... `last` of a run that starts (or resumes) after
  `start_step`: `first` is `skip_steps` after the first step (which compiles the step), `last`
  at most the run's `total_steps`. The loop calls `begin(step)` before each step's work and
  `end(step, state)` after it; `close` ends a trace the loop left inside its window (a signal,
  an error)."""

  def __init__(self, directory: str, profile, start_step: int, total_steps: int):
    self.directory, self.python = directory, profile.python
    self.first = start_step + 1 + profile.skip_steps
    self.last = min(self.first + profile.steps - 1, total_steps)
    self._tracing = False
    self._annotation = None
    self._step = start_step  # the last step begun

  def begin(self, step: int) -> None:
    self._step = step
    if step == self.first and step <= self.last:
      try:
        options = jax.profiler.ProfileOptions()
        options.python_tracer_level = int(self.python)
        jax.profiler.start_trace(self.directory, create_perfetto_trace=True,
                                 profiler_options=options)
      except (RuntimeError, OSError) as e:
        logging.warning("profile of steps %d-%d not taken: %s", self.first, self.last,
                        first_line(e) or type(e).__name__)
        return
      self._tracing = True
      logging.info("profiling steps %d-%d", self.first, self.last)
    if self._tracing:
      self._annotation = jax.profiler.StepTraceAnnotation("train", step_num=step)
      self._annotation.__enter__()

  def end(self, step: int, state) -> None:
    """After `step`'s work was dispatched: the last step's device work is waited for, so that
    the trace holds it."""
    self._end_annotation()
    if self._tracing and step >= self.last:
      jax.block_until_ready(state)
      self._stop()

  def __enter__(self) -> "StepTrace":
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def close(self) -> None:
    self._end_annotation()
    if self._tracing:
      self._stop()

  def _end_annotation(self) -> None:
    if self._annotation is not None:
      self._annotation.__exit__(None, None, None)
      self._annotation = None

  def _stop(self) -> None:
    self._tracing = False
    try:
      jax.profiler.stop_trace()
      folder = newest(self.directory)
    except (RuntimeError, OSError, ValueError) as e:
      logging.warning("the profile of steps %d-%d could not be written to %s: %s", self.first,
                      self._step, self.directory, first_line(e) or type(e).__name__)
      return
    logging.info(
        "profile of steps %d-%d written to %s: TensorBoard's Profile tab (`tensorboard "
        "--logdir=%s` with the tensorboard-plugin-profile package), or its "
        "perfetto_trace.json.gz opened at ui.perfetto.dev", self.first, self._step, folder,
        self.directory)
