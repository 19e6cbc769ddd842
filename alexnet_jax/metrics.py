"""Metrics out of the train loop: JSON lines, TensorBoard events, and a curves PNG at the end."""

from __future__ import annotations

import contextlib
import json
import math
import os
import time

import jax
from absl import logging

from alexnet_jax import configuration, figures
from alexnet_jax import workdir as workdir_lib
from alexnet_jax.errors import UserError

# The metrics TensorBoard's HParams dashboard shows beside each run's config.
HPARAMS_METRICS = ("eval/top1_error", "eval/top5_error", "eval_10crop/top1_error",
                   "eval_10crop/top5_error", "train/loss")


class MetricWriter:
  """Writes `<workdir>/metrics.jsonl` and TensorBoard events (process 0 only), both in the
  caller's thread: a write that fails (a full disk) is a `UserError` at once, never a writer
  thread that dies and leaves the run waiting on its queue (tensorboardX's `SummaryWriter`
  does that). Leaving the `with` block closes the files."""

  def __init__(self, workdir: str):
    self.enabled = jax.process_index() == 0
    run = workdir_lib.RunDir(workdir)
    self.path = run.metrics
    if self.enabled:
      from tensorboardX.event_file_writer import EventsWriter

      events = run.tensorboard
      try:
        os.makedirs(events, exist_ok=True)
        self._tb = EventsWriter(os.path.join(events, "events"))
        self._file = open(self.path, "a+b")
        if self._file.tell() > 0:  # a run killed mid-line leaves one: end it, not the next
          self._file.seek(-1, os.SEEK_END)
          if self._file.read(1) != b"\n":
            self._file.write(b"\n")
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
    with self._failing_as(f"the metrics of step {step}"):
      self._file.write((json.dumps({"step": step, "split": split, **clean}) + "\n").encode())
      self._file.flush()
      now = time.time()
      for k, v in clean.items():
        if math.isfinite(v):
          self._tb.write_event(Event(wall_time=now, step=step, summary=scalar(f"{split}/{k}", v)))
      self._tb.flush()

  def write_config(self, config) -> None:
    """The run's config as its session in TensorBoard's HParams dashboard: each field by its
    dotted name (a value that is not a number, a string or a bool as its text), with
    `HPARAMS_METRICS`; runs whose workdirs are under one `--logdir` show side by side."""
    if not self.enabled:
      return
    from tensorboardX.proto.event_pb2 import Event
    from tensorboardX.summary import hparams

    fields = {k: v if isinstance(v, (bool, int, float, str)) else str(v)
              for k, v in configuration.flat(config).items()}
    with self._failing_as("the config's TensorBoard record"):
      for summary in hparams(fields, dict.fromkeys(HPARAMS_METRICS)):
        self._tb.write_event(Event(wall_time=time.time(), step=0, summary=summary))
      self._tb.flush()

  @contextlib.contextmanager
  def _failing_as(self, what: str):
    """A write that fails (a full disk) as a one-line `UserError` naming `what`."""
    try:
      yield
    except OSError as e:
      raise UserError(f"cannot write {what} in {os.path.dirname(self.path)} "
                      f"({e.strerror or e})") from None

  def close(self) -> None:
    if self.enabled:
      self._file.close()
      try:
        self._tb.close()
      except OSError:
        pass


def _well_formed(row) -> bool:
  """A record as the loop writes it: an integer step, a split name, and numbers (or null, a
  value not measured) for every other field."""
  numeric = lambda v: v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))
  return (isinstance(row, dict) and isinstance(row.get("step"), int)
          and not isinstance(row.get("step"), bool) and isinstance(row.get("split"), str)
          and all(numeric(v) for k, v in row.items() if k not in ("step", "split")))


def run_rows(workdir: str) -> list[dict]:
  """The metrics rows of the run in `workdir` (none when it has not logged any)."""
  path = workdir_lib.RunDir(workdir).metrics
  return read_metrics(path) if os.path.exists(path) else []


