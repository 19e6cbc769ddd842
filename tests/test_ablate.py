"""The ablation study runner: table, plot, and resuming an interrupted study."""

import csv
import json
import logging
import os

import numpy as np
import pytest
from PIL import Image

from alexnet_jax import inference, metrics, train, visualize
from alexnet_jax.ablate import ablations, columns, figure1, precision
from conftest import sigterm_at_step

OVERRIDES = [  # the small synthetic set-up of conftest.small_config, one epoch
    "data.name=synthetic", "data.image_size=36", "data.batch_size=16",
    "data.eval_batch_size=16", "data.synthetic_train_size=32", "data.synthetic_eval_size=16",
    "data.pixel_scale=0.015625", "schedule.kind=constant", "num_epochs=1.0",
    "log_every_steps=2", "checkpoint.every_steps=2", "eval.ten_crop_final=False"]


@pytest.fixture
def study_runs(caplog):
  """The "study run i of N" the studies have logged so far (absl's INFO lines captured)."""
  caplog.set_level(logging.INFO, logger="absl")
  return lambda: [m.split(":")[0] for m in caplog.messages if m.startswith("study run")]


@pytest.mark.slow
def test_a_study_gives_a_table_and_a_plot_stops_at_an_interrupted_run_and_refuses_other_data(
    tmp_path, monkeypatch, caplog):
  """SIGTERM (SLURM's preemption) ends a run normally with its checkpoint: the study used to
  write that mid-training evaluation (or {}) as the run's result and go on; a {} then failed
  every rerun with KeyError: 'eval'. The same command continues the study."""
  from alexnet_jax.errors import UserError

  workdir = str(tmp_path)
  with sigterm_at_step(1), pytest.raises(
      UserError, match=r"the study stopped: the run in .*baseline/seed0 was interrupted at step "
                       r"1; run the same command"):
    ablations.study("configs/tiny.py", ["lrn", "pca_lighting"], 1, workdir, OVERRIDES)
  assert not os.path.exists(tmp_path / "baseline" / "seed0" / "result.json")
  (tmp_path / "lrn" / "seed0").mkdir(parents=True)
  (tmp_path / "lrn" / "seed0" / "result.json").write_text("{}")  # an earlier version's
  caplog.set_level(logging.INFO, logger="absl")
  caplog.clear()
  table = ablations.study("configs/tiny.py", ["lrn", "pca_lighting"], 1, workdir, OVERRIDES)
  runs = [line for line in caplog.messages if line.startswith("study run")]
  assert [line.split(":")[0] for line in runs] == [f"study run {i} of 3" for i in (1, 2, 3)]
  assert "min left" not in runs[0] and "min left" in runs[1] and "min left" in runs[2]
  assert "lrn seed 0 in " in runs[1]
  lines = table.splitlines()
  assert lines[2].startswith("| variant |") and len(lines) == 7
  # What each variant removes, its one seed without a ± 0.00 spread, and the paper's LRN delta.
  # Mutations: the table's first column back to the variant's key -> red ('| lrn |'); the
  # spread printed for one seed -> red.
  assert "| no LRN | §3.3 | 1 |" in table and "+1.40" in table and " ± " not in lines[-1]
  with open(os.path.join(workdir, "ablations.csv"), newline="") as f:
    rows = list(csv.DictReader(f))
  assert [r["variant"] for r in rows] == ["baseline", "lrn", "pca_lighting"]
  assert float(rows[0]["delta_top1"]) == 0.0
  with Image.open(os.path.join(workdir, "ablations.png")) as png:
    assert png.format == "PNG" and png.size[0] > 300
  with open(tmp_path / "baseline" / "seed0" / "result.json") as f:
    saved = json.load(f)
  assert saved["step"] == 2 and saved["data"]["name"] == "synthetic" and "eval" in saved[
      "evaluation"]
  trained = []
  real = train.train_and_evaluate
  monkeypatch.setattr(train, "train_and_evaluate",
                      lambda *a, **k: trained.append(a[1]) or real(*a, **k))
  caplog.clear()
  ablations.study("configs/tiny.py", ["lrn", "pca_lighting"], 1, workdir, OVERRIDES)
  assert trained == []  # finished runs are kept
  assert sum("(finished earlier: its result is read)" in line for line in caplog.messages) == 3
  with pytest.raises(UserError, match=r"baseline/seed0 was trained on other data than this "
                                      r"study reads \(.*training images 32 → 48"):
    ablations.study("configs/tiny.py", ["lrn"], 1, workdir,
                 [*OVERRIDES, "data.synthetic_train_size=48"])


