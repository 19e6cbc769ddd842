"""`benchmark levers`: levers on the training step, each timed against the step as shipped in
the same run. In this process, alternating with the shipped step: the step without its global
gradient and parameter norms (what computing them only on logged steps would save on the
others), and each column's maps kept as arrays of their own (`model.column_maps='separate'`:
no concatenations). In child processes of `benchmark step`, beside a child of the shipped
step: each XLA flag asked for (`XLA_FLAGS_TRIED` by default); one the installed jaxlib does
not know is reported, not passed (an unknown flag aborts XLA)."""

from __future__ import annotations

import os
import subprocess
import sys

from alexnet_jax import xla_flags
from alexnet_jax.benchmark import child_output, emit, figure
from alexnet_jax.benchmark.step import compiled_step

# XLA's GPU flags worth a try on this step: the scheduler that overlaps independent work, the
# step without CUDA graphs, cuBLAS instead of Triton for the fully-connected matmuls.
XLA_FLAGS_TRIED = ("--xla_gpu_enable_latency_hiding_scheduler=true",
                   "--xla_gpu_enable_command_buffer=", "--xla_gpu_enable_triton_gemm=false")


def _record(lever: str, batch: int, dtype: str, lever_s: float, shipped_s: float, **extra):
  return {"bench": "lever", "lever": lever, "dtype": dtype, "batch": batch,
          "img_per_s": figure(batch / lever_s), "shipped_img_per_s": figure(batch / shipped_s),
          "speedup": figure(shipped_s / lever_s), **extra}


def _step_child(argv: list[str], extra_flag: str) -> tuple[dict | None, str | None]:
  """`benchmark step` with `argv` in a child whose XLA_FLAGS add `extra_flag`: (its record,
  or None and the child's last error line)."""
  env = dict(os.environ)
  env["XLA_FLAGS"] = " ".join(f for f in (env.get("XLA_FLAGS", ""), extra_flag) if f)
  done = subprocess.run([sys.executable, "-m", "alexnet_jax.benchmark", "step", *argv],
                        env=env, capture_output=True, text=True)
  records, error = child_output(done.stdout, done.stderr, done.returncode)
  steps = [r for r in records if r.get("bench") == "step"]
  if error or not steps:
    return None, error or "printed no step record"
  return steps[0], None


def bench_levers(config, *, batch: int, steps: int, argv: list[str],
                 flags: tuple[str, ...] = XLA_FLAGS_TRIED, rounds: int = 2) -> list[dict]:
  """Prints (and returns) a record per lever: its img/s, the shipped step's timed beside it,
  the speed-up. `argv`: the command's own flags, for the `benchmark step` children."""
  batch = batch or config.data.batch_size
  dtype = config.model.dtype
  variants = {"shipped": (config, True),
              "the step without its global gradient and parameter norms": (config, False)}
  if config.model.column_maps != "separate" and not config.model.lrn_across_columns:
    apart = config.copy_and_resolve_references()
    apart.model.column_maps = "separate"
    variants["each column's maps an array of its own (model.column_maps=separate)"] = (
        apart, True)
  runs = {name: compiled_step(variant, batch, step_norms=norms)[0]
          for name, (variant, norms) in variants.items()}
  times = dict.fromkeys(variants, 0.0)
  for _ in range(rounds):  # alternating, so that a drift of the machine falls on every one
    for name, run in runs.items():
      times[name] += run(steps) / rounds
  records = []
  for name in list(variants)[1:]:
    records.append(_record(name, batch, dtype, times[name], times["shipped"]))
    emit(records[-1])
  if not flags:
    return records
  child_argv = [a for a in argv if not a.startswith("--xla_flags")]
  shipped, error = _step_child(child_argv, "")
  for flag in flags:
    lever, step, flag_error = f"XLA_FLAGS {flag}", None, error
    if not flag_error and not xla_flags.known([flag.split("=")[0].lstrip("-")]):
      flag_error = "the installed jaxlib does not know this flag"
    if not flag_error:
      step, flag_error = _step_child(child_argv, flag)
    record = ({"bench": "lever", "lever": lever, "error": flag_error} if step is None else
              _record(lever, batch, dtype, step["ms_per_step"] / 1e3,
                      shipped["ms_per_step"] / 1e3))
    records.append(record)
    emit(record)
  return records
