"""The workdir's checkpoints: what a step directory holds, written and read (the workdir's
paths are `workdir.RunDir`'s).

`<workdir>/checkpoints/<step>/{state,meta,data}` keeps the latest `keep` steps;
`<workdir>/best/<step>/{state,meta}` keeps the one with the lowest validation top-1 error.
`state` is a plain pytree of arrays ({'step', 'params', 'opt_state'}, params as nested dicts
{layer: {'kernel', 'bias'}}): it restores with plain Orbax, no alexnet_jax import needed.
`meta` is JSON, written, upgraded and checked by `checkpoint_meta`; `data` is the input
position (the training loop's iterator: `prefetch.DevicePrefetch`).

Two ways back in, both newest first with a damaged step reported and the previous one tried
(`newest_that_restores`): `Checkpoints.restore_latest` (training: the whole state and the input
position; a damaged step is set aside so that training can write it again) and
`checkpoint_params.restore` (inference and fine-tuning: the parameters only, onto any mesh;
nothing on disk is changed).
"""

from __future__ import annotations

import contextlib
import errno
import logging as python_logging
import os
import shutil
import time
from typing import Callable

import grain
import jax
from etils import epath
import orbax.checkpoint as ocp
from absl import logging

from alexnet_jax import checkpoint_meta
from alexnet_jax import workdir as workdir_lib
from alexnet_jax.errors import UserError, first_line, innermost

STATE, META, DATA = "state", "meta", "data"  # items of a step directory
_REMOVE_ATTEMPTS = 50  # 0.1 s apart: removing the partial directories of a failed write


def validate(checkpoint_config) -> None:
  """`checkpoint.keep` and `checkpoint.every_steps` >= 1."""
  for name in ("keep", "every_steps"):
    value = checkpoint_config[name]
    if value < 1:
      raise UserError(f"checkpoint.{name} must be >= 1, got {value}"
                      + (" (0 would delete every checkpoint)" if name == "keep" else ""))