def test_figure1_picks_each_activations_best_rate_and_reports_the_ratio(tmp_path, monkeypatch,
                                                                        study_runs, drawn):
  """Scripted training curves: ReLU at ε 0.02 reaches 25 % at step 40, tanh at best (ε 0.01)
  at step 160; tanh at ε 0.02 never does. Then a threshold of 20 %, which ReLU's curves touch
  and tanh's (at 22 %) never reach. Mutations: a curve at the threshold taken as above it
  (`<=` -> `<`); the study's run count `2 * lrs` -> `/`; a sweep that never reached the
  threshold judged by its highest final error (`min` -> `max`); a ratio with one side missing
  (`and` -> `or`); the best rates not in bold; the final error read from the curve's
  second-last point; the curves or the threshold's line at 101 * error -> red."""
  reached = {("relu", 0.01): 80, ("relu", 0.02): 40, ("tanh", 0.01): 160, ("tanh", 0.02): None}
  trained = []

  def scripted(config, run_dir, **kwargs):
    key = (config.model.activation, config.optimizer.learning_rate)
    assert config.model.dropout == 0.0 and config.optimizer.weight_decay == 0.0
    trained.append(key)
    floor = 0.2 if key[0] == "relu" else 0.22
    with metrics.MetricWriter(run_dir) as writer:
      for step in range(20, 201, 20):
        below = reached[key] is not None and step >= reached[key]
        writer.write(step, "train", {"top1_error": floor if below else 0.5 - step / 1000})
    return train.RunResult({"eval": {"top1_error": 0.3, "top5_error": 0.1}}, 200, True, {})

  monkeypatch.setattr(train, "train_and_evaluate", scripted)
  summary = figure1.figure1("configs/tiny.py", [0.01, 0.02], 0.25, str(tmp_path), [], 20)
  assert summary == {"threshold": 0.25, "relu_lr": 0.02, "tanh_lr": 0.01, "relu_steps": 40,
                     "tanh_steps": 160, "tanh_over_relu": 4.0}
  assert study_runs() == [f"study run {i} of 4" for i in (1, 2, 3, 4)]
  report = (tmp_path / "figure1" / "figure1.md").read_text()
  assert "| tanh | 0.02 | not reached | 30.00 % |" in report  # its last point: 0.5 - 200/1000
  assert "tanh / ReLU iterations: 4.00" in report
  assert "| relu | **0.02** | 40 | 20.00 % |" in report and "| relu | 0.01 | 80 |" in report
  with Image.open(tmp_path / "figure1" / "figure1.png") as png:
    assert png.format == "PNG"
  plotted = {line.get_label(): list(line.get_ydata()) for line in drawn[-1].axes[0].lines}
  assert plotted["relu (ε = 0.02)"] == pytest.approx([48.0] + [20.0] * 9)  # in %
  assert plotted["tanh (ε = 0.01)"][-1] == pytest.approx(22.0)
  assert [y for label, y in plotted.items() if label.startswith("_")] == [[25.0, 25.0]]
  assert len(trained) == 4
  trained.clear()
  figure1.figure1("configs/tiny.py", [0.01, 0.02], 0.25, str(tmp_path), [], 20)
  assert trained == []  # finished runs are kept
  lower = figure1.figure1("configs/tiny.py", [0.01, 0.02], 0.2, str(tmp_path / "lower"), [], 20)
  assert lower == {"threshold": 0.2, "relu_lr": 0.02, "tanh_lr": 0.01, "relu_steps": 40,
                   "tanh_steps": None, "tanh_over_relu": None}
  assert "tanh / ReLU iterations: not available" in (
      tmp_path / "lower" / "figure1" / "figure1.md").read_text()


