"""The training workdir as a place: `RunDir`, the one owner of its paths; every path checked
before anything compiles; the one atomic writer of output files (`output_file`); and a lock so
that one run (one job: process 0 of a multi-process run) owns it at a time.

The lock is `<workdir>/.alexnet_jax.lock`, held with `flock` while the run lives: the kernel
drops it when the holder exits, however it exits (kill -9 included), so a lock file whose lock
is free is a stale one, taken over with a warning. The file says who holds it (pid, host, start
time) for the one-line error a second run gets.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import shutil
import socket
import time

from absl import logging

from alexnet_jax.errors import UserError

LOCK = ".alexnet_jax.lock"
CHECKPOINTS, BEST, TENSORBOARD = "checkpoints", "best", "tensorboard"  # directories
METRICS, STATS, CURVES, RESULT = "metrics.jsonl", "data_stats.npz", "curves.png", "result.json"
# What training writes in a workdir, and whether each is a directory.
PATHS = {CHECKPOINTS: True, BEST: True, TENSORBOARD: True, METRICS: False, STATS: False,
         CURVES: False, RESULT: False}


@dataclasses.dataclass(frozen=True)
class RunDir:
  """A run on disk: every path of the workdir `root`, named once here.

      checkpoints/<step>/   the latest checkpoints (`checkpoint`)
      best/<step>/          the best one
      metrics.jsonl         the metrics rows (`metrics`)
      tensorboard/          TensorBoard events; plugins/profile/ the profiles (`profiling`)
      data_stats.npz        the run's own mean image and RGB PCA, written when it starts
      curves.png            the curves at the end
      result.json           a finished run's final evaluation and data (an ablation's run)
      .alexnet_jax.lock     the lock of the run that owns it

  `root` is made absolute: Orbax reads and writes checkpoints at absolute paths only.
  """

  root: str

  def __post_init__(self):
    object.__setattr__(self, "root", os.path.abspath(self.root))

  def _path(self, name: str) -> str:
    return os.path.join(self.root, name)

  checkpoints = property(lambda self: self._path(CHECKPOINTS))
  best = property(lambda self: self._path(BEST))
  tensorboard = property(lambda self: self._path(TENSORBOARD))
  metrics = property(lambda self: self._path(METRICS))
  stats = property(lambda self: self._path(STATS))
  curves = property(lambda self: self._path(CURVES))
  result = property(lambda self: self._path(RESULT))
  lock = property(lambda self: self._path(LOCK))

  def steps_dir(self, best: bool = False) -> str:
    """Where the step directories are: `best/`, or `checkpoints/`."""
    return self.best if best else self.checkpoints

  def step_dir(self, step: int, best: bool = False) -> str:
    return os.path.join(self.steps_dir(best), str(step))

  def read_result(self) -> dict | None:
    """The JSON of `result.json`, or None when it is missing or unreadable."""
    try:
      with open(self.result, encoding="utf-8") as f:
        return json.load(f)
    except (OSError, ValueError):
      return None

  def write_result(self, result: dict) -> None:
    with output_file(self.result) as f:
      json.dump(result, f)


def prepare(workdir: str) -> str:
  """Creates `workdir` when missing and checks that every path training writes there can be
  written (a file where a directory goes, or the reverse, is a one-line error); returns its
  absolute path."""
  if not workdir or not workdir.strip():
    raise UserError("--workdir is empty: give the directory the run's checkpoints go to")
  path = RunDir(workdir).root
  if os.path.exists(path) and not os.path.isdir(path):
    raise UserError(f"workdir {path} is a file, not a directory")
  try:
    os.makedirs(path, exist_ok=True)
  except OSError as e:
    raise UserError(f"cannot create workdir {path}: {e.strerror}") from None
  if not os.access(path, os.W_OK | os.X_OK):
    raise UserError(f"workdir {path} is not writable")
  for name, is_dir in PATHS.items():
    target = os.path.join(path, name)
    if not os.path.lexists(target):
      continue
    if os.path.isdir(target) != is_dir:
      kind = "a directory" if is_dir else "a file"
      raise UserError(f"{target} is in the way: training writes {kind} there; move it away")
    if not os.access(target, os.W_OK | (os.X_OK if is_dir else 0)):
      raise UserError(f"{target} is not writable")
  return path


def remove_unused(workdir: str) -> None:
  """Removes `workdir` when it holds nothing but its lock and empty folders: what a run
  refused at its start (missing data, say) leaves of a workdir it created."""
  lock = RunDir(workdir).lock
  for folder, _, files in os.walk(workdir):
    if any(os.path.join(folder, name) != lock for name in files):
      return
  shutil.rmtree(workdir, ignore_errors=True)


FIGURES = (".png", ".pdf", ".svg", ".jpg")  # what matplotlib writes


def check_output(path: str, extensions: tuple[str, ...]) -> str:
  """A file a tool will write, checked before any work: its folder exists and is writable and
  its extension is one of `extensions` (one line otherwise); returns the absolute path."""
  full = os.path.abspath(path)
  folder = os.path.dirname(full)
  if not path.lower().endswith(extensions):
    raise UserError(f"cannot write {path}: give a file name ending in {' or '.join(extensions)}")
  if not os.path.isdir(folder):
    raise UserError(f"cannot write {path}: the directory {folder} does not exist")
  if not os.access(folder, os.W_OK | os.X_OK) or os.path.isdir(full):
    raise UserError(f"cannot write {path}: not writable")
  return full


@contextlib.contextmanager
def output_file(path: str, mode: str = "w"):
  """`path` opened for writing (`mode` "w" or "wb") as a temporary file beside it, renamed to
  `path` when the block ends and removed when it fails: no half-written file is left. An
  `OSError` (a full disk) is a one-line error naming `path`."""
  tmp = path + ".tmp"
  text = {} if "b" in mode else {"newline": "", "encoding": "utf-8"}
  try:
    with open(tmp, mode, **text) as f:
      yield f
    os.replace(tmp, path)
  except BaseException as e:
    with contextlib.suppress(OSError):
      os.remove(tmp)
    if isinstance(e, OSError):
      raise UserError(f"cannot write {path} ({e.strerror or e})") from None
    raise


class Lock:
  """The workdir's lock; `acquire` (or entering the `with` block) raises a one-line error when
  a live run holds it."""

  def __init__(self, workdir: str):
    self.path = RunDir(workdir).lock
    self._fd = None

  def __enter__(self) -> "Lock":
    self.acquire()
    return self

  def __exit__(self, *exc) -> None:
    self.release()

  def acquire(self) -> None:
    try:
      fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
      raise UserError(f"cannot create the workdir lock {self.path}: {e.strerror}") from None
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
      holder = _describe(_read(fd))
      os.close(fd)
      raise UserError(f"{os.path.dirname(self.path)} is in use by {holder}: wait for that run "
                      "to end or stop it, or use another --workdir") from None
    previous = _read(fd)
    if previous:
      logging.warning("taking over the workdir lock left by %s, which is gone",
                      _describe(previous))
    me = {"pid": os.getpid(), "host": socket.gethostname(),
          "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    try:
      os.ftruncate(fd, 0)
      os.pwrite(fd, json.dumps(me).encode(), 0)
    except OSError as e:
      os.close(fd)
      raise UserError(f"cannot write the workdir lock {self.path}: {e.strerror}") from None
    self._fd = fd

  def release(self) -> None:
    if self._fd is None:
      return
    try:
      os.ftruncate(self._fd, 0)  # an empty lock file: nobody to take over from
    except OSError:
      pass
    os.close(self._fd)  # closing the descriptor drops the flock
    self._fd = None


def _read(fd: int) -> dict:
  try:
    raw = os.pread(fd, 4096, 0)
    return json.loads(raw) if raw.strip() else {}
  except (OSError, ValueError):
    return {}


def _describe(holder: dict) -> str:
  if not holder:
    return "another run"
  return (f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')} (since "
          f"{holder.get('since', '?')})")
