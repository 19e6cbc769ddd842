"""The workdir's checkpoints (`checkpoint.py`): a kill anywhere in the save sequence, a damaged
step, a full disk, the managers' barriers, and training's way back in; a checkpoint read with
plain Orbax. (Inference's way back in: test_checkpoint_params.py.)"""

import errno
import glob
import logging
import os
import shutil
import subprocess
import sys

import orbax.checkpoint as ocp
import pytest

from alexnet_jax import checkpoint, train
from alexnet_jax.errors import UserError
from conftest import assert_same_params, compiled, damage_state, saved_state, small_config


class _Killed(BaseException):
  """Stands for kill -9: nothing after it runs but the writes already handed to Orbax."""


@pytest.mark.parametrize("point", ["before best/4", "between best/4 and checkpoints/4"])
def test_a_kill_at_any_point_of_the_save_sequence_resumes_to_the_straight_run(
    straight_run, tmp_path, monkeypatch, point):
  """Step 4 is an evaluation that improves: best/4, then checkpoints/4. A run killed between
  the two used to leave best/4 in the way of every rerun (StepAlreadyExistsError at step 4).
  (A kill after checkpoints/4 is a plain resume: test_reliability.py's SIGTERM and kill -9.)"""
  workdir = str(tmp_path / "run")
  save, save_best = checkpoint.Checkpoints.save, checkpoint.Checkpoints.save_best

  def killing_save(self, step, *args, **kwargs):
    if step == 4 and point == "between best/4 and checkpoints/4":
      raise _Killed
    save(self, step, *args, **kwargs)

  def killing_save_best(self, step, *args, **kwargs):
    if step == 4 and point == "before best/4":
      raise _Killed
    save_best(self, step, *args, **kwargs)

  monkeypatch.setattr(checkpoint.Checkpoints, "save", killing_save)
  monkeypatch.setattr(checkpoint.Checkpoints, "save_best", killing_save_best)
  with pytest.raises(_Killed):
    train.train_and_evaluate(small_config(), workdir)
  monkeypatch.undo()
  best = sorted(int(s) for s in os.listdir(os.path.join(workdir, "best")) if s.isdigit())
  assert (4 in best) == (point != "before best/4")
  for _ in range(2):  # the rerun completes, and so does any rerun after it
    train.train_and_evaluate(small_config(), workdir)
  assert_same_params(workdir, straight_run[0])
  steps = lambda run: sorted(s for s in os.listdir(os.path.join(run, "best")) if s.isdigit())
  assert steps(workdir) == steps(straight_run[0])


@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_a_damaged_newest_checkpoint_is_named_set_aside_and_the_previous_one_resumes(
    straight_run, tmp_path, caplog, damage):
  workdir = str(tmp_path / "copy")
  shutil.copytree(straight_run[0], workdir)
  damage_state(os.path.join(workdir, "checkpoints", "8"), damage)
  with caplog.at_level("WARNING"):
    from absl import logging as absl_logging

    absl_logging.use_python_logging()
    train.train_and_evaluate(small_config(), workdir)  # resumes at 6, redoes 7 and 8
  warnings = [r.getMessage() for r in caplog.records if "cannot be restored" in r.getMessage()]
  assert warnings and "step 8" in warnings[0] and "moved to" in warnings[0]
  # TensorStore's error, which names the damaged step's files, not Orbax's wrapper of it
  assert os.path.join(workdir, "checkpoints", "8", "state") in warnings[0], warnings[0]
  assert glob.glob(os.path.join(workdir, "checkpoints", "8.damaged-*"))
  assert_same_params(workdir, straight_run[0])


def test_an_unreadable_input_position_is_said_and_taken_from_the_step(straight_run, tmp_path,
                                                                     caplog):
  """The input position is the step: a checkpoint whose saved iterator state cannot be read
  resumes from its step all the same, with a warning, to the straight run's parameters.
  Mutations: the iterator's failure let through; the position taken from step 0 -> red."""
  workdir = tmp_path / "copy"
  shutil.copytree(straight_run[0], workdir)
  shutil.rmtree(workdir / "checkpoints" / "8")
  (workdir / "checkpoints" / "6" / "data" / "process_0-of-1.json").write_text('{"step": ')
  with caplog.at_level("WARNING"):
    from absl import logging as absl_logging

    absl_logging.use_python_logging()
    train.train_and_evaluate(small_config(), str(workdir))
  assert [r.getMessage() for r in caplog.records if "input position" in r.getMessage()] == [
      "checkpoint step 6: its input position cannot be read (JSONDecodeError); input "
      "positioned from the step"]
  assert_same_params(str(workdir), straight_run[0])


def _tmpfs(path, size: str) -> bool:
  os.makedirs(path, exist_ok=True)
  return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                        capture_output=True).returncode == 0