def test_column_specialisation_needs_colour_and_reports_each_seed(tmp_path, monkeypatch):
  """Mutation: two grey columns given a relative gap of 1.0 (one more colour-specific) -> red."""
  from alexnet_jax.errors import UserError

  with pytest.raises(UserError, match="greyscale conv1 kernels"):
    columns.column_specialisation("configs/fashion_mnist.py", 1, str(tmp_path), [], 0.2)
  # A smoke test on generated colour images (random: nothing to specialise on).
  summary = columns.column_specialisation("configs/tiny.py", 2, str(tmp_path), OVERRIDES, 0.2)
  assert [s["seed"] for s in summary["seeds"]] == [0, 1]
  for s in summary["seeds"]:  # each seed's figures are its trained conv1's
    kernel = np.asarray(inference.load(str(tmp_path / "baseline" / f"seed{s['seed']}"))
                        .params["conv1"]["kernel"])
    chroma = visualize.colour_specificity(kernel)
    np.testing.assert_allclose(s["mean_chroma"], chroma, rtol=1e-6)
    assert s["colour_column"] == int(np.argmax(chroma))
    assert s["relative_gap"] == pytest.approx((max(chroma) - min(chroma)) / max(chroma))
  assert summary["one_column_more_colour_specific"] == all(
      s["relative_gap"] >= 0.2 for s in summary["seeds"])
  table = (tmp_path / "columns.md").read_text()
  assert table.count("\n| ") >= 3 and "in every seed" in table
  monkeypatch.setattr(visualize, "colour_specificity", lambda kernel: [0.0, 0.0])  # two grey
  grey = columns.column_specialisation("configs/tiny.py", 2, str(tmp_path), OVERRIDES, 0.2)
  assert [s["relative_gap"] for s in grey["seeds"]] == [0.0, 0.0]
  assert grey["one_column_more_colour_specific"] is False


def test_precision_compares_bfloat16_with_float32_against_the_seeds_spread(tmp_path):
  workdir = str(tmp_path)
  summary = precision.precision("configs/tiny.py", 2, workdir, OVERRIDES, 1)
  assert summary["seeds"] == 2 and summary["points"] == 2  # 32 images, batches of 16
  for dtype in ("float32", "bfloat16"):
    with open(os.path.join(workdir, "precision", dtype, "seed1", "result.json")) as f:
      assert f.read()
  report = (tmp_path / "precision" / "precision.md").read_text()
  assert "| bfloat16 |" in report and "Within noise" in report
  with open(os.path.join(workdir, "precision", "precision.csv"), newline="") as f:
    rows = list(csv.DictReader(f))
  assert [int(r["step"]) for r in rows] == [1, 2]
  # The verdict is the rule the report states: mean |gap| of the mean curves <= float32's mean
  # seed-to-seed std, recomputed from the curves written beside it.
  gap = np.mean([abs(float(r["bfloat16_mean"]) - float(r["float32_mean"])) for r in rows])
  spread = np.mean([float(r["float32_std"]) for r in rows])
  assert summary["mean_abs_gap"] == pytest.approx(gap, abs=1e-5)
  assert summary["mean_seed_spread"] == pytest.approx(spread, abs=1e-5) and spread > 0
  assert summary["within_noise"] is bool(gap <= spread)
  with Image.open(os.path.join(workdir, "precision", "precision.png")) as png:
    assert png.format == "PNG"


def test_the_table_is_each_variants_mean_and_spread_in_percent_beside_the_papers_change():
  """Test errors are fractions in the runs' results, percent in the table; each Δ is against the
  baseline's mean, top-1 and top-5 alike; one seed has no spread. Mutations: `100 * error` ->
  `100 / error`; top-5's Δ `m5 - base5` -> `+`; one seed's spread 1.0 -> red."""
  def runs(*errors):
    return [{"eval": {"top1_error": e1, "top5_error": e5}} for e1, e5 in errors]

  rows = ablations.summarize({"baseline": runs((0.40, 0.20), (0.42, 0.18)),
                              "lrn": runs((0.43, 0.21), (0.45, 0.23)),
                              "dropout": runs((0.50, 0.25))}, "eval")
  base, lrn, dropout = rows
  assert dropout["seeds"] == 1 and dropout["top1_std"] == dropout["top5_std"] == 0.0
  assert base["variant"] == "baseline" and base["seeds"] == 2 and base["section"] == ""
  assert base["top1"] == pytest.approx(41.0) and base["top5"] == pytest.approx(19.0)
  assert base["top1_std"] == pytest.approx(np.sqrt(2)) and base["delta_top5"] == 0.0
  assert (lrn["top1"], lrn["top5"]) == (pytest.approx(44.0), pytest.approx(22.0))
  assert (lrn["delta_top1"], lrn["delta_top5"]) == (pytest.approx(3.0), pytest.approx(3.0))
  assert lrn["section"] == "§3.3" and (lrn["paper_delta_top1"], lrn["paper_delta_top5"]) == (
      1.4, 1.2)


