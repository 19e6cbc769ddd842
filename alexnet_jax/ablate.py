r"""The paper's claims, trained side by side: single-change ablations (§3.1-§4.2), Figure 1
(ReLU against tanh) and the columns' specialisation (§6.1, Figure 3).

  python -m alexnet_jax.ablate --config=configs/fashion_mnist.py \
      --ablations=lrn,overlap_pool,columns,pca_lighting,dropout,relu --seeds=3 --workdir=DIR

trains the baseline and each variant that removes one ingredient, for every seed, in
DIR/<variant>/seed<k> (an interrupted study resumes: finished runs are kept, a run cut short
resumes from its checkpoints), then writes DIR/ablations.md and DIR/ablations.csv (test top-1
and top-5 error, mean ± std over seeds, the change against the baseline, and the paper's
reported change beside it) and DIR/ablations.png (bars with the seeds' spread).

  python -m alexnet_jax.ablate figure1 --config=... --workdir=DIR [--lrs=...] [--threshold=0.25]

trains the network with ReLU and with tanh, unregularised as in Figure 1 (no dropout, no weight
decay, no PCA lighting, constant ε), for each learning rate of a small sweep, and reports for
each activation the learning rate that reaches the training-error threshold in the fewest
iterations, those iterations and their ratio (the paper: six times fewer with ReLU, to 25 % on
CIFAR-10), in DIR/figure1/figure1.{md,csv,png}. Training error is the train loop's, averaged
over each log interval (random crops and flips included).

  python -m alexnet_jax.ablate precision --config=... --seeds=3 --workdir=DIR

trains the baseline with float32 and with bfloat16 compute (parameters and optimizer state
float32 either way) for every seed and reports whether bfloat16's training-loss curve stays
within float32's seed-to-seed spread (mean |gap| of the mean curves against the mean std over
seeds), with the final test errors, in DIR/precision/precision.{md,csv,png}.

  python -m alexnet_jax.ablate columns --config=... --seeds=3 --workdir=DIR

trains (or reuses) the two-column baseline of each seed in DIR/baseline/seed<k> and reports each
column's conv1 colour specificity (`visualize.colour_specificity`) per seed, and whether one
column is the more colour-specific by --margin in every seed (modulo renumbering, as §6.1
says), in DIR/columns.{md,json}. It needs a colour dataset.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import json
import os
import time
from typing import Sequence

import ml_collections
import numpy as np
from absl import flags, logging

from alexnet_jax import cli, configuration, figures, train
from alexnet_jax import workdir as workdir_lib
from alexnet_jax.data import identity as identity_lib
from alexnet_jax.data import sources
from alexnet_jax.data.identity import Identity
from alexnet_jax.configuration import ABLATIONS, VARIANTS
from alexnet_jax.errors import UserError


def load_config(path: str, variant: str, overrides: Sequence[str]):
  """`--config=path:variant --config.<override>...`: `configuration.load`, the command line's
  loader (overrides 'a.b=value', later ones win)."""
  return configuration.load(f"{path}:{variant}" if variant else path, overrides)


class Runs:
  """A study's progress: before each run, its place among the study's runs and, once one has
  trained, the time left at the pace so far."""

  def __init__(self, total: int):
    self.total, self.index, self.trained, self.seconds = total, 0, 0, 0.0

  def begin(self, label: str, workdir: str, finished: bool) -> None:
    self.index += 1
    left = self.total - self.index + 1
    eta = (f"; about {self.seconds / self.trained * left / 60:.1f} min left"
           if self.trained and not finished else "")
    logging.info("study run %d of %d: %s in %s%s%s", self.index, self.total, label, workdir,
                 " (finished earlier: its result is read)" if finished else "", eta)

  def trained_for(self, seconds: float) -> None:
    self.trained += 1
    self.seconds += seconds


def run_one(config_path: str, variant: str, seed: int, workdir: str,
            overrides: Sequence[str], runs: Runs) -> dict:
  """The final evaluation of one (variant, seed), trained unless already finished. A run's
  `result.json` is written only when it reached its end (a run stopped by SIGTERM/SIGINT stops
  the study, which the same command continues), with the identity of its data: a finished run
  of other data than the study reads now is refused."""
  config = load_config(config_path, variant, overrides)
  config.seed = seed
  run = workdir_lib.RunDir(workdir)
  saved = _read_result(run.read_result())
  runs.begin(f"{variant or 'baseline'} seed {seed}", workdir, finished=saved is not None)
  if saved is not None:
    if saved.get("data"):
      differ = identity_lib.same_data(Identity.from_dict(saved["data"]), _identity(config),
                                      "study")
      if differ:
        raise UserError(f"{workdir} was trained on other data than this study reads "
                        f"({'; '.join(differ)}): use a new --workdir for the study")
    return saved["evaluation"]
  start = time.time()
  result = train.train_and_evaluate(config, workdir,
                                    overridden=[o.split("=", 1)[0] for o in overrides])
  runs.trained_for(time.time() - start)
  if not result.complete or not result.evaluation:
    raise UserError(f"the study stopped: the run in {workdir} was interrupted at step "
                    f"{result.step}; run the same command to continue it")
  run.write_result({"evaluation": result.evaluation, "step": result.step, "data": result.data})
  return result.evaluation


def _read_result(saved) -> dict | None:
  """A finished run's result ({'evaluation', 'step', 'data'}) from its `result.json`; an
  earlier version's (the evaluation alone) without its data; None when there is none or it
  holds no evaluation (an interrupted run of an earlier version wrote one: it is run again)."""
  if isinstance(saved, dict) and "evaluation" in saved and saved["evaluation"]:
    return saved
  if isinstance(saved, dict) and "eval" in saved:
    return {"evaluation": saved}
  return None


@functools.lru_cache(maxsize=None)
def _identity_of(data_json: str, channels: int, num_classes: int) -> Identity:
  data = ml_collections.ConfigDict(json.loads(data_json))
  return sources.load(data, channels=channels, num_classes=num_classes).identity


def _identity(config) -> Identity:
  """The identity of the data `config` reads (once per data section in a study)."""
  return _identity_of(json.dumps(config.data.to_dict(), sort_keys=True),
                      int(config.model.in_channels), int(config.model.num_classes))


def _write_lines(path: str, lines: list[str]) -> None:
  with workdir_lib.output_file(path) as f:
    f.write("\n".join(lines) + "\n")


@contextlib.contextmanager
def _figure(path: str, figsize: tuple[float, float] = (6, 4)):
  """Yields the axes of a new figure, saved as a PNG at `path` when the block ends."""
  with figures.figure(path, figsize=figsize) as (_, ax):
    yield ax


# The bars' labels: what each variant removes.
LABELS = {"baseline": "baseline", "lrn": "no LRN", "overlap_pool": "no overlapping pooling",
          "columns": "one column", "pca_lighting": "no PCA lighting", "dropout": "no dropout",
          "relu": "tanh instead of ReLU"}


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


def _spread(mean: float, std: float, seeds: int) -> str:
  """'m ± s' over seeds; one seed has no spread to show."""
  return f"{mean:.2f} ± {std:.2f}" if seeds > 1 else f"{mean:.2f}"


def write_report(rows: list[dict], workdir: str, split: str) -> None:
  with workdir_lib.output_file(os.path.join(workdir, "ablations.csv")) as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
  lines = [f"Test error in % ({split}), mean ± std over seeds (one seed: no spread); Δ = this "
           "variant − baseline (the paper's Δ: how much the ingredient reduced its error; n/r: not reported).", "",
           "| variant | § | seeds | top-1 | top-5 | Δ top-1 | Δ top-5 | paper Δ top-1 | "
           "paper Δ top-5 |", "|---|---|---|---|---|---|---|---|---|"]
  for r in rows:
    lines.append(f"| {LABELS.get(r['variant'], r['variant'])} | {r['section']} | {r['seeds']} | "
                 f"{_spread(r['top1'], r['top1_std'], r['seeds'])} | "
                 f"{_spread(r['top5'], r['top5_std'], r['seeds'])} | "
                 f"{_fmt(r['delta_top1'], True)} | {_fmt(r['delta_top5'], True)} | "
                 f"{_fmt(r['paper_delta_top1'], True)} | {_fmt(r['paper_delta_top5'], True)} |")
  _write_lines(os.path.join(workdir, "ablations.md"), lines)

  with _figure(os.path.join(workdir, "ablations.png"), (1.4 * len(rows) + 2, 4.0)) as ax:
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


# ----------------------------------------------------------------------------- Figure 1

FIGURE1_OVERRIDES = ("model.dropout=0.0", "optimizer.weight_decay=0.0",
                     "data.pca_lighting=0.0", "schedule.kind=constant",
                     "eval.ten_crop_final=False")


def train_curve(run_dir: str, key: str) -> list[tuple[int, float]]:
  """(step, value) of the train loop's log intervals in `run_dir`, by step (a run resumed from a
  checkpoint logs the steps after it again: the last record of a step counts)."""
  from alexnet_jax import metrics

  by_step = {r["step"]: r[key]
             for r in metrics.run_rows(run_dir) if r["split"] == "train" and key in r}
  return sorted(by_step.items())


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
  _write_lines(os.path.join(out_dir, "figure1.md"), lines)

  with _figure(os.path.join(out_dir, "figure1.png")) as ax:
    for r, style in ((relu, "-"), (tanh, "--")):
      steps, errors = zip(*r["curve"]) if r["curve"] else ((), ())
      ax.plot(steps, [100 * e for e in errors], style, color="k",
              label=f"{r['activation']} (ε = {r['lr']:g})")
    ax.axhline(100 * threshold, color="tab:gray", lw=0.8)
    ax.set_xlabel("iterations")
    ax.set_ylabel("training error rate (%)")
    ax.legend()


# ----------------------------------------------------------------------------- precision

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
                 f"{_spread(s[f'test_top1_{d}'], s[f'test_top1_std_{d}'], s['seeds'])} |")
  lines += ["", f"Largest |gap| between the mean curves: {s['max_abs_gap']:.4f}.",
            f"Within noise (the change of precision moves the curve less than a change of seed "
            f"does): {verdict}."]
  _write_lines(os.path.join(out_dir, "precision.md"), lines)

  with _figure(os.path.join(out_dir, "precision.png")) as ax:
    for d, colour in (("float32", "k"), ("bfloat16", "tab:orange")):
      mean = loss[d].mean(0)
      ax.plot(steps, mean, color=colour, label=d)
      if spread is not None:
        std = loss[d].std(0, ddof=1)
        ax.fill_between(steps, mean - std, mean + std, color=colour, alpha=0.2, lw=0)
    ax.set_xlabel("iterations")
    ax.set_ylabel("training loss (mean over seeds ± std)")
    ax.legend()


# ----------------------------------------------------------------------------- columns

def column_specialisation(config_path: str, seeds: int, workdir: str,
                          overrides: Sequence[str], margin: float) -> dict:
  """Per seed, each column's mean conv1 colour specificity of the trained baseline."""
  from alexnet_jax import inference, visualize

  config = load_config(config_path, "", overrides)
  if config.model.in_channels != 3 or config.model.columns != 2:
    raise UserError(
        "column specialisation needs the two-column network on a colour dataset; "
        f"{config_path} has {config.model.in_channels} input channel(s) and "
        f"{config.model.columns} column(s): greyscale conv1 kernels have no colour to show")
  per_seed, progress = [], Runs(seeds)
  for seed in range(seeds):
    run_dir = os.path.join(workdir, "baseline", f"seed{seed}")
    run_one(config_path, "", seed, run_dir, overrides, progress)
    kernel = np.asarray(inference.load(run_dir).params["conv1"]["kernel"])
    scores = visualize.colour_specificity(kernel)
    high, low = max(scores), min(scores)
    per_seed.append({"seed": seed, "mean_chroma": scores,
                     "colour_column": int(np.argmax(scores)),
                     "relative_gap": (high - low) / high if high > 0 else 0.0})
  consistent = all(s["relative_gap"] >= margin for s in per_seed)
  summary = {"seeds": per_seed, "margin": margin, "one_column_more_colour_specific": consistent}
  lines = ["Mean conv1 kernel chroma per column (0: grey kernels; §6.1 reports one column "
           "largely colour-agnostic and the other colour-specific in every run).", "",
           "| seed | column 0 | column 1 | more colour-specific | relative gap |",
           "|---|---|---|---|---|"]
  for s in per_seed:
    lines.append(f"| {s['seed']} | {s['mean_chroma'][0]:.4f} | {s['mean_chroma'][1]:.4f} | "
                 f"{s['colour_column']} | {100 * s['relative_gap']:.1f} % |")
  lines += ["", f"One column more colour-specific by at least {100 * margin:g} % in every seed: "
            f"{'yes' if consistent else 'no'}."]
  _write_lines(os.path.join(workdir, "columns.md"), lines)
  with workdir_lib.output_file(os.path.join(workdir, "columns.json")) as f:
    json.dump(summary, f, indent=1)
  return summary


