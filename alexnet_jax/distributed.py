"""Multi-process training on JAX's own runtime (`jax.distributed`), one process per host.

A run is multi-process when it is given a coordinator: the `--coordinator_address`,
`--num_processes`, `--process_id` flags, the standard `JAX_COORDINATOR_ADDRESS` /
`JAX_NUM_PROCESSES` / `JAX_PROCESS_ID` environment, or a SLURM job step with more than one task
(`jax.distributed` reads SLURM's variables itself). Each process then sees every device in
`jax.devices()`; the ('data', 'model') mesh spans them all with the 'model' axis (the columns)
inside a process, each process reads its share of every global batch, and process 0 writes the
metrics (Orbax coordinates the checkpoint writes). On CPU the cross-process collectives use gloo.

A process that dies ends the run: the others' next collective fails (`lost_peer` names the
process from the table every process published at the start), each says so in one line and
exits at once (`stop`), rather than waiting at JAX's shutdown barrier for the dead one. When
the dead one is process 0 (the coordination service's host) the others are ended by JAX's
client within a second, with its own abort message (jaxlib hands that failure to no Python
code); a process that hangs is declared dead after `HEARTBEAT_TIMEOUT_S`.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys

import jax
from absl import logging
from jax.experimental import multihost_utils

from alexnet_jax.errors import UserError, first_line

HEARTBEAT_TIMEOUT_S = 20  # JAX's default, 100 s, left a run whose peer hung waiting that long
_PEERS: dict[int, dict] = {}  # process index -> {"host", "address", "pid"}, of every process
_KEY = "alexnet_jax/process/"
# What a collective or the coordination service raises when a peer process is gone.
_PEER_GONE = re.compile(r"closed by peer|reset by peer|Connection refused|heartbeat timeout|"
                        r"tasks are unhealthy|failed to connect to all addresses|Socket closed",
                        re.IGNORECASE)


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
  if coordinator_address and (num_processes < 1 or not 0 <= process_id < num_processes):
    raise UserError(f"a multi-process run needs --num_processes >= 1 and 0 <= --process_id < "
                    f"num_processes (got {num_processes}, {process_id})")
  if os.environ.get("JAX_PLATFORMS", "") == "cpu":
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  # Without a coordinator, SLURM's: jax.distributed detects the cluster itself.
  args = (coordinator_address, num_processes, process_id) if coordinator_address else ()
  jax.config.update("jax_enable_preemption_service", True)  # `stop_agreed`'s
  jax.distributed.initialize(*args, heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT_S)
  _publish()
  logging.info("process %d of %d, %d local / %d global devices", jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count())
  return True


def _publish() -> None:
  """Every process's host, address and pid, exchanged through the coordination service and
  kept here: a lost peer is named without asking the service (it may be the one lost)."""
  from jax._src import distributed as jax_distributed

  client = jax_distributed.global_state.client
  host = socket.gethostname()
  try:
    address = socket.gethostbyname(host)
  except OSError:
    address = ""
  me = {"host": host, "address": address, "pid": os.getpid()}
  client.key_value_set(f"{_KEY}{jax.process_index()}", json.dumps(me))
  for i in range(jax.process_count()):
    _PEERS[i] = json.loads(client.blocking_key_value_get(f"{_KEY}{i}", 60_000))


def stop_agreed(step: int) -> bool:
  """Whether every process stops after `step`, asked after each step by each process: once any
  of them has received a SIGTERM, JAX's preemption service (which catches SIGTERM in every
  process of a `jax.distributed` run) makes it true at one step on all of them, the one after
  the furthest any had reached."""
  return multihost_utils.reached_preemption_sync_point(step)


def _gone(peer: dict) -> bool | None:
  """Whether a process of this host has exited (a zombie has); None for another host's."""
  if peer["host"] != socket.gethostname():
    return None
  try:
    with open(f"/proc/{peer['pid']}/stat", encoding="ascii") as f:
      return f.read().rsplit(")", 1)[1].split()[0] in "ZX"
  except OSError:
    return True


def lost_peer(error) -> str | None:
  """When `error` says that another process of this multi-process run is gone, one line naming
  it, else None: the processes the error names (by index or address), narrowed on this host to
  those that have exited."""
  text = f"{type(error).__name__}: {error}"
  if not _PEERS or not _PEER_GONE.search(text):
    return None
  others = {i: p for i, p in _PEERS.items() if i != jax.process_index()}
  indices = {int(i) for i in re.findall(r"\bTask (\d+)\b", text)}
  indices |= {int(i) for part in re.findall(r"tasks are unhealthy[^:]*:\s*([\d,\s]+)", text)
              for i in re.findall(r"\d+", part)}
  addresses = set(re.findall(r"\[([0-9a-fA-F.:]+)\]:\d+", text))
  suspects = {i: p for i, p in others.items()
              if i in indices or p["address"] in addresses} or others
  dead = ({i: p for i, p in suspects.items() if _gone(p)}
          or {i: p for i, p in suspects.items() if _gone(p) is None} or suspects)
  who = " or ".join(f"process {i} ({p['host']}, pid {p['pid']})" for i, p in sorted(dead.items()))
  return (f"process {jax.process_index()} of {jax.process_count()} lost {who} "
          f"({first_line(text)[:120]})")


def stop(line: str, status: int = 3) -> None:
  """Says `line` and ends this process at once: JAX's exit would wait at the shutdown barrier
  for a process that is gone, then abort with a stack dump."""
  for stream in (sys.stdout, sys.stderr):
    stream.flush()
  os.write(2, f"error: {line}\n".encode())
  os._exit(status)
