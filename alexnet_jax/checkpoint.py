"""Orbax checkpoints: train state, schedule/meta JSON and the grain iterator, saved together.

`<workdir>/checkpoints/<step>/{state,meta,data}` keeps the latest `keep` steps;
`<workdir>/best/<step>/{state,meta}` keeps the one with the lowest validation top-1 error.
The state is a plain pytree of arrays ({'step', 'params', 'opt_state'}, params as nested dicts
{layer: {'kernel', 'bias'}}): it restores with plain Orbax, no alexnet_jax import needed.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Callable

import grain
import jax
import orbax.checkpoint as ocp
from absl import logging

from alexnet_jax.cli import UserError


class Checkpoints:
  """The latest-N manager and the best-1 manager of one workdir."""

  def __init__(self, workdir: str, keep: int):
    workdir = os.path.abspath(workdir)
    try:
      os.makedirs(workdir, exist_ok=True)
    except OSError as e:
      raise UserError(f"cannot create workdir {workdir}: {e.strerror}") from None
    if not os.access(workdir, os.W_OK):
      raise UserError(f"workdir {workdir} is not writable")
    self.workdir = workdir
    self.latest = ocp.CheckpointManager(
        os.path.join(workdir, "checkpoints"), options=_options("latest", keep),
        item_names=("state", "meta", "data"))
    self.best = ocp.CheckpointManager(
        os.path.join(workdir, "best"), options=_options("best", 1),
        item_names=("state", "meta"))

  def save(self, step: int, state, meta: dict, iterator: grain.DatasetIterator) -> None:
    with self._writing(step):
      self.latest.save(step, args=ocp.args.Composite(
          state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta),
          data=grain.checkpoint.CheckpointSave(iterator)), force=True)

  def save_best(self, step: int, state, meta: dict) -> None:
    with self._writing(step):
      self.best.save(step, args=ocp.args.Composite(
          state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True)

  @contextlib.contextmanager
  def _writing(self, step: int):
    """A failed write (disk full, permissions) is a one-line error; Orbax writes into a
    temporary directory and renames it when complete, so earlier checkpoints stay intact."""
    try:
      yield
    except OSError as e:
      kept = [s for s in self.latest.all_steps() if s != step]
      raise UserError(f"cannot write the checkpoint of step {step} in {self.workdir} "
                      f"({e.strerror or e}); the previous checkpoint "
                      f"(step {max(kept) if kept else 'none'}) is intact") from None

  def restore_latest(self, abstract_state, iterator: grain.DatasetIterator,
                     position_at: Callable[[int], dict]):
    """(state, meta) of the newest checkpoint that restores, or None when there is none.

    A damaged newest checkpoint is reported and the previous one is tried. The input iterator
    is restored in place; when the checkpoint was written by another number of processes it is
    positioned from the step instead (every process reads its share of each global batch).
    """
    steps = sorted(self.latest.all_steps(), reverse=True)
    for step in steps:
      try:
        restored = self.latest.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
      except Exception as e:  # noqa: BLE001 -- any failure to read means this step is damaged
        kept = self._set_aside(step)
        logging.warning("checkpoint step %d cannot be restored (%s: %s); moved to %s, trying "
                        "the previous one", step, type(e).__name__,
                        str(e).splitlines()[0] if str(e) else "", kept)
        continue
      self.latest.reload()
      self._restore_input(step, restored["meta"], iterator, position_at)
      return restored["state"], restored["meta"]
    if steps:
      raise UserError(f"no checkpoint in {self.latest.directory} can be restored "
                      f"(steps {steps}); move the directory away to start afresh")
    return None

  def _set_aside(self, step: int) -> str:
    """Renames a damaged step directory out of the manager's sight (kept for inspection), so
    that training can write that step again."""
    path = os.path.join(str(self.latest.directory), str(step))
    kept = f"{path}.damaged-{int(time.time())}"
    if jax.process_index() == 0:
      os.replace(path, kept)
    return kept

  def _restore_input(self, step: int, meta: dict, iterator, position_at) -> None:
    writers = int(meta.get("processes", 1))
    if writers == jax.process_count():
      try:
        self.latest.restore(step, args=ocp.args.Composite(
            data=grain.checkpoint.CheckpointRestore(iterator)))
        return
      except Exception as e:  # noqa: BLE001
        why = f"its input position cannot be read ({type(e).__name__})"
    else:
      why = f"it was written by {writers} processes, this run has {jax.process_count()}"
    position = iterator.get_state()
    if not isinstance(position, dict) or "next_index" not in position:
      raise UserError(f"checkpoint step {step}: {why}, and with data.workers > 0 the input "
                      "position cannot be derived from the step; resume with data.workers=0")
    iterator.set_state({**position, **position_at(step)})
    logging.warning("checkpoint step %d: %s; input positioned from the step", step, why)

  def wait(self) -> None:
    with self._writing(self.latest.latest_step() or 0):
      self.latest.wait_until_finished()
      self.best.wait_until_finished()

  def close(self) -> None:
    self.latest.close()
    self.best.close()


def _options(name: str, keep: int) -> ocp.CheckpointManagerOptions:
  """Each manager's cross-process barriers get their own names: Orbax names them by step
  alone, so the two managers writing the same step in background threads would meet at each
  other's barriers (a multi-process run then aborted at exit, now and then)."""
  return ocp.CheckpointManagerOptions(
      max_to_keep=keep, create=True,
      multiprocessing_options=ocp.options.MultiprocessingOptions(barrier_sync_key_prefix=name))


def abstract_like(tree):
  """ShapeDtypeStructs (with shardings) of a pytree of arrays: an Orbax restore target."""
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)
