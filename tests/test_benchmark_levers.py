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
