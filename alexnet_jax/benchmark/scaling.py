"""`benchmark scaling`: step time and the bytes of every collective on 1, 2, 4, 8 CPU
devices of the training mesh at a fixed batch per 'data' shard."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys

from alexnet_jax.benchmark import child_output, emit
from alexnet_jax.benchmark.step import timed_step
from alexnet_jax.errors import UserError

SHARD_BATCH = 16  # images per 'data' shard when --batch is not given
_COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "collective-permute", "all-to-all")


def _bits(dtype: str) -> int:
  """Bits per element of an HLO element type: the number its name starts with after the
  letters (f32, bf16, s8, c64, f8e4m3fn), a byte for `pred`."""
  width = re.match(r"[a-z]+(\d+)", dtype)
  return int(width.group(1)) if width else 8 if dtype == "pred" else 0


def collective_bytes(hlo_text: str) -> dict[str, int]:
  """Bytes each kind of collective produces per step, from the result shapes in the HLO: of
  the op, or of its `-done` when it runs asynchronously (the `-start`'s result is a tuple that
  holds the operands too)."""
  totals = {}
  for line in hlo_text.splitlines():
    for op in _COLLECTIVES:
      if f" {op}(" in line or f" {op}-done(" in line:
        result = line.split("=", 1)[1].split(f" {op}", 1)[0]
        bits = sum(_bits(dtype) * math.prod(int(d) for d in dims.split(",") if d)
                   for dtype, dims in re.findall(r"([a-z][a-z0-9]*)\[([0-9,]*)\]", result))
        totals[op] = totals.get(op, 0) + bits // 8
  return totals


def bench_scaling(config, *, devices: int, per_device_batch: int, steps: int,
                  argv: list[str]) -> None:
  """Step time on 1, 2, 4, 8 CPU devices at a fixed batch per 'data' shard (0: `SHARD_BATCH`),
  on the mesh training uses for that many devices (the columns on the 'model' axis when it is
  2), with the collective bytes read from each compiled step (one child process per device
  count: the device count is fixed when jax starts)."""
  if devices:  # the child: measure one point
    import jax

    from alexnet_jax.sharding import mesh_for

    if (have := jax.device_count()) != devices:
      raise UserError(f"--devices={devices} but this process has {have} devices: "
                      "run scaling without --devices (it starts a process per device count)")
    mesh = mesh_for(config)
    per_device_batch = per_device_batch or SHARD_BATCH
    batch = per_device_batch * mesh.shape["data"]
    seconds, _, hlo, _ = timed_step(config, batch, steps, mesh)
    emit({"bench": "scaling", "devices": devices, "mesh": dict(mesh.shape),
           "batch_per_data_shard": per_device_batch, "global_batch": batch,
           "ms_per_step": round(seconds * 1e3, 2),
           "img_per_s": round(batch / seconds, 1), "collective_bytes": collective_bytes(hlo)})
    return
  for n in (1, 2, 4, 8):
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS=f"--xla_force_host_platform_device_count={n}")
    result = subprocess.run([sys.executable, "-m", "alexnet_jax.benchmark", "scaling",
                             f"--devices={n}", *argv], env=env, capture_output=True, text=True)
    error = child_output(result.stdout, result.stderr, result.returncode)[1]
    if error:
      raise UserError(f"scaling point {n} failed: {error}")
    print(result.stdout.strip(), flush=True)
