"""The paper's single-change claims, trained side by side (§3.1-§4.2, Table 1's deltas).

  python -m alexnet_jax.ablate --config=configs/fashion_mnist.py \
      --ablations=lrn,overlap_pool,columns,pca_lighting,dropout,relu --seeds=3 --workdir=DIR

trains the baseline and each variant that removes one ingredient, for every seed, in
DIR/<variant>/seed<k> (an interrupted study resumes: finished runs are kept, a run cut short
resumes from its checkpoints), then writes DIR/ablations.md and DIR/ablations.csv (test top-1
and top-5 error, mean ± std over seeds, the change against the baseline, and the paper's
reported change beside it) and DIR/ablations.png (bars with the seeds' spread).
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os

import numpy as np
from absl import flags, logging

from alexnet_jax import cli, train

FLAGS = flags.FLAGS

# ablation -> (config variant removing the ingredient, paper section, the paper's reported
# reduction of the top-1 / top-5 error rate by the ingredient, in points; None: not reported)
ABLATIONS = {
    "lrn": ("no_lrn", "§3.3", 1.4, 1.2),
    "overlap_pool": ("no_overlap_pool", "§3.4", 0.4, 0.3),
    "columns": ("one_column", "§3.2", 1.7, 1.2),
    "pca_lighting": ("no_pca_lighting", "§4.1", 1.0, None),  # "by over 1%"
    "dropout": ("no_dropout", "§4.2", None, None),  # "substantial overfitting" without
    "relu": ("tanh", "§3.1", None, None),  # Figure 1: training speed, not error
}


def load_config(path: str, variant: str):
  """`--config=path:variant` as ml_collections would load it."""
  spec = importlib.util.spec_from_file_location("ablation_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(variant)


def run_one(config_path: str, variant: str, seed: int, workdir: str, overrides: dict) -> dict:
  """The final evaluation of one (variant, seed), trained unless already finished."""
  done = os.path.join(workdir, "result.json")
  if os.path.exists(done):
    with open(done, encoding="utf-8") as f:
      return json.load(f)
  config = load_config(config_path, variant)
  config.seed = seed
  for path, value in overrides.items():
    cli.set_field(config, path, value)
  logging.info("training %s seed %d in %s", variant or "baseline", seed, workdir)
  result = train.train_and_evaluate(config, workdir)
  with open(done + ".tmp", "w", encoding="utf-8") as f:
    json.dump(result, f)
  os.replace(done + ".tmp", done)
  return result


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
    paper = ABLATIONS.get(name, (None, "", None, None))
    rows.append({"variant": name, "section": paper[1], "seeds": len(results[name]),
                 "top1": m1, "top1_std": s1, "top5": m5, "top5_std": s5,
                 "delta_top1": m1 - base1, "delta_top5": m5 - base5,
                 "paper_delta_top1": paper[2], "paper_delta_top5": paper[3]})
  return rows


def _fmt(value, signed=False):
  if value is None:
    return "n/r"
  return f"{value:+.2f}" if signed else f"{value:.2f}"


def write_report(rows: list[dict], workdir: str, split: str) -> None:
  with open(os.path.join(workdir, "ablations.csv"), "w", newline="", encoding="utf-8") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
  lines = [f"Test error in % ({split}), mean ± std over seeds; Δ = this variant − baseline "
           "(the paper's Δ: how much the ingredient reduced its error; n/r: not reported).", "",
           "| variant | § | seeds | top-1 | top-5 | Δ top-1 | Δ top-5 | paper Δ top-1 | "
           "paper Δ top-5 |", "|---|---|---|---|---|---|---|---|---|"]
  for r in rows:
    lines.append(f"| {r['variant']} | {r['section']} | {r['seeds']} | {r['top1']:.2f} ± "
                 f"{r['top1_std']:.2f} | {r['top5']:.2f} ± {r['top5_std']:.2f} | "
                 f"{_fmt(r['delta_top1'], True)} | {_fmt(r['delta_top5'], True)} | "
                 f"{_fmt(r['paper_delta_top1'], True)} | {_fmt(r['paper_delta_top5'], True)} |")
  with open(os.path.join(workdir, "ablations.md"), "w", encoding="utf-8") as f:
    f.write("\n".join(lines) + "\n")

  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(1.2 * len(rows) + 2, 3.5))
  ax.bar(range(len(rows)), [r["top1"] for r in rows], yerr=[r["top1_std"] for r in rows],
         color=["tab:gray"] + ["tab:blue"] * (len(rows) - 1), capsize=4)
  ax.set_xticks(range(len(rows)), [r["variant"] for r in rows], rotation=20)
  ax.set_ylabel(f"test top-1 error (%), {split}")
  low = min(r["top1"] - r["top1_std"] for r in rows)
  ax.set_ylim(max(0.0, low - 2), None)
  fig.tight_layout()
  fig.savefig(os.path.join(workdir, "ablations.png"), dpi=100)
  plt.close(fig)


def main(argv):
  if len(argv) > 1:
    raise cli.UserError(f"unexpected arguments: {' '.join(argv[1:])}")
  cli.log_our_info()
  names = [a for a in FLAGS.ablations.split(",") if a]
  unknown = [a for a in names if a not in ABLATIONS]
  if unknown:
    raise cli.UserError(f"unknown ablations {unknown}; known: {', '.join(ABLATIONS)}")
  if FLAGS.seeds < 1:
    raise cli.UserError("--seeds must be >= 1")
  overrides = {}
  for item in FLAGS.override:
    path, _, value = item.partition("=")
    try:
      overrides[path] = json.loads(value)
    except ValueError:
      raise cli.UserError(f"--override {item!r}: the value must be JSON (e.g. 1, 0.5, \"a\", "
                          "[1, 2])") from None
  print(study(FLAGS.config, names, FLAGS.seeds, FLAGS.workdir, overrides))


def study(config_path: str, names: list[str], seeds: int, workdir: str,
          overrides: dict) -> str:
  """Trains what is missing of baseline + `names` x `seeds`; writes and returns the table."""
  results = {}
  for name in ["baseline"] + names:
    variant = "" if name == "baseline" else ABLATIONS[name][0]
    results[name] = [run_one(config_path, variant, seed,
                             os.path.join(workdir, name, f"seed{seed}"), overrides)
                     for seed in range(seeds)]
  ten = all("eval_10crop" in r for runs in results.values() for r in runs)
  split = "eval_10crop" if ten else "eval"
  write_report(summarize(results, split), workdir, split)
  with open(os.path.join(workdir, "ablations.md"), encoding="utf-8") as f:
    return f.read()


if __name__ == "__main__":
  flags.DEFINE_string("config", None, "training config file (no variant)")
  flags.DEFINE_string("workdir", None, "directory of the study")
  flags.DEFINE_string("ablations", "lrn,overlap_pool,columns,pca_lighting,dropout,relu",
                      "comma-separated ingredients to remove one at a time")
  flags.DEFINE_integer("seeds", 3, "seeds per variant")
  flags.DEFINE_multi_string("override", [], "config override path=JSON value, e.g. "
                            "num_epochs=1 (applied to every run)")
  cli.run(main, required_flags=("config", "workdir"))