class Checkpoints:
  """The latest-N manager and the best-1 manager of one workdir; `last_saved` is the newest
  step written to (or restored from) `checkpoints/`. Leaving the `with` block waits for the
  writes in flight and closes the managers."""

  def __init__(self, workdir: str, keep: int):
    """`workdir` exists and its paths were checked (`workdir.prepare`)."""
    run = workdir_lib.RunDir(workdir)
    self.workdir = run.root
    self._folded = _FoldWriteFailures()
    logging.get_absl_logger().addFilter(self._folded)
    self.last_saved = None
    self.latest = ocp.CheckpointManager(run.checkpoints, options=_options("latest", keep),
                                        handler_registry=_handlers(with_input=True))
    self.best = ocp.CheckpointManager(run.best, options=_options("best", 1),
                                      handler_registry=_handlers())

  def __enter__(self) -> "Checkpoints":
    return self

  def __exit__(self, exc_type, *exc) -> None:
    try:
      if exc_type is None:
        self.wait()
    finally:
      self.close()

  def save(self, step: int, state, meta: dict, iterator: grain.DatasetIterator) -> None:
    with self._writing(step):
      self.latest.save(step, args=ocp.args.Composite(
          state=ocp.args.PyTreeSave(state), meta=ocp.args.JsonSave(meta),
          data=grain.checkpoint.CheckpointSave(iterator)), force=True)
    self.last_saved = step

  def save_best(self, step: int, state, meta: dict) -> None:
    """Replaces `best/` with this step. A best step at or after this one (left by a run that
    died between `best/N` and `checkpoints/N`, and resumed from an earlier step) is removed
    first: `best/` never blocks a step that `checkpoints/` has to reach again."""
    with self._writing(step):
      self.best.wait_until_finished()
      for stale in [s for s in self.best.all_steps() if s >= step]:
        self.best.delete(stale)
      self.best.save(step, args=ocp.args.Composite(
          state=ocp.args.PyTreeSave(state), meta=ocp.args.JsonSave(meta)), force=True)

  @contextlib.contextmanager
  def _writing(self, step: int | None):
    """A write that fails for want of space or permissions (now, or in Orbax's background
    writer) is a one-line error. Orbax writes each step into a temporary directory renamed when
    complete, so earlier checkpoints stay intact; the temporary directories are removed."""
    try:
      yield
    except Exception as e:  # noqa: BLE001 -- Orbax's async writer re-raises as ValueError
      why = _write_failure(e)
      if why is None:
        raise
      self._remove_partial()
      kept = [s for s in _complete_steps(str(self.latest.directory)) if s != step]
      which = f"of step {step} " if step is not None else ""
      before = (f"the previous checkpoint (step {max(kept)}) is intact" if kept else
                "no earlier checkpoint exists")
      raise UserError(f"cannot write the checkpoint {which}in {self.workdir} ({why}); {before}"
                      ) from None

  def _remove_partial(self) -> None:
    """Removes the temporary step directories of writes that failed. Writes of the failed step
    still in flight (the other manager's, or TensorStore's own after Orbax gave up) recreate
    their directories once space is freed, so removal is repeated until nothing comes back."""
    for manager in (self.latest, self.best):
      with contextlib.suppress(Exception):  # the failure in hand, or one of its consequences
        manager.wait_until_finished()
    if jax.process_index() != 0:
      return

    def partial() -> list[str]:
      roots = [str(manager.directory) for manager in (self.latest, self.best)]
      return [os.path.join(root, name) for root in roots if os.path.isdir(root)
              for name in os.listdir(root) if ".orbax-checkpoint-tmp" in name]

    for _ in range(_REMOVE_ATTEMPTS):
      for path in partial():
        shutil.rmtree(path, ignore_errors=True)
      time.sleep(0.1)
      if not partial():
        return
    logging.warning("could not remove the partial checkpoints %s", partial())

  def restore_latest(self, abstract_state, iterator: grain.DatasetIterator,
                     reposition: Callable[[int], None],
                     check: Callable[[dict, dict], None] | None = None):
    """(state, meta) of the newest checkpoint that restores, or None when there is none.

    `check(meta, saved)` sees each candidate's meta and the shapes of its saved state
    ({path: shape}) before anything is restored, and raises `UserError` when the checkpoint
    does not fit this run (another model, dataset or batch size): nothing is touched then. A
    checkpoint that cannot be read is damaged: reported, set aside, and the previous one
    tried. The input iterator is restored in place; when the checkpoint was written by
    another number of processes it is positioned from the step instead (`reposition`: every
    process reads its share of each global batch).
    """
    steps = sorted(self.latest.all_steps(), reverse=True)
    if not steps:
      return None

    def read(step):
      step_dir = os.path.join(str(self.latest.directory), str(step))
      meta = read_meta(step_dir)
      if check is not None:
        check(meta, saved_shapes(step_dir))
      restored = self.latest.restore(step, args=ocp.args.Composite(
          state=ocp.args.PyTreeRestore(abstract_state, restore_args=(
              ocp.checkpoint_utils.construct_restore_args(abstract_state)))))
      return restored["state"], meta

    def set_aside(step):
      return f"moved to {self._set_aside(step)}"

    step, (state, meta) = newest_that_restores(
        steps, read, on_damaged=set_aside, name=lambda step: f"step {step}",
        none_left=f"no checkpoint in {self.latest.directory} can be restored (steps {steps}); "
                  "move the directory away to start afresh")
    self.latest.reload()
    self._restore_input(step, meta, iterator, reposition)
    self.last_saved = step
    return state, meta

  def _set_aside(self, step: int) -> str:
    """Renames a damaged step directory out of the manager's sight (kept for inspection), so
    that training can write that step again."""
    path = os.path.join(str(self.latest.directory), str(step))
    kept = f"{path}.damaged-{int(time.time())}"
    if jax.process_index() == 0:
      os.replace(path, kept)
    return kept

  def _restore_input(self, step: int, meta: dict, iterator, reposition) -> None:
    writers = meta["processes"]
    if writers == jax.process_count():
      try:
        self.latest.restore(step, args=ocp.args.Composite(
            data=grain.checkpoint.CheckpointRestore(iterator)))
        return
      except Exception as e:  # noqa: BLE001
        why = f"its input position cannot be read ({type(e).__name__})"
    else:
      why = f"it was written by {writers} processes, this run has {jax.process_count()}"
    try:
      reposition(step)
    except UserError as e:
      raise UserError(f"checkpoint step {step}: {why}, and {e}") from None
    logging.warning("checkpoint step %d: %s; input positioned from the step", step, why)

  def wait(self) -> None:
    with self._writing(None):
      self.latest.wait_until_finished()
      self.best.wait_until_finished()

  def close(self) -> None:
    """Closes both managers; a write that failed for want of space was reported by `save` or
    `wait` already (or is by the error in flight) and does not fail the close again."""
    try:
      for manager in (self.latest, self.best):
        try:
          manager.close()
        except Exception as e:  # noqa: BLE001 -- Orbax's async writer re-raises as ValueError
          if _write_failure(e) is None:
            raise
    finally:
      logging.get_absl_logger().removeFilter(self._folded)


