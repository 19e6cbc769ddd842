"""A checkpoint's parameters back for inference and fine-tuning (`checkpoint_params.py`): the
newest step that restores, nothing on disk changed; `step` and `best`; a workdir without
checkpoints in one line; the parameters placed on the mesh asked for."""

import logging
import os
import shutil

import jax
import numpy as np
import pytest
from absl import logging as absl_logging

from alexnet_jax import checkpoint_params, inference
from alexnet_jax.errors import UserError
from alexnet_jax.sharding import MODEL, make_mesh, mesh_for
from conftest import damage_state, saved_state


def test_a_damaged_newest_step_is_named_and_the_previous_one_read_with_nothing_moved(
    straight_run, tmp_path, caplog):
  """Mutations: the steps tried oldest first; the damaged step set aside as training does
  (renamed) -> red."""
  workdir = str(tmp_path / "copy")
  shutil.copytree(straight_run[0], workdir)
  damage_state(os.path.join(workdir, "checkpoints", "8"), "truncate")
  absl_logging.use_python_logging()
  with caplog.at_level(logging.WARNING):
    step_dir, meta, _, _, params = checkpoint_params.restore(workdir, mesh_for=mesh_for)
  assert (step_dir, meta["step"]) == (os.path.join(workdir, "checkpoints", "6"), 6)
  warnings = [r.getMessage() for r in caplog.records if "cannot be restored" in r.getMessage()]
  assert len(warnings) == 1 and warnings[0].startswith(
      f"checkpoint {os.path.join(workdir, 'checkpoints', '8')} cannot be restored"), warnings
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["6", "8"]
  jax.tree.map(np.testing.assert_array_equal, params, saved_state(workdir, 6)["params"])
  assert inference.load(workdir).step == 6  # the command's way in


def test_step_and_best_pick_their_checkpoint_and_a_workdir_without_one_is_one_line(
    straight_run, tmp_path):
  workdir = straight_run[0]
  checkpoints = os.path.join(workdir, "checkpoints")
  assert checkpoint_params.step_dirs(workdir) == [os.path.join(checkpoints, "8"),
                                                  os.path.join(checkpoints, "6")]
  assert checkpoint_params.step_dirs(workdir, step=6) == [os.path.join(checkpoints, "6")]
  best = os.listdir(os.path.join(workdir, "best"))
  assert checkpoint_params.step_dirs(workdir, best=True) == [os.path.join(workdir, "best", s)
                                                             for s in best]
  assert inference.load(workdir, best=True).path == os.path.join(workdir, "best", best[0])
  with pytest.raises(UserError, match=r"^no checkpoint for step 5 in \S+/checkpoints "
                                      r"\(have \[6, 8\]\)$"):
    inference.load(workdir, step=5)
  with pytest.raises(UserError, match="^no checkpoints in .*nowhere"):
    inference.load(str(tmp_path / "nowhere"))
  # A run that died before its first checkpoint leaves the folder empty. Mutation: the check
  # dropped (an IndexError from the empty list) -> red.
  (tmp_path / "early" / "checkpoints").mkdir(parents=True)
  with pytest.raises(UserError, match=f"^no checkpoints in {tmp_path}/early/checkpoints$"):
    inference.load(str(tmp_path / "early"))


def test_the_parameters_are_placed_on_the_mesh_asked_for(straight_run):
  """The run trained its two columns on a 4x2 mesh of 8 devices; its parameters restore onto
  one device as well as onto that mesh, the same values either way. Mutations: `mesh_for`
  ignored (one device always; the config's mesh always); Orbax's restore arguments dropped ->
  red."""
  saved = saved_state(straight_run[0], 8)["params"]
  one_device = make_mesh(model=1, devices=jax.devices()[:1])
  for mesh in (one_device, None):
    _, _, config, _, params = checkpoint_params.restore(
        straight_run[0], mesh_for=lambda config, mesh=mesh: mesh or mesh_for(config))
    jax.tree.map(np.testing.assert_array_equal, params, saved)
    devices = {d for leaf in jax.tree.leaves(params) for d in leaf.sharding.device_set}
    if mesh is one_device:
      assert devices == {jax.devices()[0]}
    else:
      assert devices == set(jax.devices())
      assert MODEL in params["conv1"]["kernel"].sharding.spec, params["conv1"]["kernel"].sharding