def test_a_study_runs_every_seed_of_every_variant_and_tables_their_spread(tmp_path, monkeypatch,
                                                                          study_runs, drawn):
  """Scripted runs, two seeds of the baseline and of no LRN, each evaluated on ten crops; the
  figure's baseline bar grey, the variant's blue with its Δ and the paper's above it.
  Mutations: the study's run count `(1 + names) * seeds` -> `/ seeds`; the split always
  `eval`; the spread with ddof 0; one colour too few (`len(rows) - 2`); the note's Δ top-5's;
  the y axis from 1 or to 2.5x the top; the overrides' values passed as the fields overridden
  -> red."""
  top1 = {(True, 0): 0.40, (True, 1): 0.42, (False, 0): 0.43, (False, 1): 0.45}

  def scripted(config, run_dir, **kwargs):
    error = top1[config.model.lrn, config.seed]
    # The fields the command line sets, by path (a fine-tune keeps them over its source's).
    assert kwargs["overridden"] == [o.split("=")[0] for o in OVERRIDES]
    os.makedirs(run_dir)
    return train.RunResult({"eval": {"top1_error": error + 0.1, "top5_error": 0.3},
                            "eval_10crop": {"top1_error": error, "top5_error": 0.2}}, 2, True, {})

  monkeypatch.setattr(train, "train_and_evaluate", scripted)
  table = ablations.study("configs/tiny.py", ["lrn"], 2, str(tmp_path), OVERRIDES)
  assert study_runs() == [f"study run {i} of 4" for i in (1, 2, 3, 4)]
  assert "(eval_10crop)" in table.splitlines()[0]
  assert "| baseline |  | 2 | 41.00 ± 1.41 | 20.00 ± 0.00 | +0.00 | +0.00 |" in table
  assert "| no LRN | §3.3 | 2 | 44.00 ± 1.41 | 20.00 ± 0.00 | +3.00 | +0.00 | +1.40 | +1.20 |" in (
      table)
  from matplotlib.colors import to_hex

  axes = drawn[-1].axes[0]
  bars = axes.patches
  assert [to_hex(b.get_facecolor()) for b in bars] == [to_hex("tab:gray"), to_hex("tab:blue")]
  assert [b.get_height() for b in bars] == [pytest.approx(41.0), pytest.approx(44.0)]
  assert [t.get_text() for t in axes.texts] == ["Δ +3.00\npaper +1.40"]  # above no LRN's bar
  low, high = axes.get_ylim()
  assert low == 0 and 44 + np.sqrt(2) < high < 60  # the bars from 0, room for the notes


# Scripted training losses at steps 1, 2 (a run logging step 3 too shares no third point) and
# test errors, per (compute dtype, seed).
LOSSES = {("float32", 0): [2.0, 1.0], ("float32", 1): [2.2, 1.2, 0.5],
          ("bfloat16", 0): [2.1, 1.1], ("bfloat16", 1): [2.3, 1.5]}
TOP1 = {("float32", 0): 0.30, ("float32", 1): 0.32, ("bfloat16", 0): 0.31, ("bfloat16", 1): 0.33}


