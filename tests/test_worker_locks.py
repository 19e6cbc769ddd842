"""The locks an input worker shares with the training process, given back when the worker
dies holding one (`data.worker_locks`)."""

import os
import re

import pytest

_DIES_HOLDING = """
import multiprocessing, os, signal, sys
import grain, numpy as np
from alexnet_jax.data import workers

class DiesHolding(grain.transforms.Map):
  # The worker's copy of grain's start arguments: its stop event or its set-state counter.
  def map(self, value):
    if value == 5:
      shared = multiprocessing.current_process()._kwargs
      if sys.argv[1] == "stop event":
        shared["should_stop"]._cond._lock.acquire()
      else:
        shared["set_state_request_count"].get_lock().acquire()
      os.kill(os.getpid(), signal.SIGKILL)
    return {"value": np.int64(value)}

if __name__ == "__main__":
  chunks = grain.MapDataset.range(100).map(DiesHolding())
  reading = workers.FromStep(chunks, grain.ReadOptions(num_threads=1, prefetch_buffer_size=1),
                             1, {"value": ((), "<i8")}, what="an evaluation batch")
  try:
    for _ in range(100):  # as the pipeline reads them
      next(reading)
  except workers.UserError as e:
    print("error:", e)
"""


@pytest.mark.parametrize("lock", ["stop event", "set-state counter"])
def test_a_worker_killed_holding_a_lock_it_shares_is_one_line_not_a_hang(tmp_path, lock):
  """A worker that dies holding the lock of grain's stop event or of its set-state counter
  (killed inside the microseconds a worker holds one, as the out-of-memory killer may): the
  evaluation ends with the dead worker's one line within seconds; the lock is given back
  (grain's clean-up, in this process, waits for it). Mutations: `worker_locks.watch` not
  called from `in_workers` -> both hang (red: the timeout); the lock given back with its own
  `release` -> red (the stop event: grain's `Event.set` then fails its ownership check; the
  counter's RLock refuses); `shared_locks` without the counter -> red; the iterators in use
  not found (`co_qualname` matched on another name) -> red."""
  import subprocess
  import sys

  script = tmp_path / "dies_holding.py"
  script.write_text(_DIES_HOLDING)
  result = subprocess.run([sys.executable, str(script), lock], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.splitlines() == [
      "error: an input worker process was killed by SIGKILL before an evaluation batch: the "
      "kernel's out-of-memory killer sends it, if no one else did"], result.stdout
  assert re.search(r"input worker \d+ ended \(status -9\) holding 1 lock\(s\) it shared "
                   r"with this process: given back", result.stderr), result.stderr[-2000:]


def test_a_lock_that_is_free_is_not_given_back():
  """A free lock, a Lock's or an RLock's, is looked at and left free, not given back.
  Mutation: the lock taken to look at it not released -> red."""
  import multiprocessing

  from alexnet_jax.data import worker_locks

  context = multiprocessing.get_context("spawn")
  for lock in (context.Lock(), context.RLock()):
    assert not worker_locks.give_back_if_held(lock, held_s=0.01)
    assert lock.acquire(False)
    lock.release()
