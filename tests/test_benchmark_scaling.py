"""`benchmark scaling`: the collective byte count read from the compiled step, each device
count's child process and the record it prints."""

import json
import subprocess
import sys

import pytest

from alexnet_jax.benchmark import scaling as benchmark
from alexnet_jax.errors import UserError
from conftest import load_config


def test_collective_bytes_reads_result_shapes():
  """Every element type by its width (a byte for pred, none for a token), the operands not
  counted; an asynchronous collective by its `-done` (its `-start`'s result holds the operands
  too). Mutations: a width's digits misread; pred as 2 bytes; the operands
  counted; the `-start` counted in place of the `-done` -> red."""
  hlo = ("  %ag = bf16[128,13,13,256]{3,2,1,0} all-gather(bf16[128,13,13,128] %x), dimensions={3}\n"
         "  %ar = (f32[10]{0}, f32[4,4]{1,0}) all-reduce(%a, %b), to_apply=%sum\n"
         "  %cp = (f16[3]{0}, s32[5]{0}, u64[7]{0}, c64[2]{0}, s8[11]{0}, u8[13]{0}, pred[17]{0},"
         " f8e4m3fn[19]{0}, s4[6]{0}, token[]) collective-permute(f32[99] %y)\n"
         "  %ag-start = (f32[8,256]{1,0}, f32[16,256]{1,0}) all-gather-start(f32[8,256] %z)\n"
         "  %ag-done = f32[16,256]{1,0} all-gather-done((f32[8,256], f32[16,256]) %ag-start)\n"
         "  %cp-start = (u8[5]{0}, u8[5]{0}, u32[], u32[]) collective-permute-start(u8[5] %w)\n"
         "  ROOT %cp-done = u8[5]{0} collective-permute-done(%cp-start)\n")
  assert benchmark.collective_bytes(hlo) == {
      "all-gather": 2 * 128 * 13 * 13 * 256 + 4 * 16 * 256, "all-reduce": 4 * (10 + 16),
      "collective-permute": 2 * 3 + 4 * 5 + 8 * 7 + 8 * 2 + 11 + 13 + 17 + 19 + 3 + 5}


def test_a_scaling_point_is_its_meshs_global_batch_over_the_step_time(monkeypatch, capsys):
  """The child's record on the 8 test devices: tiny's two columns leave 4 'data' shards.
  Mutations: the global batch `*` -> `/`; ms or img/s miswritten or rounded otherwise -> red."""
  hlo = "  %ar = f32[10]{0} all-reduce(%a), to_apply=%sum\n"
  asked = []

  def timed_step(config, batch, steps, mesh):
    asked.append((batch, steps, dict(mesh.shape)))
    return 0.0123456, None, hlo, None

  monkeypatch.setattr(benchmark, "timed_step", timed_step)
  benchmark.bench_scaling(load_config("tiny"), devices=8, per_device_batch=2, steps=3, argv=[])
  record = json.loads(capsys.readouterr().out)
  assert asked == [(8, 3, {"data": 4, "model": 2})]
  assert record == {"bench": "scaling", "devices": 8, "mesh": {"data": 4, "model": 2},
                    "batch_per_data_shard": 2, "global_batch": 8, "ms_per_step": 12.35,
                    "img_per_s": 648.0, "collective_bytes": {"all-reduce": 40}}
  # No --batch: SHARD_BATCH images per shard. Mutation: `or SHARD_BATCH` dropped -> red.
  benchmark.bench_scaling(load_config("tiny"), devices=8, per_device_batch=0, steps=3, argv=[])
  assert asked[-1] == (4 * benchmark.SHARD_BATCH, 3, {"data": 4, "model": 2})
  assert json.loads(capsys.readouterr().out)["batch_per_data_shard"] == benchmark.SHARD_BATCH


def test_the_parent_starts_one_child_per_device_count_and_stops_at_one_that_fails(
    monkeypatch, capsys):
  """Each child is `benchmark scaling --devices=N` with the parent's own flags, N CPU devices
  forced; its record printed as it comes; a child that fails is one line naming its count.
  Mutations: a count's XLA flag or `--devices` from another count; the parent's flags dropped
  (`argv` -> `[]`); a failed child's record printed, or the error from its stdout -> red."""
  started = []

  def child(argv, env, capture_output, text, fail_at=None):
    n = int(env["XLA_FLAGS"].rsplit("=", 1)[1])
    started.append((argv, env["XLA_FLAGS"], env["JAX_PLATFORMS"]))
    if n == fail_at:
      return subprocess.CompletedProcess(argv, 1, "", "Traceback ...\nMemoryError: no room\n")
    return subprocess.CompletedProcess(argv, 0, f'compiling\n{{"devices": {n}}}\n', "")

  monkeypatch.setattr(benchmark.subprocess, "run", child)
  benchmark.bench_scaling(None, devices=0, per_device_batch=2, steps=3,
                          argv=["--config=configs/tiny.py", "--batch=2"])
  assert started == [([sys.executable, "-m", "alexnet_jax.benchmark", "scaling", f"--devices={n}",
                       "--config=configs/tiny.py", "--batch=2"],
                      f"--xla_force_host_platform_device_count={n}", "cpu") for n in (1, 2, 4, 8)]
  assert capsys.readouterr().out.splitlines() == [
      line for n in (1, 2, 4, 8) for line in ("compiling", f'{{"devices": {n}}}')]
  started.clear()
  monkeypatch.setattr(benchmark.subprocess, "run",
                      lambda argv, **kw: child(argv, fail_at=4, **kw))
  with pytest.raises(UserError, match=r"^scaling point 4 failed: MemoryError: no room$"):
    benchmark.bench_scaling(None, devices=0, per_device_batch=2, steps=3, argv=[])
  assert [flag for _, flag, _ in started][-1].endswith("=4")
  assert '"devices": 4' not in capsys.readouterr().out


def test_a_child_refuses_a_device_count_its_process_does_not_have():
  """`--devices=N` run by hand where jax sees another count would label one mesh as another.
  Mutation: the check dropped -> red."""
  with pytest.raises(UserError, match=r"^--devices=2 but this process has 8 devices: run scaling "):
    benchmark.bench_scaling(load_config("tiny"), devices=2, per_device_batch=2, steps=1, argv=[])