def test_precision_reports_the_gap_of_the_mean_curves_against_float32s_seed_spread(
    tmp_path, monkeypatch, study_runs, drawn):
  """The figure's bands are each compute's mean curve ± its seeds' std at each step.
  Mutations: the study's run count `2 * seeds` -> `/`; the test error `100 *` -> `/`; the
  largest gap `max` -> `min`; a seed-to-seed spread from one seed (`seeds > 1` -> `>= 1`, in
  the summary or the CSV); the bands' std across the steps or with ddof 2 -> red."""
  def scripted(config, run_dir, **kwargs):
    key = (config.model.dtype, config.seed)
    with metrics.MetricWriter(run_dir) as writer:
      for step, loss in enumerate(LOSSES[key], 1):
        writer.write(step, "train", {"loss": loss})
    return train.RunResult({"eval": {"top1_error": TOP1[key], "top5_error": 0.1}}, 2, True, {})

  monkeypatch.setattr(train, "train_and_evaluate", scripted)
  summary = precision.precision("configs/tiny.py", 2, str(tmp_path / "two"), [], 1)
  assert study_runs() == [f"study run {i} of 4" for i in (1, 2, 3, 4)]
  assert summary == pytest.approx({
      "seeds": 2, "steps": 2, "points": 2, "mean_abs_gap": 0.15, "max_abs_gap": 0.2,
      "mean_seed_spread": np.sqrt(0.02), "within_noise": False, "final_loss_float32": 1.1,
      "final_loss_bfloat16": 1.3, "test_top1_float32": 31.0, "test_top1_bfloat16": 32.0,
      "test_top1_std_float32": np.sqrt(2), "test_top1_std_bfloat16": np.sqrt(2)})
  bands = drawn[-1].axes[0].collections
  for band, means, stds in zip(bands, ([2.1, 1.1], [2.2, 1.3]), ([0.1, 0.1], [0.1, 0.2])):
    outline = band.get_paths()[0].vertices
    for step, mean, std in zip((1, 2), means, np.sqrt(2) * np.array(stds)):
      ys = outline[outline[:, 0] == step, 1]
      assert (ys.min(), ys.max()) == (pytest.approx(mean - std), pytest.approx(mean + std))
  report = (tmp_path / "two" / "precision" / "precision.md").read_text()
  assert "| float32 | 1.1000 | 31.00 ± 1.41 |" in report and "Within noise" in report
  assert "no: bfloat16's mean |gap| to float32, 0.1500, against float32's mean seed-to-seed " \
         "std, 0.1414." in report
  one = precision.precision("configs/tiny.py", 1, str(tmp_path / "one"), [], 1)
  assert one["mean_seed_spread"] is None and one["within_noise"] is None
  assert one["test_top1_std_float32"] == 0.0
  with open(tmp_path / "one" / "precision" / "precision.csv", newline="") as f:
    assert {r["float32_std"] for r in csv.DictReader(f)} == {"0.000000"}
  assert "not decided: one seed gives no seed-to-seed spread" in (
      tmp_path / "one" / "precision" / "precision.md").read_text()


@pytest.mark.parametrize("name", ["paper", "paper_code", "tiny", "fashion_mnist",
                                  "fashion_mnist_full", "finetune"])
def test_every_config_keeps_every_ablation_it_is_asked_for(name):
  """A config built on another applies the variant last: its own settings (fashion_mnist's
  dropout 0.25, say) must not undo the ablation."""
  from alexnet_jax.configuration import VARIANTS
  from conftest import load_config

  base = load_config(name)
  for variant, spec in VARIANTS.items():
    config = load_config(name, variant)
    for path, value in spec.overrides.items():
      section, field = path.split(".")
      assert config[section][field] == value, (name, variant, path)
      assert base[section][field] != value, (name, variant, path)  # a change, not a no-op
  both = load_config(name, "no_lrn,one_column")  # variants combine
  assert both.model.lrn is False and both.model.columns == 1