def _options(name: str, keep: int) -> ocp.CheckpointManagerOptions:
  """Each manager's cross-process barriers get their own names: Orbax names them by step
  alone, so the two managers writing the same step in background threads would meet at each
  other's barriers (a multi-process run then aborted at exit, now and then)."""
  return ocp.CheckpointManagerOptions(
      max_to_keep=keep, create=True,
      multiprocessing_options=ocp.options.MultiprocessingOptions(barrier_sync_key_prefix=name))


def _handlers(with_input: bool = False) -> ocp.handlers.DefaultCheckpointHandlerRegistry:
  """The handlers of a step directory's items. The state's arrays are written each whole by
  the device that holds its first copy: Orbax's default for an array replicated over devices
  (replica-parallel) first cuts it into one slice per device, compiling a slice program per
  shape and device at a process's first save; spreading the write pays only for states far
  larger than this network's."""
  arrays = ocp.type_handlers.create_type_handler_registry(*[
      (kind, ocp.type_handlers.ArrayHandler(use_replica_parallel=False) if kind is jax.Array
       else ocp.type_handlers.get_type_handler(kind))
      for kind in ocp.type_handlers.supported_types()])
  state = ocp.PyTreeCheckpointHandler(type_handler_registry=arrays)
  handlers = ocp.handlers.DefaultCheckpointHandlerRegistry()
  for item, args in ((STATE, ocp.args.PyTreeSave), (STATE, ocp.args.PyTreeRestore),
                     (META, ocp.args.JsonSave), (META, ocp.args.JsonRestore),
                     *([(DATA, grain.checkpoint.CheckpointSave),
                        (DATA, grain.checkpoint.CheckpointRestore)] if with_input else [])):
    handlers.add(item, args, state if item == STATE else None)
  return handlers


def abstract_like(tree):
  """ShapeDtypeStructs (with shardings) of a pytree of arrays: an Orbax restore target."""
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)


class _FoldWriteFailures(python_logging.Filter):
  """Drops what Orbax's background threads log about a write that failed for want of space or
  permissions (each thread its traceback: hundreds of lines for one full disk): the failure
  reaches `save` or `wait`, which say it in one line."""

  def filter(self, record: python_logging.LogRecord) -> bool:
    if record.levelno < python_logging.WARNING or f"{os.sep}orbax{os.sep}" not in record.pathname:
      return True
    causes = [Exception(record.getMessage())]
    e = record.exc_info[1] if record.exc_info else None
    while e is not None and len(causes) < 16:
      causes.append(e)
      e = e.__cause__ or e.__context__
    return not any(_write_failure(cause) for cause in causes)


