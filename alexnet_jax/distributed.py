"""Multi-process training on JAX's own runtime (`jax.distributed`), one process per host.

A run is multi-process when it is given a coordinator: the `--coordinator_address`,
`--num_processes`, `--process_id` flags, the standard `JAX_COORDINATOR_ADDRESS` /
`JAX_NUM_PROCESSES` / `JAX_PROCESS_ID` environment, or a SLURM job step with more than one task
(`jax.distributed` reads SLURM's variables itself). Each process then sees every device in
`jax.devices()`; the ('data', 'model') mesh spans them all with the 'model' axis (the columns)
inside a process, each process reads its share of every global batch, and process 0 writes the
metrics (Orbax coordinates the checkpoint writes). On CPU the cross-process collectives use gloo.
"""

from __future__ import annotations

import os

import jax
from absl import logging

from alexnet_jax.errors import UserError


def initialize(coordinator_address: str = "", num_processes: int = 0,
               process_id: int = -1) -> bool:
  """Starts `jax.distributed` when this is one of several processes; True if it did."""
  coordinator_address = coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS", "")
  num_processes = num_processes or int(os.environ.get("JAX_NUM_PROCESSES", "0") or 0)
  if process_id < 0:
    process_id = int(os.environ.get("JAX_PROCESS_ID", "-1") or -1)
  slurm = int(os.environ.get("SLURM_NTASKS", "1") or 1) > 1 and "SLURM_STEP_ID" in os.environ
  if not coordinator_address and not slurm:
    if num_processes > 1:
      raise UserError("--num_processes > 1 needs --coordinator_address (host:port of process 0)")
    return False
  if os.environ.get("JAX_PLATFORMS", "") == "cpu":
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  if coordinator_address:
    if num_processes < 1 or not 0 <= process_id < num_processes:
      raise UserError(f"a multi-process run needs --num_processes >= 1 and 0 <= --process_id < "
                      f"num_processes (got {num_processes}, {process_id})")
    jax.distributed.initialize(coordinator_address, num_processes, process_id)
  else:
    jax.distributed.initialize()  # SLURM: cluster auto-detection
  logging.info("process %d of %d, %d local / %d global devices", jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count())
  return True
