"""Figure 1: ReLU against tanh, unregularised, over a small learning-rate sweep."""

from __future__ import annotations

import csv
import os
from typing import Sequence

from alexnet_jax import workdir as workdir_lib
from alexnet_jax.ablate.runner import Runs, figure, run_one, train_curve, write_lines

FIGURE1_OVERRIDES = ("model.dropout=0.0", "optimizer.weight_decay=0.0",
                     "data.pca_lighting=0.0", "schedule.kind=constant",
                     "eval.ten_crop_final=False")


def first_step_below(curve: list[tuple[int, float]], threshold: float) -> int | None:
  """The first logged step whose training error is at or under `threshold`."""
  return next((step for step, error in curve if error <= threshold), None)


def figure1(config_path: str, lrs: list[float], threshold: float, workdir: str,
            overrides: Sequence[str], log_every: int) -> dict:
  """ReLU and tanh, each over `lrs`; returns the summary (also written as md/csv/png)."""
  runs, progress = [], Runs(2 * len(lrs))
  for activation, variant in (("relu", ""), ("tanh", "tanh")):
    for lr in lrs:
      run_dir = os.path.join(workdir, "figure1", activation, f"lr{lr:g}")
      settings = [*FIGURE1_OVERRIDES, f"optimizer.learning_rate={lr!r}",
                  f"log_every_steps={log_every}", *overrides]
      run_one(config_path, variant, 0, run_dir, settings, progress)
      curve = train_curve(run_dir, "top1_error")
      runs.append({"activation": activation, "lr": lr, "curve": curve,
                   "steps_to_threshold": first_step_below(curve, threshold),
                   "final_train_error": curve[-1][1] if curve else float("nan")})

  def best(activation):
    mine = [r for r in runs if r["activation"] == activation]
    reached = [r for r in mine if r["steps_to_threshold"] is not None]
    if reached:
      return min(reached, key=lambda r: (r["steps_to_threshold"], r["final_train_error"]))
    return min(mine, key=lambda r: r["final_train_error"])

  relu, tanh = best("relu"), best("tanh")
  ratio = None
  if relu["steps_to_threshold"] and tanh["steps_to_threshold"]:
    ratio = tanh["steps_to_threshold"] / relu["steps_to_threshold"]
  summary = {"threshold": threshold, "relu_lr": relu["lr"], "tanh_lr": tanh["lr"],
             "relu_steps": relu["steps_to_threshold"], "tanh_steps": tanh["steps_to_threshold"],
             "tanh_over_relu": ratio}
  _write_figure1(runs, relu, tanh, summary, os.path.join(workdir, "figure1"))
  return summary


def _write_figure1(runs, relu, tanh, summary, out_dir) -> None:
  fields = ["activation", "lr", "steps_to_threshold", "final_train_error"]
  with workdir_lib.output_file(os.path.join(out_dir, "figure1.csv")) as f:
    writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(runs)
  threshold = summary["threshold"]
  ratio = summary["tanh_over_relu"]
  lines = [f"Iterations to reach {100 * threshold:g} % training error (Figure 1: unregularised, "
           "constant learning rate; the best learning rate of the sweep per activation is in "
           "bold).", "", "| activation | learning rate | iterations to threshold | final "
           "training error |", "|---|---|---|---|"]
  for r in runs:
    bold = "**" if r is relu or r is tanh else ""
    steps = r["steps_to_threshold"] if r["steps_to_threshold"] is not None else "not reached"
    lines.append(f"| {r['activation']} | {bold}{r['lr']:g}{bold} | {steps} | "
                 f"{100 * r['final_train_error']:.2f} % |")
  lines += ["", f"tanh / ReLU iterations: {ratio:.2f} (the paper: 6, CIFAR-10, 25 %)."
            if ratio else "tanh / ReLU iterations: not available (a network did not reach the "
            "threshold: train longer or raise --threshold)."]
  write_lines(os.path.join(out_dir, "figure1.md"), lines)

  with figure(os.path.join(out_dir, "figure1.png")) as ax:
    for r, style in ((relu, "-"), (tanh, "--")):
      steps, errors = zip(*r["curve"]) if r["curve"] else ((), ())
      ax.plot(steps, [100 * e for e in errors], style, color="k",
              label=f"{r['activation']} (ε = {r['lr']:g})")
    ax.axhline(100 * threshold, color="tab:gray", lw=0.8)
    ax.set_xlabel("iterations")
    ax.set_ylabel("training error rate (%)")
    ax.legend()