@pytest.mark.slow
def test_a_full_disk_is_one_line_and_leaves_the_previous_checkpoint(tmp_path, monkeypatch,
                                                                   caplog):
  """A real full disk (a 3 MB tmpfs: the first checkpoint, ≈ 2.3 MB, fits and the next do not)
  where one can be mounted, else the error Orbax's writer would raise. On the real one Orbax's
  background threads logged ≈ 850 lines of tracebacks before the one line; mutations: the filter
  that folds them (`checkpoint._FoldWriteFailures`) not installed; the partial directories'
  removal ending only when some are left (5 s of retries, then a warning) -> red."""
  disk = tmp_path / "disk"
  real = _tmpfs(disk, "3m")
  if not real:
    save = ocp.CheckpointManager.save

    def full_at_step_4(self, step, *args, **kwargs):
      if step == 4:
        raise OSError(errno.ENOSPC, "No space left on device")
      return save(self, step, *args, **kwargs)

    monkeypatch.setattr(ocp.CheckpointManager, "save", full_at_step_4)
  try:
    with pytest.raises(UserError, match=r"cannot write the checkpoint .*No space left on device.*"
                                        r"previous checkpoint \(step 2\) is intact") as error:
      train.train_and_evaluate(small_config(), str(disk / "run"))
    assert "\n" not in str(error.value)
    assert real or "cannot write the checkpoint of step 4 in " in str(error.value)
    background = [r.getMessage()[:200] for r in caplog.records
                  if "orbax" in r.pathname and r.levelno >= logging.WARNING]
    assert not background, background
    left = os.listdir(disk / "run" / "checkpoints") + os.listdir(disk / "run" / "best")
    assert not [n for n in left if "tmp" in n], left
    assert not [r for r in caplog.records if "could not remove" in r.getMessage()]
    monkeypatch.undo()
    assert saved_state(str(disk / "run"), 2)["params"]["conv1"]["kernel"].shape == (2, 5, 5, 3, 16)
  finally:
    if real:
      subprocess.run(["umount", str(disk)], check=False)


@pytest.mark.parametrize("error,said", [
    (OSError(errno.ENOSPC, "No space left on device"), "No space left on device: the disk is full"),
    (OSError(errno.EDQUOT, ""), "no space left on device: the disk is full"),  # no strerror
    (RuntimeError("RESOURCE_EXHAUSTED: writing chunk 3"), "No space left on device: the disk"),
    (ValueError("tensorstore: ENOSPC"), "No space left on device: the disk is full"),
    (OSError(errno.EROFS, "Read-only file system"), "Read-only file system"),
    (OSError(errno.EACCES, ""), "[Errno 13] "),  # no strerror: the error itself
    (OSError(errno.ENOENT, "No such file or directory"), None),  # not the disk: passed on
    (ValueError("shape mismatch"), None),
])
def test_a_write_that_failed_for_space_or_permissions_says_so_and_orbax_logs_of_it_fold(error,
                                                                                       said):
  """What a failed checkpoint write says when the disk or permissions are the cause, and the
  Orbax records that are folded into it: those whose exception, or any cause or context of
  it, is such a failure. Mutations: the text checks joined by `and`; `__cause__ or
  __context__` made `and` (a failure raised while handling another) -> red."""
  got = checkpoint._write_failure(error)
  assert got is None if said is None else got.startswith(said)
  try:
    try:
      raise error
    except Exception:
      raise RuntimeError("writing step 4 failed")  # noqa: B904 (a context, not a cause)
  except RuntimeError as wrapped:
    record = logging.LogRecord("absl", logging.ERROR, os.path.join(os.sep, "site", "orbax", "x.py"),
                               1, "background write failed", None, (RuntimeError, wrapped, None))
  keep = lambda r: checkpoint._FoldWriteFailures().filter(r)
  assert keep(record) == (said is None)
  record.pathname = os.path.join(os.sep, "site", "alexnet_jax", "x.py")  # not Orbax's: kept
  assert keep(record)


def test_a_first_write_that_fails_says_no_earlier_checkpoint_exists(tmp_path):
  """Mutation: the sentence of a workdir with no checkpoint yet made the one with a step ->
  red ("the previous checkpoint (step none) is intact")."""
  with pytest.raises(UserError) as error, checkpoint.Checkpoints(str(tmp_path), keep=2) as ckpts:
    with ckpts._writing(4):
      raise OSError(errno.ENOSPC, "No space left on device")
  assert str(error.value) == (
      f"cannot write the checkpoint of step 4 in {tmp_path} (No space left on device: the disk "
      "is full); no earlier checkpoint exists")


