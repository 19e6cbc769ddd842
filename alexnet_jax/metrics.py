"""Metrics out of the train loop: JSON lines, TensorBoard events, and a curves PNG at the end."""

from __future__ import annotations

import json
import math
import os

import jax


class MetricWriter:
  """Writes `<workdir>/metrics.jsonl` and TensorBoard events (process 0 only)."""

  def __init__(self, workdir: str):
    self.enabled = jax.process_index() == 0
    self.path = os.path.join(workdir, "metrics.jsonl")
    if self.enabled:
      from tensorboardX import SummaryWriter

      self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))
      self._file = open(self.path, "a", encoding="utf-8")

  def write(self, step: int, split: str, values: dict) -> None:
    if not self.enabled:
      return
    clean = {k: float(v) for k, v in values.items()}
    self._file.write(json.dumps({"step": step, "split": split, **clean}) + "\n")
    self._file.flush()
    for k, v in clean.items():
      if math.isfinite(v):
        self._tb.add_scalar(f"{split}/{k}", v, step)

  def close(self) -> None:
    if self.enabled:
      self._file.close()
      self._tb.close()


def read_metrics(path: str) -> list[dict]:
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


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
