"""`benchmark levers`: each lever against the shipped step timed beside it."""

import pytest

from alexnet_jax.benchmark import levers
from conftest import load_config


@pytest.mark.slow
def test_each_lever_is_timed_beside_the_shipped_step(capsys):
  """The norms lever in this process; an XLA flag in a child beside a child of the shipped
  step; a flag jaxlib does not know reported, not passed. Mutations: the speed-up inverted ->
  red; an unknown flag passed to the child (it aborts) -> an error naming it differently
  (red)."""
  config = load_config("tiny")
  argv = ["--config=configs/tiny.py", "--batch=4", "--steps=2"]
  records = levers.bench_levers(
      config, batch=4, steps=2, argv=argv, rounds=1,
      flags=("--xla_gpu_enable_latency_hiding_scheduler=true", "--xla_no_such_flag=1"))
  norms, columns, flag, unknown = records
  assert norms["lever"].startswith("the step without its global")
  assert columns["lever"].endswith("(model.column_maps=separate)")
  for record in (norms, columns, flag):
    assert record["img_per_s"] > 0 and record["shipped_img_per_s"] > 0
    assert record["speedup"] == pytest.approx(
        record["img_per_s"] / record["shipped_img_per_s"], rel=0.01)
  assert flag["lever"] == "XLA_FLAGS --xla_gpu_enable_latency_hiding_scheduler=true"
  assert unknown["error"] == "the installed jaxlib does not know this flag"
  assert len(capsys.readouterr().out.splitlines()) == 4


# Seconds per step of each in-process variant, by (model.column_maps, step_norms): the shipped
# step, the step without its norms, the columns' maps apart.
STEP_SECONDS = {("joined", True): 0.02, ("joined", False): 0.01, ("separate", True): 0.04}


def _fixed_steps(monkeypatch):
  """`levers.compiled_step` replaced by one whose `run(steps)` takes `STEP_SECONDS[(column_maps,
  step_norms)]` per step; the variants asked for, in order, are returned."""
  asked = []

  def compiled_step(config, batch, step_norms=True):
    key = (config.model.column_maps, step_norms)
    asked.append(key)
    return (lambda steps: STEP_SECONDS[key]), None, None, None

  monkeypatch.setattr(levers, "compiled_step", compiled_step)
  return asked


def test_the_levers_rates_from_a_fixed_timing(monkeypatch, capsys):
  """Each in-process lever is its own variant of the step (the shipped step with its norms, the
  step without them, each column's maps apart), timed over the rounds: img/s and the speed-up
  against the shipped step exactly; with the LRN across columns the columns lever is not
  offered (it needs the maps joined)."""
  config = load_config("tiny")
  asked = _fixed_steps(monkeypatch)
  norms, columns = levers.bench_levers(config, batch=0, steps=3, argv=[], flags=(), rounds=2)
  assert asked == [("joined", True), ("joined", False), ("separate", True)]
  batch = config.data.batch_size  # --batch=0: the config's
  assert (norms["batch"], norms["img_per_s"], norms["shipped_img_per_s"], norms["speedup"]) == (
      batch, batch / 0.01, batch / 0.02, 2.0)
  assert (columns["img_per_s"], columns["speedup"]) == (batch / 0.04, 0.5)
  assert len(capsys.readouterr().out.splitlines()) == 2

  config.model.lrn_across_columns = True
  asked.clear()
  records = levers.bench_levers(config, batch=4, steps=3, argv=[], flags=(), rounds=1)
  assert asked == [("joined", True), ("joined", False)] and len(records) == 1


def test_a_flag_child_that_fails_or_prints_no_step_is_an_error_record(monkeypatch):
  """`benchmark step` in a child with the flag: its record when it prints one; its last error
  line when it fails; "printed no step record" when it ends well having printed none."""
  import subprocess

  outputs = {"ok": ('{"bench": "step", "ms_per_step": 5.0}\n', "", 0),
             "failed": ("", "Traceback ...\nRuntimeError: no GPU\n", 1),
             "silent": ('{"bench": "other"}\n', "", 0)}

  def run(argv, env, **kwargs):
    return subprocess.CompletedProcess(argv, outputs[env["XLA_FLAGS"]][2],
                                       *outputs[env["XLA_FLAGS"]][:2])

  monkeypatch.setattr(levers.subprocess, "run", run)
  monkeypatch.delenv("XLA_FLAGS", raising=False)
  assert levers._step_child([], "ok") == ({"bench": "step", "ms_per_step": 5.0}, None)
  record, error = levers._step_child([], "failed")
  assert record is None and "no GPU" in error
  assert levers._step_child([], "silent") == (None, "printed no step record")


def test_each_flag_is_timed_against_a_child_of_the_shipped_step(monkeypatch):
  """A flag's child at 10 ms beside the shipped step's child at 20 ms: img/s from the
  children's ms per step, a speed-up of 2; the command's own --xla_flags not passed on; when
  the shipped step's child fails, each flag is reported with its error, none timed."""
  config = load_config("tiny")
  _fixed_steps(monkeypatch)
  children = []

  def step_child(argv, flag):
    children.append((argv, flag))
    return {"bench": "step", "ms_per_step": 10.0 if flag else 20.0}, None

  monkeypatch.setattr(levers, "_step_child", step_child)
  monkeypatch.setattr(levers.xla_flags, "known", lambda names: True)
  argv = ["--config=c.py", "--xla_flags=--x=1"]
  *_, flag = levers.bench_levers(config, batch=4, steps=3, argv=argv, flags=("--f=1",), rounds=1)
  assert children == [(["--config=c.py"], ""), (["--config=c.py"], "--f=1")]
  assert (flag["lever"], flag["img_per_s"], flag["shipped_img_per_s"], flag["speedup"]) == (
      "XLA_FLAGS --f=1", 400.0, 200.0, 2.0)

  monkeypatch.setattr(levers, "_step_child", lambda argv, flag: (
      ({"bench": "step", "ms_per_step": 10.0}, None) if flag else (None, "no GPU")))
  *_, first, second = levers.bench_levers(config, batch=4, steps=3, argv=[],
                                          flags=("--f=1", "--g=2"), rounds=1)
  assert first == {"bench": "lever", "lever": "XLA_FLAGS --f=1", "error": "no GPU"}
  assert second["error"] == "no GPU"