def test_the_two_checkpoint_managers_never_share_a_barrier_name(tmp_path):
  # Orbax names its background barriers by step alone: the latest and best managers writing
  # the same step in two processes met at each other's barriers until each got a prefix.
  with checkpoint.Checkpoints(str(tmp_path), keep=2) as ckpts:
    prefixes = [m._multiprocessing_options.barrier_sync_key_prefix
                for m in (ckpts.latest, ckpts.best)]
  assert None not in prefixes and len(set(prefixes)) == 2


def test_a_checkpoint_restores_with_plain_orbax_in_a_fresh_process(straight_run):
  workdir, _ = straight_run
  code = (
      "import sys, orbax.checkpoint as ocp\n"
      f"state = ocp.StandardCheckpointer().restore({workdir!r} + '/checkpoints/8/state')\n"
      "assert not [m for m in sys.modules if m.split('.')[0] == 'alexnet_jax'], 'imported'\n"
      "print(int(state['step']), state['params']['conv1']['kernel'].shape)\n")
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env=os.environ | {"JAX_PLATFORMS": "cpu"}, cwd="/")
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.split("\n")[0] == "8 (2, 5, 5, 3, 16)"


def test_state_shapes_name_every_array_by_its_path(straight_run):
  shapes = checkpoint.saved_shapes(os.path.join(straight_run[0], "checkpoints", "8"))
  assert shapes["params/conv1/kernel"] == (2, 5, 5, 3, 16) and shapes["step"] == ()
  assert any(p.startswith("opt_state/") for p in shapes)


def test_best_holds_only_the_last_improvement(tmp_path):
  """`best/` is replaced at each improvement: after three, only the third is there.
  Mutation: the best manager keeping 2 -> two steps in best/ (red)."""
  import jax.numpy as jnp

  with checkpoint.Checkpoints(str(tmp_path), keep=3) as ckpts:
    for step in (2, 4, 6):
      ckpts.save_best(step, {"w": jnp.full(3, float(step))}, {"step": step})
  assert sorted(s for s in os.listdir(tmp_path / "best") if s.isdigit()) == ["6"]


def test_a_save_of_replicated_arrays_compiles_nothing(tmp_path, caplog):
  """The state's arrays are written whole by one device each: Orbax's default for an array
  replicated over devices cut it into one slice per device first, compiling a program per
  shape and device at a process's first save (seconds on 8 CPU devices). Mutation:
  `use_replica_parallel=True` -> red."""
  import jax
  import jax.numpy as jnp
  from jax.sharding import NamedSharding, PartitionSpec as P

  from alexnet_jax.sharding import make_mesh

  mesh = make_mesh(model=2)
  state = {"replicated": jax.device_put(jnp.arange(8 * 37, dtype=jnp.float32).reshape(8, 37),
                                        NamedSharding(mesh, P())),
           "columns": jax.device_put(jnp.ones((3, 2 * 29)), NamedSharding(mesh, P(None, "model")))}
  with checkpoint.Checkpoints(str(tmp_path), keep=1) as ckpts, compiled(caplog) as programs:
    ckpts.save_best(1, state, {"step": 1})
    ckpts.wait()
  assert programs == []
  restored = ocp.StandardCheckpointer().restore(str(tmp_path / "best" / "1" / "state"))
  assert (restored["replicated"] == jax.device_get(state["replicated"])).all()


def test_a_workdir_written_through_orbaxs_standard_handler_resumes_to_the_straight_run(
    straight_run, tmp_path, monkeypatch):
  """Checkpoints written before the state had a handler of its own (Orbax's standard one, its
  name in each step's metadata) resume bitwise. Mutation: the state restored with
  `StandardRestore` from a registry that has none -> red."""
  import grain

  workdir = str(tmp_path / "run")

  def standard(with_input=False):
    handlers = ocp.handlers.DefaultCheckpointHandlerRegistry()
    items = ((checkpoint.STATE, ocp.args.StandardSave),
             (checkpoint.STATE, ocp.args.StandardRestore),
             (checkpoint.META, ocp.args.JsonSave), (checkpoint.META, ocp.args.JsonRestore),
             (checkpoint.DATA, grain.checkpoint.CheckpointSave),
             (checkpoint.DATA, grain.checkpoint.CheckpointRestore))
    for item, args in items[:6 if with_input else 4]:
      handlers.add(item, args)
    return handlers

  monkeypatch.setattr(checkpoint, "_handlers", standard)
  monkeypatch.setattr(ocp.args, "PyTreeSave", ocp.args.StandardSave)
  train.train_and_evaluate(small_config(epochs=1.0), workdir)
  monkeypatch.undo()
  with open(os.path.join(workdir, "checkpoints", "4", "_CHECKPOINT_METADATA")) as f:
    assert "StandardCheckpointHandler" in f.read()
  train.train_and_evaluate(small_config(), workdir)
  assert_same_params(workdir, straight_run[0])
