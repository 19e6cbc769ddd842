"""Orbax checkpoints: train state, schedule/meta JSON and the grain iterator, saved together.

`<workdir>/checkpoints/<step>/{state,meta,data}` keeps the latest `keep` steps;
`<workdir>/best/<step>/{state,meta}` keeps the one with the lowest validation top-1 error.
The state is a plain pytree of arrays ({'step', 'params', 'opt_state'}, params as nested dicts
{layer: {'kernel', 'bias'}}): it restores with plain Orbax, no alexnet_jax import needed.
"""

from __future__ import annotations

import os

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
    self.latest = ocp.CheckpointManager(
        os.path.join(workdir, "checkpoints"),
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
        item_names=("state", "meta", "data"))
    self.best = ocp.CheckpointManager(
        os.path.join(workdir, "best"),
        options=ocp.CheckpointManagerOptions(max_to_keep=1, create=True),
        item_names=("state", "meta"))

  def save(self, step: int, state, meta: dict, iterator: grain.DatasetIterator) -> None:
    self.latest.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta),
        data=grain.checkpoint.CheckpointSave(iterator)), force=True)

  def save_best(self, step: int, state, meta: dict) -> None:
    self.best.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True)

  def restore_latest(self, abstract_state, iterator: grain.DatasetIterator):
    """(state, meta) of the newest checkpoint that restores, or None when there is none.

    A damaged newest checkpoint is reported and the previous one is tried; the iterator is
    restored in place.
    """
    steps = sorted(self.latest.all_steps(), reverse=True)
    for step in steps:
      try:
        restored = self.latest.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore(),
            data=grain.checkpoint.CheckpointRestore(iterator)))
      except Exception as e:  # noqa: BLE001 -- any failure to read means this step is damaged
        logging.warning("checkpoint step %d cannot be restored (%s: %s); trying the previous one",
                        step, type(e).__name__, str(e).splitlines()[0] if str(e) else "")
        continue
      return restored["state"], restored["meta"]
    if steps:
      raise UserError(f"no checkpoint in {self.latest.directory} can be restored "
                      f"(steps {steps}); move the directory away to start afresh")
    return None

  def wait(self) -> None:
    self.latest.wait_until_finished()
    self.best.wait_until_finished()

  def close(self) -> None:
    self.latest.close()
    self.best.close()


def abstract_like(tree):
  """ShapeDtypeStructs (with shardings) of a pytree of arrays: an Orbax restore target."""
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)