def read_metrics(path: str) -> list[dict]:
  """The records of a metrics.jsonl; a line that is not such a record (a run killed while
  writing it, a line edited by hand) is skipped with a warning."""
  rows, bad = [], 0
  with open(path, encoding="utf-8", errors="replace") as f:
    for line in f:
      if not line.strip():
        continue
      try:
        row = json.loads(line)
      except ValueError:
        row = None
      if _well_formed(row):
        rows.append(row)
      else:
        bad += 1
  if bad:
    logging.warning("%s: skipped %d unreadable line(s) (a run cut while writing?)", path, bad)
  return rows


EVALUATIONS = {"eval": "centre crop", "eval_10crop": "ten crops (§4.1)"}  # split: its name
SPLITS = {"train": "training (random crops, dropout)",
          **{split: f"validation, {name}" for split, name in EVALUATIONS.items()}}


TOP5_CLASSES = 10  # the top-5 panel is drawn for more classes than this


def plot_curves(metrics_path: str, png_path: str, num_classes: int) -> None:
  """The run's curves against epochs: loss; top-1 and top-5 error in % (each on its own
  scale, the last validation figures written on the panel; top-5 only with more than
  `TOP5_CLASSES` classes, below which it is near 0 and says nothing); every parameter's ε as
  the steps it is (one line per group of parameters that share their ε when they differ)."""
  rows = read_metrics(metrics_path)
  train = [r for r in rows if r["split"] == "train" and "epoch" in r]
  per_step = train[-1]["epoch"] / train[-1]["step"] if train else None
  epoch = lambda r: r["epoch"] if "epoch" in r else (r["step"] * per_step if per_step else
                                                      r["step"])
  panels = (("loss", "loss", 1.0), ("top-1 error (%)", "top1_error", 100.0),
            ("top-5 error (%)", "top5_error", 100.0))[:3 if num_classes > TOP5_CLASSES else 2]
  with figures.figure(png_path, 1, len(panels) + 1,
                      figsize=(5 * (len(panels) + 1), 4.2)) as (_, axes):
    for ax, (title, key, scale) in zip(axes, panels):
      for split, label in SPLITS.items():
        points = [(epoch(r), scale * r[key]) for r in rows if r["split"] == split and key in r]
        if not points:
          continue
        xs, ys = zip(*points)
        ax.plot(xs, ys, marker="o" if split != "train" else ".",
                markersize=4 if split != "train" else 2, label=label)
        if split != "train" and scale != 1.0:
          ax.annotate(f"{ys[-1]:.2f} %", (xs[-1], ys[-1]), textcoords="offset points",
                      xytext=(-30, 8 if split == "eval" else -14), fontsize=8)
      ax.set_title(title)
      ax.set_xlabel("epoch")
      ax.grid(alpha=0.3)
      if ax.lines:
        ax.legend(fontsize=7)
    _plot_rates(axes[-1], train, epoch)


def _plot_rates(ax, train: list[dict], epoch) -> None:
  """ε against epochs as steps (the value at each logged step holds until the next); the
  parameters whose rates differ (`lr/<layer>/<kind>` keys) grouped by identical curves."""
  curves = {}
  for r in train:
    for key, value in r.items():
      if key == "lr" or key.startswith("lr/"):
        curves.setdefault(key, []).append((epoch(r), value))
  groups = {}
  for key, points in curves.items():
    if key != "lr":
      groups.setdefault(tuple(v for _, v in points), []).append(key[3:])
  lines = [("ε", curves["lr"])] if not groups and "lr" in curves else [
      (", ".join(names) if len(names) <= 3 else f"{names[0]} and {len(names) - 1} more",
       curves[f"lr/{names[0]}"]) for names in groups.values()]
  for i, (label, points) in enumerate(lines):  # dashed, thinner lines stay visible on top
    positive = [(x, y) for x, y in points if y > 0]
    if positive:
      ax.plot(*zip(*positive), drawstyle="steps-post", label=label,
              linestyle=("-", "--", ":", "-.")[i % 4], linewidth=max(2.5 - 0.5 * i, 1.0))
  ax.set_yscale("log")
  ax.set_title("learning rate ε (0: frozen, not drawn)" if groups else "learning rate ε")
  ax.set_xlabel("epoch")
  ax.grid(alpha=0.3)
  if lines:
    ax.legend(fontsize=7)
