"""Metrics out of the train loop: JSON lines, TensorBoard events, and a curves PNG at the end."""

from __future__ import annotations

import json
import math
import os
import time

import jax
from absl import logging

from alexnet_jax.errors import UserError


class MetricWriter:
  """Writes `<workdir>/metrics.jsonl` and TensorBoard events (process 0 only), both in the
  caller's thread: a write that fails (a full disk) is a `UserError` at once, never a writer
  thread that dies and leaves the run waiting on its queue (tensorboardX's `SummaryWriter`
  does that). Leaving the `with` block closes the files."""

  def __init__(self, workdir: str):
    self.enabled = jax.process_index() == 0
    self.path = os.path.join(workdir, "metrics.jsonl")
    if self.enabled:
      from tensorboardX.event_file_writer import EventsWriter

      events = os.path.join(workdir, "tensorboard")
      try:
        os.makedirs(events, exist_ok=True)
        self._tb = EventsWriter(os.path.join(events, "events"))
        self._file = open(self.path, "a", encoding="utf-8")
      except OSError as e:
        raise UserError(f"cannot write the metrics in {workdir} ({e.strerror or e})") from None

  def __enter__(self) -> "MetricWriter":
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def write(self, step: int, split: str, values: dict) -> None:
    if not self.enabled:
      return
    from tensorboardX.proto.event_pb2 import Event
    from tensorboardX.summary import scalar

    clean = {k: float(v) for k, v in values.items()}
    try:
      self._file.write(json.dumps({"step": step, "split": split, **clean}) + "\n")
      self._file.flush()
      now = time.time()
      for k, v in clean.items():
        if math.isfinite(v):
          self._tb.write_event(Event(wall_time=now, step=step, summary=scalar(f"{split}/{k}", v)))
      self._tb.flush()
    except OSError as e:
      raise UserError(f"cannot write the metrics of step {step} in "
                      f"{os.path.dirname(self.path)} ({e.strerror or e})") from None

  def close(self) -> None:
    if self.enabled:
      self._file.close()
      try:
        self._tb.close()
      except OSError:
        pass


def read_metrics(path: str) -> list[dict]:
  """The records of a metrics.jsonl; a line that is not a JSON object (a run killed while
  writing it) is skipped with a warning."""
  rows, bad = [], 0
  with open(path, encoding="utf-8", errors="replace") as f:
    for line in f:
      if not line.strip():
        continue
      try:
        row = json.loads(line)
      except ValueError:
        row = None
      if isinstance(row, dict) and "step" in row and "split" in row:
        rows.append(row)
      else:
        bad += 1
  if bad:
    logging.warning("%s: skipped %d unreadable line(s) (a run cut while writing?)", path, bad)
  return rows


def plot_curves(metrics_path: str, png_path: str) -> None:
  """Loss, top-1/top-5 error (train and eval) and ε against steps, one panel each."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  rows = read_metrics(metrics_path)
  fig, axes = plt.subplots(1, 3, figsize=(15, 4))
  panels = [("loss", ["loss"]), ("error", ["top1_error", "top5_error"]), ("learning rate", ["lr"])]
  for ax, (title, keys) in zip(axes, panels):
    for split in ("train", "eval", "eval_10crop"):
      for key in keys:
        points = [(r["step"], r[key]) for r in rows if r["split"] == split and key in r]
        if points:
          xs, ys = zip(*points)
          ax.plot(xs, ys, marker="o" if split != "train" else None, markersize=3,
                  label=f"{split} {key}")
    ax.set_title(title)
    ax.set_xlabel("step")
    if title == "learning rate":
      ax.set_yscale("log")
    ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(png_path, dpi=100)
  plt.close(fig)
