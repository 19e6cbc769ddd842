"""bfloat16 against float32 compute: the training-loss curve against float32's seed spread."""

from __future__ import annotations

import csv
import os
from typing import Sequence

import numpy as np

from alexnet_jax import workdir as workdir_lib
from alexnet_jax.ablate.runner import (Runs, figure, run_one, train_curve, with_spread,
                                       write_lines)
from alexnet_jax.errors import UserError


def precision(config_path: str, seeds: int, workdir: str, overrides: Sequence[str],
              log_every: int) -> dict:
  """float32 and bfloat16 compute (float32 parameters and optimizer state either way), each
  seed: the training loss curves, bfloat16's gap to float32 against float32's seed-to-seed
  spread, and the final test errors. Written to DIR/precision/precision.{md,csv,png}."""
  curves, finals, progress = {}, {}, Runs(2 * seeds)
  for dtype in ("float32", "bfloat16"):
    curves[dtype], finals[dtype] = [], []
    for seed in range(seeds):
      run_dir = os.path.join(workdir, "precision", dtype, f"seed{seed}")
      result = run_one(config_path, "", seed, run_dir,
                       [*overrides, f"model.dtype={dtype}", f"log_every_steps={log_every}"],
                       progress)
      curves[dtype].append(dict(train_curve(run_dir, "loss")))
      split = "eval_10crop" if "eval_10crop" in result else "eval"
      finals[dtype].append(100 * result[split]["top1_error"])
  steps = sorted(set.intersection(*(set(c) for runs in curves.values() for c in runs)))
  if not steps:
    raise UserError("the runs logged no common training steps: lower --log_every")
  loss = {dtype: np.array([[c[step] for step in steps] for c in runs])
          for dtype, runs in curves.items()}
  gap = np.abs(loss["bfloat16"].mean(0) - loss["float32"].mean(0))
  spread = loss["float32"].std(0, ddof=1) if seeds > 1 else None
  summary = {"seeds": seeds, "steps": steps[-1], "points": len(steps),
             "mean_abs_gap": float(gap.mean()), "max_abs_gap": float(gap.max()),
             "mean_seed_spread": float(spread.mean()) if spread is not None else None,
             "within_noise": bool(gap.mean() <= spread.mean()) if spread is not None else None,
             **{f"final_loss_{d}": float(loss[d][:, -1].mean()) for d in loss},
             **{f"test_top1_{d}": float(np.mean(v)) for d, v in finals.items()},
             **{f"test_top1_std_{d}": float(np.std(v, ddof=1)) if seeds > 1 else 0.0
                for d, v in finals.items()}}
  _write_precision(steps, loss, spread, summary, os.path.join(workdir, "precision"))
  return summary


def _write_precision(steps, loss, spread, summary, out_dir) -> None:
  with workdir_lib.output_file(os.path.join(out_dir, "precision.csv")) as f:
    writer = csv.writer(f)
    writer.writerow(["step", "float32_mean", "float32_std", "bfloat16_mean", "bfloat16_std"])
    ddof = 1 if summary["seeds"] > 1 else 0
    for i, step in enumerate(steps):
      writer.writerow([step] + [f"{v:.6f}" for d in ("float32", "bfloat16")
                                for v in (loss[d][:, i].mean(), loss[d][:, i].std(ddof=ddof))])
  s = summary
  verdict = ("not decided: one seed gives no seed-to-seed spread (use --seeds >= 2)"
             if s["within_noise"] is None else
             f"{'yes' if s['within_noise'] else 'no'}: bfloat16's mean |gap| to float32, "
             f"{s['mean_abs_gap']:.4f}, against float32's mean seed-to-seed std, "
             f"{s['mean_seed_spread']:.4f}")
  lines = [f"Training loss, float32 against bfloat16 compute (float32 parameters and optimizer "
           f"state), {s['seeds']} seed(s), {s['points']} logged points up to step {s['steps']}.",
           "", "| compute | final training loss | test top-1 error (%) |", "|---|---|---|"]
  for d in ("float32", "bfloat16"):
    lines.append(f"| {d} | {s[f'final_loss_{d}']:.4f} | "
                 f"{with_spread(s[f'test_top1_{d}'], s[f'test_top1_std_{d}'], s['seeds'])} |")
  lines += ["", f"Largest |gap| between the mean curves: {s['max_abs_gap']:.4f}.",
            f"Within noise (the change of precision moves the curve less than a change of seed "
            f"does): {verdict}."]
  write_lines(os.path.join(out_dir, "precision.md"), lines)

  with figure(os.path.join(out_dir, "precision.png")) as ax:
    for d, colour in (("float32", "k"), ("bfloat16", "tab:orange")):
      mean = loss[d].mean(0)
      ax.plot(steps, mean, color=colour, label=d)
      if spread is not None:
        std = loss[d].std(0, ddof=1)
        ax.fill_between(steps, mean - std, mean + std, color=colour, alpha=0.2, lw=0)
    ax.set_xlabel("iterations")
    ax.set_ylabel("training loss (mean over seeds ± std)")
    ax.legend()
