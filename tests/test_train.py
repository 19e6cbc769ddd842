"""The training loop (`train.py`) end to end on small data: what a run writes, the checks that
need the devices or the data, the stall warning. Resumes, kills and failures:
test_reliability.py."""

import contextlib
import json
import math
import os
import re
import signal

import pytest

from alexnet_jax import checkpoint, metrics, train
from alexnet_jax.errors import UserError
from conftest import (assert_same_params, folder_config, image_folder_tree, load_config,
                      saved_state, sigterm_at_step, small_config)

FASHION = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"


def final_params(workdir, step):
  state = saved_state(workdir, step)
  return state["params"], int(state["step"])


def test_train_evaluate_writes_metrics_checkpoints_and_curves(straight_run):
  workdir, result = straight_run
  assert set(result) == {"eval", "eval_10crop"}
  # The returned evaluation is the run's last logged one, and `evaluate` on the workdir prints
  # the same figures (mutation: the loop's padded last batch counted -> red).
  from alexnet_jax import evaluate

  logged = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  for split in ("eval", "eval_10crop"):
    last = [r for r in logged if r["split"] == split][-1]
    assert result[split]["top1_error"] == last["top1_error"] and last["step"] == 8
    tool = evaluate.evaluate([workdir], ten_crop=split == "eval_10crop")
    assert tool["examples"] == 40
    assert tool["models"][0]["top1_error"] == round(100 * last["top1_error"], 2)
    assert tool["models"][0]["top5_error"] == round(100 * last["top5_error"], 2)
  rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  train_rows = [r for r in rows if r["split"] == "train"]
  assert [r["step"] for r in train_rows] == [2, 4, 6, 8]
  assert [r["epoch"] for r in train_rows] == [0.5, 1.0, 1.5, 2.0]  # epochs done at the step
  assert {"loss", "top1_error", "top5_error", "lr", "grad_norm", "param_norm",
          "img_per_s", "input_wait_fraction"} <= set(train_rows[0])
  # Readable images: none skipped (mutation: the run's count starting at 1 -> red).
  assert [r["skipped_images"] for r in train_rows] == [0, 0, 0, 0]
  assert any("act_rms/conv1" in r and "grad_norm/fc6" in r for r in train_rows)
  # One ε for every parameter: `lr` says it, no per-parameter copies (mutation: written
  # whenever there are rates -> red; the recorded run's test has them where they differ).
  assert not [k for r in train_rows for k in r if k.startswith("lr/")]
  assert [r["step"] for r in rows if r["split"] == "eval"] == [4, 8]
  assert [r["step"] for r in rows if r["split"] == "eval_10crop"] == [8]  # the final one only
  # Each evaluation row says how long its pass took (`evaluation.evaluate`'s timing; mutation:
  # the rows written without it -> red).
  assert all({"seconds", "input_start_seconds", "images", "img_per_s"} <= set(r) and
             0 < r["input_start_seconds"] < r["seconds"] and r["img_per_s"] > 0
             for r in rows if r["split"].startswith("eval"))
  assert os.listdir(os.path.join(workdir, "tensorboard"))
  assert os.path.getsize(os.path.join(workdir, "curves.png")) > 1000
  assert sorted(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints"))) == [6, 8]
  assert len(os.listdir(os.path.join(workdir, "best"))) == 1
  params, step = final_params(workdir, 8)
  assert step == 8 and params["conv1"]["kernel"].shape == (2, 5, 5, 3, 16)


def test_a_run_refused_at_its_start_leaves_no_workdir_it_created(tmp_path):
  config = load_config("fashion_mnist")
  config.data.data_dir = str(tmp_path / "no_data")
  for workdir in (tmp_path / "new" / "run", tmp_path / "kept"):
    if workdir.name == "kept":
      workdir.mkdir()
    with pytest.raises(UserError, match="Fashion-MNIST not found"):
      train.train_and_evaluate(config, str(workdir))
  assert not (tmp_path / "new" / "run").exists() and (tmp_path / "new").is_dir()
  assert sorted(os.listdir(tmp_path / "kept")) == [".alexnet_jax.lock", "best", "checkpoints"]


@pytest.mark.skipif(not os.path.exists(FASHION), reason="needs Debian's dataset-fashion-mnist")
def test_class_count_mismatch_is_reported(tmp_path):
  config = load_config("fashion_mnist")
  config.model.num_classes = 7
  with pytest.raises(UserError, match="num_classes is 7 but fashion_mnist has 10"):
    train.train_and_evaluate(config, str(tmp_path))


def test_stall_warning_names_the_cause_and_the_fix(caplog):
  from absl import logging as absl_logging
  config = small_config()
  with caplog.at_level("WARNING"):
    absl_logging.use_python_logging()
    train._warn_if_stalled(math.log(1000) - 0.01, 1000, config)
    train._warn_if_stalled(3.0, 1000, config)
  warnings = [r.getMessage() for r in caplog.records if "stalled" in r.getMessage()]
  assert len(warnings) == 1
  message = warnings[0]
  assert f"loss {math.log(1000) - 0.01:.3f} is still within 2% of ln(1000)" in message
  assert "data.pixel_scale is 0.015625" in message and "python -m alexnet_jax.diagnose" in message
  assert message.index("pixel_scale") < message.index("init (std") < message.index("bfloat16")


def test_per_parameter_rates_are_logged_as_soon_as_two_differ():
  """A fine-tune with fc8 at another ε has two rates: each is logged (mutation: `> 2` distinct
  rates needed -> red)."""
  assert train._per_layer_rates({"conv1/kernel": 0.01, "fc8/kernel": 0.1}) == {
      "lr/conv1/kernel": 0.01, "lr/fc8/kernel": 0.1}
  assert train._per_layer_rates({"conv1/kernel": 0.01, "fc8/kernel": 0.01}) == {}


def test_evaluations_asked_more_often_than_a_step_come_every_step(tmp_path):
  """0.1 epochs of 4 steps rounds to no step: the run evaluates after every step, not never
  or every other (mutation: `max(2, ...)` -> red; `max(0, ...)` divided by zero)."""
  config = small_config(epochs=0.5)
  config.eval_every_epochs = 0.1
  train.train_and_evaluate(config, str(tmp_path))
  rows = metrics.read_metrics(str(tmp_path / "metrics.jsonl"))
  assert [r["step"] for r in rows if r["split"] == "eval"] == [1, 2]


def test_the_unreadable_training_images_skipped_are_counted_over_the_run(tmp_path,
                                                                         monkeypatch):
  """An image tree with three unreadable training files, two epochs: the metrics' count of
  images skipped grows from log to log and holds at least the first epoch's three. Mutation:
  each log the count of its last batch only -> red. In the same run, logged every step: the
  per-layer statistics on every third step only, the stall checked once, at the first log at
  or after its step (mutations: the statistics' steps inverted; the check not marked done)."""
  checked = []
  monkeypatch.setattr(train, "_warn_if_stalled", lambda loss, classes, config: checked.append(
      (loss, classes)))
  image_folder_tree(tmp_path / "tree")
  config = folder_config(tmp_path / "tree")
  config.update(dict(num_epochs=2.0, log_every_steps=1, eval_every_epochs=2.0,
                     stats_every_steps=3))
  config.stall.check_steps = 3
  config.eval.ten_crop_final = False
  train.train_and_evaluate(config, str(tmp_path / "run"))
  rows = [r for r in metrics.run_rows(str(tmp_path / "run")) if r["split"] == "train"]
  counts = [r["skipped_images"] for r in rows]
  assert counts == sorted(counts) and counts[-1] >= 3, counts
  assert [r["step"] for r in rows if "act_rms/conv1" in r] == [3, 6]
  assert checked == [(rows[2]["loss"], 3)] and rows[2]["step"] == 3


@pytest.mark.slow
def test_a_run_resumes_bitwise_with_another_number_of_input_workers(straight_run, tmp_path,
                                                                     caplog, monkeypatch):
  """Read in 2 worker processes, evaluated every 2 steps, stopped by SIGTERM at step 3,
  resumed with 2 and stopped at step 5, resumed with 1 to the end: bitwise where the run read
  in-process ends, its last evaluation too (a run with workers used to refuse to resume).
  Each part's evaluations keep their workers from one to the next (each used to start its
  own): a reading a part, the last part's two evaluations in one; none is left when a part
  ends. The stall check (at step 4, in the second part) warns once, not again after a resume
  past it. Mutations: the position restored as the step-0 one (`workers.FromStep.set_state`
  keeping step 0); the check made again on every resume; the stop step not saved (the run
  resumed from the step before, redoing one); the loop not asking to keep the evaluation's
  workers (a reading per evaluation); the run's end not stopping those kept (train_start
  closing `input_.train` alone: 2 processes left) -> red."""
  import multiprocessing

  from absl import logging as absl_logging

  from alexnet_jax import train_start
  from alexnet_jax.data import evaluation_batches
  from conftest import ring_blocks

  readings, real = [], evaluation_batches.EvaluationBatches._reading
  monkeypatch.setattr(evaluation_batches.EvaluationBatches, "_reading",
                      lambda self, views, k, endless: (readings.append((views, endless)),
                                                       real(self, views, k, endless))[1])
  inputs, build = [], train_start.build_input  # held, so that only closing stops their workers
  monkeypatch.setattr(train_start, "build_input",
                      lambda *a, **kw: (inputs.append(build(*a, **kw)), inputs[-1])[1])
  before, children = ring_blocks(), set(multiprocessing.active_children())
  workdir = str(tmp_path / "run")
  try:
    with caplog.at_level("WARNING"):
      absl_logging.use_python_logging()
      for workers, stop in ((2, 3), (2, 5), (1, None)):
        config = small_config()
        config.data.workers = workers
        config.eval_every_epochs = 0.5
        config.stall.band = 1.0  # any loss below 2 ln(10) counts as stalled: the check is tested
        with sigterm_at_step(stop) if stop else contextlib.nullcontext():
          result = train.train_and_evaluate(config, workdir)
        assert result.step == (stop or 8) and result.complete == (stop is None)
        assert (stop or 8) in checkpoint.saved_steps(workdir)  # the step it stopped at, saved
        assert set(multiprocessing.active_children()) <= children and ring_blocks() == before
  finally:
    for input_ in inputs:
      input_.close()
  assert_same_params(workdir, straight_run[0])
  assert result.evaluation["eval"] == straight_run[1]["eval"]
  evaluated = [r["step"] for r in metrics.run_rows(workdir) if r["split"] == "eval"]
  assert evaluated == [2, 4, 6, 8] and readings == [((), True)] * 3
  stalled = [r.getMessage() for r in caplog.records if "training looks stalled" in r.getMessage()]
  assert len(stalled) == 1 and "after 4 steps" in stalled[0], stalled


@pytest.mark.slow
def test_batches_staged_in_pinned_host_memory_train_the_same_network(straight_run, tmp_path,
                                                                       monkeypatch):
  """`data.transfer=pinned` is only another way across: bitwise the straight run, its
  evaluations' batches crossing that way too, to the same figures (mutation: the evaluation
  not told the config's way -> red)."""
  from alexnet_jax import evaluation

  crossed, real = [], evaluation.to_global
  monkeypatch.setattr(evaluation, "to_global", lambda batch, sharding, transfer: (
      crossed.append(transfer), real(batch, sharding, transfer))[1])
  config = small_config(ten_crop=True)
  config.data.transfer = "pinned"
  workdir = str(tmp_path / "pinned")
  result = train.train_and_evaluate(config, workdir)
  assert_same_params(workdir, straight_run[0])
  assert set(crossed) == {"pinned"} and result.evaluation == straight_run[1]


def test_a_signal_after_the_last_steps_evaluation_ends_a_complete_run(tmp_path, capsys,
                                                                      monkeypatch):
  """SIGTERM as the last step's evaluation ends: the step is saved as the run's end and the
  summary says the run trained to it, not that it was stopped (mutation: `step < total_steps`
  -> `<=` -> red). (One during that evaluation leaves it: test_reliability.py.)"""
  from alexnet_jax import evaluation

  real = evaluation.evaluate

  def evaluate_then_sigterm(*args, **kwargs):
    out = real(*args, **kwargs)
    signal.raise_signal(signal.SIGTERM)
    return out

  monkeypatch.setattr(evaluation, "evaluate", evaluate_then_sigterm)
  config = small_config(epochs=1.0)  # 4 steps, evaluated at the last
  result = train.train_and_evaluate(config, str(tmp_path))
  assert result.complete and result.step == 4
  out = capsys.readouterr().out
  assert "trained to step 4 of 4" in out and "stopped by" not in out
  # The loop's time, its evaluations' and its checkpoint saves': step 2's, and step 4's in
  # checkpoints/ and best/ (mutations: the evaluations' seconds not summed; best/'s save not
  # timed -> red).
  loop, evaluating, saving = map(float, re.search(
      r"^time: ([\d.]+) s in this process's training loop, ([\d.]+) s of it evaluating, "
      r"([\d.]+) s saving 3 checkpoints$", out, re.M).groups())
  assert 0 < evaluating < loop and 0 < saving < loop
  assert result.timing["checkpoints"] == 3


@pytest.mark.parametrize("failing,saved,steps", [(1, None, []), (3, 2, [2]), (4, 3, [2, 3])])
def test_input_that_fails_stops_the_run_with_the_last_step_saved(tmp_path, monkeypatch, failing,
                                                                 saved, steps):
  """The input failing at step `failing`'s batch (checkpoints every 2 steps): the steps before
  it are saved, once, and the one-line error says which; a fresh run whose first batch fails
  saves nothing. Mutations: the step whose batch failed saved (`step - 1` -> `step`); step 0
  saved (`step > start_step` -> `>=`); "none" not said -> red."""
  from alexnet_jax import prefetch

  real, calls = prefetch.DevicePrefetch.__next__, []

  def next_batch(self):
    calls.append(True)
    if len(calls) == failing:
      raise UserError("the input failed")
    return real(self)

  monkeypatch.setattr(prefetch.DevicePrefetch, "__next__", next_batch)
  said = "none" if saved is None else saved
  with pytest.raises(UserError, match=f"^the input failed; step {said} is saved: run the same "
                                      "command to continue once the data can be read$"):
    train.train_and_evaluate(small_config(), str(tmp_path))
  assert checkpoint.saved_steps(str(tmp_path)) == steps


def test_an_evaluation_out_of_device_memory_saves_its_step_and_a_smaller_eval_batch_continues(
    tmp_path, monkeypatch):
  """The evaluation of step 4 (the end of a 4-step run; checkpoints every 2) runs out of
  device memory (XLA's own error, from a 100 TB allocation): step 4 is saved and one line
  names the field to lower; the same command with a smaller eval batch resumes and ends the
  run, evaluating step 4 first; another runtime error in the evaluation is not taken for it.
  Mutations: the evaluation's wrapper not told it is one; the save skipped; a step saved
  without its evaluation not evaluated on resume -> red."""
  from alexnet_jax import evaluation
  from test_errors import device_out_of_memory

  real = evaluation.evaluate
  monkeypatch.setattr(evaluation, "evaluate", lambda *a, **k: (_ for _ in ()).throw(
      device_out_of_memory()))
  config = small_config(epochs=1.0)
  with pytest.raises(UserError, match=r"^the evaluation ran out of device memory "
                                      r"\(RESOURCE_EXHAUSTED: Out of memory allocating "
                                      r"100000000000000 bytes.\); step 4 is saved: run the same "
                                      r"command with a smaller --config.data.eval_batch_size "
                                      r"\(now 16\) to continue$"):
    train.train_and_evaluate(config, str(tmp_path))
  assert checkpoint.saved_steps(str(tmp_path)) == [2, 4]
  monkeypatch.setattr(evaluation, "evaluate", real)
  config.data.eval_batch_size = 8
  result = train.train_and_evaluate(config, str(tmp_path))
  assert result.complete and result.step == 4 and "eval" in result.evaluation
  assert [r["step"] for r in metrics.run_rows(str(tmp_path)) if r["split"] == "eval"] == [4]
  # The config went to TensorBoard's HParams dashboard once, at the run's start: the resume
  # wrote none (mutation: written at every start -> red).
  from test_metrics import _hparams

  sessions = [d.session_start_info.hparams for tag, d in _hparams(tmp_path / "tensorboard")
              if tag == "_hparams_/session_start_info"]
  assert [s["data.eval_batch_size"].number_value for s in sessions] == [16]

  monkeypatch.setattr(evaluation, "evaluate", lambda *a, **k: (_ for _ in ()).throw(
      RuntimeError("INTERNAL: something else")))
  with pytest.raises(RuntimeError, match="something else"):
    train.train_and_evaluate(small_config(epochs=1.0), str(tmp_path / "other"))