def _write_failure(e: BaseException) -> str | None:
  """Why a checkpoint write failed when the disk or the permissions are the cause, else None."""
  text = str(e)
  if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
    return f"{e.strerror or 'no space left on device'}: the disk is full"
  if "No space left on device" in text or "RESOURCE_EXHAUSTED" in text or "ENOSPC" in text:
    return "No space left on device: the disk is full"
  if isinstance(e, OSError) and e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
    return e.strerror or str(e)
  return None


def _complete_steps(root: str) -> list[int]:
  return [int(n) for n in os.listdir(root) if n.isdigit()] if os.path.isdir(root) else []


def saved_steps(workdir: str, best: bool = False) -> list[int]:
  """The steps of `workdir`'s `checkpoints/` (`best`: of `best/`), oldest first (nothing is
  created)."""
  return sorted(_complete_steps(workdir_lib.RunDir(workdir).steps_dir(best)))


def saved_shapes(step_dir: str) -> dict[str, tuple[int, ...]]:
  """{'params/conv1/kernel': shape, ...} of a checkpoint's state, from Orbax's metadata (no
  array is read)."""
  # The item's handler reads its tree alone: a checkpointer would also look for a
  # checkpoint-level metadata file inside the item and warn that it is missing.
  handler = ocp.PyTreeCheckpointHandler()
  return state_shapes(handler.metadata(epath.Path(step_dir) / STATE).tree)


def state_shapes(state) -> dict[str, tuple[int, ...]]:
  """{path: shape} of a state (arrays, ShapeDtypeStructs or Orbax's metadata): paths as
  'a/b/0' whatever the node types (the saved tree has dicts and lists where the live state
  has optax's named tuples)."""
  return {jax.tree_util.keystr(p, simple=True, separator="/"): tuple(x.shape)
          for p, x in jax.tree_util.tree_flatten_with_path(state)[0]}


def newest_that_restores(candidates, read, *, on_damaged=None, none_left: str, name=str):
  """(candidate, read(candidate)) of the first candidate that reads; each one that fails is
  reported by `name(candidate)` (`on_damaged(candidate)` may act on it and say what it did) and
  the next tried."""
  for candidate in candidates:
    try:
      return candidate, read(candidate)
    except UserError:
      raise
    except Exception as e:  # noqa: BLE001 -- any failure to read means this step is damaged
      done = on_damaged(candidate) if on_damaged else "skipped"
      why = innermost(e)
      logging.warning("checkpoint %s cannot be restored (%s: %s); %s, trying the previous one",
                      name(candidate), type(why).__name__, first_line(why), done)
  raise UserError(none_left)


def read_meta(step_dir: str) -> dict:
  """The meta of a step directory as this version writes it (`checkpoint_meta.upgrade`)."""
  raw = ocp.Checkpointer(ocp.JsonCheckpointHandler()).restore(os.path.join(step_dir, META))
  return checkpoint_meta.upgrade(raw, step_dir)


def write_converted(workdir: str, params: dict, meta: dict, step: int = 0) -> str:
  """A workdir's first checkpoint from weights made elsewhere (`convert`): `checkpoints/<step>/`
  with the parameters as the state's 'params' (what inference and fine-tuning restore) and the
  meta; refuses a workdir that holds anything a run writes (`workdir.PATHS`). Returns the step
  directory."""
  run = workdir_lib.RunDir(workdir)
  root = run.checkpoints
  found = [n for n in workdir_lib.PATHS if os.path.lexists(os.path.join(run.root, n))]
  if found:
    raise UserError(f"{run.root} holds a run already ({', '.join(found)}): "
                    "convert into a new --workdir")
  manager = ocp.CheckpointManager(root, options=ocp.CheckpointManagerOptions(create=True),
                                  handler_registry=_handlers())
  try:
    manager.save(step, args=ocp.args.Composite(state=ocp.args.PyTreeSave({"params": params}),
                                               meta=ocp.args.JsonSave(meta)))
    manager.wait_until_finished()
  except OSError as e:
    raise UserError(f"cannot write {root} ({e.strerror or e})") from None
  finally:
    manager.close()
  return run.step_dir(step)
