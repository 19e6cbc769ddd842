"""A checkpoint's parameters, for inference and fine-tuning: a trained network back from a
workdir, its parameters only (the optimizer state stays on disk) placed on any mesh, from the
newest step that restores (a damaged one reported and the previous one tried; nothing on disk
is changed). Training's own way back in, the whole state and the input position, is
`checkpoint.Checkpoints.restore_latest`.
"""

from __future__ import annotations

import os
from typing import Callable

import jax
import ml_collections
import orbax.checkpoint as ocp

from alexnet_jax import checkpoint, checkpoint_meta, models
from alexnet_jax import workdir as workdir_lib
from alexnet_jax.errors import UserError


def step_dirs(workdir: str, *, step: int | None = None, best: bool = False) -> list[str]:
  """Step directories to try, newest first: `best/<step>`, `checkpoints/<step>`, or all of
  `checkpoints/` (the newest first, older ones as fallbacks)."""
  run = workdir_lib.RunDir(workdir)
  root = run.steps_dir(best)
  if not os.path.isdir(root):
    raise UserError(f"no checkpoints in {workdir} (missing {root})")
  steps = checkpoint.saved_steps(workdir, best)[::-1]
  if step is not None:
    if step not in steps:
      raise UserError(f"no checkpoint for step {step} in {root} (have {sorted(steps)})")
    steps = [step]
  if not steps:
    raise UserError(f"no checkpoints in {root}")
  return [run.step_dir(s, best) for s in steps]


def newest_meta(workdir: str, *, step: int | None = None, best: bool = False
                ) -> tuple[str, dict]:
  """(step dir, meta) of the newest checkpoint of `workdir` whose meta reads (`step`, `best`
  as in `step_dirs`)."""
  candidates = step_dirs(workdir, step=step, best=best)
  return checkpoint.newest_that_restores(
      candidates, checkpoint.read_meta,
      none_left=f"no checkpoint of {workdir} can be read ({', '.join(candidates)})")


def _read_params(step_dir: str, abstract_params) -> dict:
  """The 'params' subtree of a checkpoint's state, placed as `abstract_params` says (Orbax
  partial restore: the optimizer state stays on disk)."""
  restored = ocp.PyTreeCheckpointer().restore(
      os.path.join(step_dir, checkpoint.STATE),
      args=ocp.args.PyTreeRestore(
          item={"params": abstract_params},
          restore_args={"params": ocp.checkpoint_utils.construct_restore_args(abstract_params)},
          partial_restore=True))
  return restored["params"]


def restore(workdir: str, *, step: int | None = None, best: bool = False,
            mesh_for: Callable[[ml_collections.ConfigDict], jax.sharding.Mesh]):
  """(step dir, meta, config, graphdef, params) of the newest checkpoint of `workdir` that
  restores (`best`: the best one; `step`: that step), on `mesh_for(config)`."""
  def read(step_dir):
    meta = checkpoint.read_meta(step_dir)
    config = checkpoint_meta.config_of(meta)
    graphdef, abstract = models.abstract_model(config.model, mesh=mesh_for(config))
    return meta, config, graphdef, _read_params(step_dir, abstract)

  candidates = step_dirs(workdir, step=step, best=best)
  step_dir, (meta, config, graphdef, params) = checkpoint.newest_that_restores(
      candidates, read, none_left=f"no checkpoint of {workdir} can be restored "
                                  f"({', '.join(candidates)})")
  return step_dir, meta, config, graphdef, params
