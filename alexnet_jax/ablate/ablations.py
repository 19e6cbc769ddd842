"""The single-change ablations (§3.1-§4.2, §7): the baseline and each variant that removes one
ingredient, for every seed, in one table beside the paper's reported changes."""

from __future__ import annotations

import csv
import os
from typing import Sequence

import numpy as np

from alexnet_jax import configuration
from alexnet_jax import workdir as workdir_lib
from alexnet_jax.ablate.runner import Runs, figure, run_one, with_spread, write_lines
from alexnet_jax.configuration import ABLATIONS, VARIANTS

LABELS = {"baseline": "baseline", "lrn": "no LRN", "overlap_pool": "no overlapping pooling",
          "columns": "one column", "pca_lighting": "no PCA lighting", "dropout": "no dropout",
          "relu": "tanh instead of ReLU",
          **{f"conv{i}": f"no conv{i}" for i in range(2, 6)}}


def summarize(results: dict[str, list[dict]], split: str) -> list[dict]:
  """Rows of mean ± std test errors (in %) per variant, with deltas against the baseline."""
  def stats(name, key):
    values = np.array([100 * r[split][key] for r in results[name]])
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0

  base1, _ = stats("baseline", "top1_error")
  base5, _ = stats("baseline", "top5_error")
  rows = []
  for name in results:
    (m1, s1), (m5, s5) = stats(name, "top1_error"), stats(name, "top5_error")
    paper = VARIANTS[ABLATIONS[name]] if name in ABLATIONS else configuration.Variant("", {})
    rows.append({"variant": name, "section": paper.section, "seeds": len(results[name]),
                 "top1": m1, "top1_std": s1, "top5": m5, "top5_std": s5,
                 "delta_top1": m1 - base1, "delta_top5": m5 - base5,
                 "paper_delta_top1": paper.paper_delta[0],
                 "paper_delta_top5": paper.paper_delta[1]})
  return rows


def _fmt(value, signed=False):
  if value is None:
    return "n/r"
  return f"{value:+.2f}" if signed else f"{value:.2f}"


def write_report(rows: list[dict], workdir: str, split: str) -> None:
  with workdir_lib.output_file(os.path.join(workdir, "ablations.csv")) as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
  lines = [f"Test error in % ({split}), mean ± std over seeds (one seed: no spread); Δ = this "
           "variant − baseline (the paper's Δ: how much the ingredient reduced its error; n/r: "
           "not reported).", "",
           "| variant | § | seeds | top-1 | top-5 | Δ top-1 | Δ top-5 | paper Δ top-1 | "
           "paper Δ top-5 |", "|---|---|---|---|---|---|---|---|---|"]
  for r in rows:
    lines.append(f"| {LABELS.get(r['variant'], r['variant'])} | {r['section']} | {r['seeds']} | "
                 f"{with_spread(r['top1'], r['top1_std'], r['seeds'])} | "
                 f"{with_spread(r['top5'], r['top5_std'], r['seeds'])} | "
                 f"{_fmt(r['delta_top1'], True)} | {_fmt(r['delta_top5'], True)} | "
                 f"{_fmt(r['paper_delta_top1'], True)} | {_fmt(r['paper_delta_top5'], True)} |")
  write_lines(os.path.join(workdir, "ablations.md"), lines)

  with figure(os.path.join(workdir, "ablations.png"), (1.4 * len(rows) + 2, 4.0)) as ax:
    bars = ax.bar(range(len(rows)), [r["top1"] for r in rows],
                  yerr=[r["top1_std"] for r in rows],
                  color=["tab:gray"] + ["tab:blue"] * (len(rows) - 1), capsize=4)
    ax.set_xticks(range(len(rows)), [LABELS.get(r["variant"], r["variant"]) for r in rows],
                  rotation=20)
    for bar, r in zip(bars, rows):  # this study's Δ and the paper's, above each bar
      if r["variant"] == "baseline":
        continue
      note = f"Δ {r['delta_top1']:+.2f}\npaper {_fmt(r['paper_delta_top1'], True)}"
      ax.annotate(note, (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                  textcoords="offset points", xytext=(0, 4), ha="center", fontsize=7)
    ax.set_ylabel(f"test top-1 error (%), {split}")
    ax.set_ylim(0, max(r["top1"] + r["top1_std"] for r in rows) * 1.25)
    ax.set_title("each ingredient removed (Δ: error change in points; paper: its reported Δ, "
                 "n/r: not reported)", fontsize=8)


def study(config_path: str, names: list[str], seeds: int, workdir: str,
          overrides: Sequence[str]) -> str:
  """Trains what is missing of baseline + `names` x `seeds`; writes and returns the table."""
  results, progress = {}, Runs((1 + len(names)) * seeds)
  for name in ["baseline"] + names:
    variant = "" if name == "baseline" else ABLATIONS[name]
    results[name] = [run_one(config_path, variant, seed,
                             os.path.join(workdir, name, f"seed{seed}"), overrides, progress)
                     for seed in range(seeds)]
  ten = all("eval_10crop" in r for runs in results.values() for r in runs)
  split = "eval_10crop" if ten else "eval"
  write_report(summarize(results, split), workdir, split)
  with open(os.path.join(workdir, "ablations.md"), encoding="utf-8") as f:
    return f.read()