# ----------------------------------------------------------------------------- main

def main(argv):
  FLAGS = flags.FLAGS
  command = argv[1] if len(argv) > 1 else "study"
  if len(argv) > 2 or command not in ("study", "figure1", "columns", "precision"):
    raise UserError("usage: python -m alexnet_jax.ablate [figure1|columns|precision] "
                    "--config=... --workdir=...")
  if FLAGS.seeds < 1:
    raise UserError("--seeds must be >= 1")
  overrides = list(FLAGS.override)
  bad = [o for o in overrides if "=" not in o]
  if bad:
    raise UserError(f"--override {bad[0]!r}: expected a.b=value (e.g. num_epochs=1)")
  configuration.load(FLAGS.config, overrides)  # a bad config or override: one line, now
  if command == "figure1":
    try:
      lrs = [float(v) for v in FLAGS.lrs.split(",") if v]
    except ValueError:
      raise UserError(f"--lrs must be comma-separated numbers, got {FLAGS.lrs!r}") from None
    if not lrs or min(lrs) <= 0 or not 0 < FLAGS.threshold < 1:
      raise UserError("--lrs needs positive learning rates and --threshold a fraction in "
                      "(0, 1)")
    print(json.dumps(figure1(FLAGS.config, lrs, FLAGS.threshold, FLAGS.workdir, overrides,
                             FLAGS.log_every), ensure_ascii=False))
  elif command == "precision":
    print(json.dumps(precision(FLAGS.config, FLAGS.seeds, FLAGS.workdir, overrides,
                               FLAGS.log_every), ensure_ascii=False))
  elif command == "columns":
    print(json.dumps(column_specialisation(FLAGS.config, FLAGS.seeds, FLAGS.workdir,
                                           overrides, FLAGS.margin),
                     ensure_ascii=False))
  else:
    names = [a for a in FLAGS.ablations.split(",") if a]
    unknown = [a for a in names if a not in ABLATIONS]
    if unknown:
      raise UserError(f"unknown ablations {unknown}; known: {', '.join(ABLATIONS)}")
    print(study(FLAGS.config, names, FLAGS.seeds, FLAGS.workdir, overrides))


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


if __name__ == "__main__":
  flags.DEFINE_string("config", None, "training config file (no variant)")
  flags.DEFINE_string("workdir", None, "directory of the study")
  flags.DEFINE_string("ablations", "lrn,overlap_pool,columns,pca_lighting,dropout,relu",
                      "comma-separated ingredients to remove one at a time")
  flags.DEFINE_integer("seeds", 3, "seeds per variant")
  flags.DEFINE_multi_string("override", [], "config override a.b=value, as --config.a.b=value "
                            "on the command line, e.g. num_epochs=1 (applied to every run)")
  flags.DEFINE_string("lrs", "0.005,0.01,0.02,0.04", "figure1: learning rates to sweep")
  flags.DEFINE_float("threshold", 0.25, "figure1: training error to reach (Figure 1: 25 %)")
  flags.DEFINE_integer("log_every", 20, "figure1, precision: steps between points of the "
                       "training curves")
  flags.DEFINE_float("margin", 0.2, "columns: relative gap in mean chroma that counts as one "
                     "column being the more colour-specific")
  cli.run(main, required_flags=("config", "workdir"), positional=True)