def test_ablate_reads_the_one_variant_table():
  from alexnet_jax.configuration import ABLATIONS, VARIANTS

  assert ABLATIONS == {"lrn": "no_lrn", "overlap_pool": "no_overlap_pool",
                       "columns": "one_column", "relu": "tanh", "dropout": "no_dropout",
                       "pca_lighting": "no_pca_lighting", "conv2": "no_conv2",
                       "conv3": "no_conv3", "conv4": "no_conv4", "conv5": "no_conv5"}
  # The reductions the paper reports for each ingredient (top-1, top-5 points): §3.2 "reduces
  # our top-1 and top-5 error rates by 1.7% and 1.2%", §3.3 "by 1.4% and 1.2%", §3.4 "by 0.4%
  # and 0.3%", §4.1 "reduces the top-1 error rate by over 1%"; §3.1 and §4.2 give none; §7
  # "removing any of the middle layers results in a loss of about 2% for the top-1" (conv2 to
  # conv4; of conv5, the last, only that the network degrades).
  # Mutation: any of these figures doubled -> red (the pooling's and the columns' passed).
  assert {name: v.paper_delta for name, v in VARIANTS.items() if v.removes} == {
      "one_column": (1.7, 1.2), "no_lrn": (1.4, 1.2), "no_overlap_pool": (0.4, 0.3),
      "no_pca_lighting": (1.0, None), "tanh": (None, None), "no_dropout": (None, None),
      "no_conv2": (2.0, None), "no_conv3": (2.0, None), "no_conv4": (2.0, None),
      "no_conv5": (None, None)}
  # And each removes what the paper compares with: pooling s = z = 2 (§3.4), one column, no
  # lighting noise at all (σ 0). Mutation: no_pca_lighting's σ 1.0 -> red.
  assert {name: v.overrides for name, v in VARIANTS.items() if v.removes} == {
      "no_lrn": {"model.lrn": False}, "no_overlap_pool": {"model.pool_window": 2},
      "one_column": {"model.columns": 1}, "tanh": {"model.activation": "tanh"},
      "no_dropout": {"model.dropout": 0.0}, "no_pca_lighting": {"data.pca_lighting": 0.0},
      **{f"no_{n}": {"model.removed_conv": n} for n in ("conv2", "conv3", "conv4", "conv5")}}


def test_a_studys_progress_says_the_time_left_at_the_pace_so_far(caplog):
  """Mutations: the runs left counted one too many; the pace multiplied by the runs left turned
  into a division; the time trained starting at 1 s (7 runs left: 0.1 min more) -> red."""
  from absl import logging as absl_logging

  from alexnet_jax.ablate.runner import Runs

  runs = Runs(8)
  with caplog.at_level("INFO"):
    absl_logging.use_python_logging()
    runs.begin("baseline seed 0", "w/0", finished=False)
    runs.trained_for(60.0)
    runs.begin("lrn seed 0", "w/1", finished=False)
    runs.begin("lrn seed 1", "w/2", finished=True)
  said = [r.getMessage() for r in caplog.records if "study run" in r.getMessage()]
  assert said == ["study run 1 of 8: baseline seed 0 in w/0",
                  "study run 2 of 8: lrn seed 0 in w/1; about 7.0 min left",
                  "study run 3 of 8: lrn seed 1 in w/2 (finished earlier: its result is read)"]


def test_a_run_stopped_after_an_evaluation_is_not_taken_as_finished(tmp_path, monkeypatch):
  """A run evaluated and then stopped (SIGTERM after an evaluation) stops the study and writes
  no result: the same command continues it. Mutation: `not complete or not evaluation` ->
  `and` (its mid-run evaluation written as the run's result) -> red."""
  from alexnet_jax import workdir as workdir_lib
  from alexnet_jax.ablate.runner import Runs, run_one
  from alexnet_jax.errors import UserError

  stopped = train.RunResult(evaluation={"eval": {"top1_error": 0.5}}, step=3, complete=False,
                            data={})
  monkeypatch.setattr(train, "train_and_evaluate", lambda *a, **k: stopped)
  workdir = str(tmp_path / "baseline" / "seed0")
  with pytest.raises(UserError, match="the study stopped: the run in .* was interrupted at step 3"):
    run_one("configs/tiny.py", "", 0, workdir, OVERRIDES, Runs(1))
  assert workdir_lib.RunDir(workdir).read_result() is None


def test_a_training_curve_is_the_train_rows_last_record_of_each_step(tmp_path):
  """The evaluation rows (which have a loss too) are not the training curve; a step logged
  again after a resume counts once, its last record. Mutation: `split == 'train' and key in r`
  -> `or` -> red."""
  from alexnet_jax.ablate.runner import train_curve

  with metrics.MetricWriter(str(tmp_path)) as writer:  # the rows as a run logs them
    writer.write(2, "train", {"loss": 2.0})
    writer.write(4, "train", {"loss": 1.5})
    writer.write(4, "train", {"loss": 1.4})  # logged again after a resume
    writer.write(5, "eval", {"loss": 9.0, "top1_error": 0.9})
  assert train_curve(str(tmp_path), "loss") == [(2, 2.0), (4, 1.4)]
