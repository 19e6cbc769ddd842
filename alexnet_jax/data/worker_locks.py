"""The locks an input worker shares with the training process, given back when the worker
dies holding one.

grain starts each worker process (`workers.in_workers`) with a stop event and a set-state
counter shared with the training process, each guarded by a POSIX semaphore that the worker
takes for a few microseconds per element it produces, and twice a second while it waits on a
full queue. A worker killed inside that window (kill -9, the kernel's out-of-memory killer)
never gives the semaphore back, and grain's clean-up in the training process, which sets that
event as soon as it sees the worker gone, waits for it forever: the run would hang instead of
ending with the dead worker's one line (`workers.read`).

`watch`, called wherever workers start, runs one thread per process that looks, four times a
second, for threads inside grain's iterator of one worker (`ProcessPrefetchDatasetIterator`,
which holds the worker's process and their shared event and counter). Once that worker has
ended with a non-zero status, each of the two locks that stays taken for a second is given
back: its holder is dead, since the training process itself holds them for microseconds.
"""

from __future__ import annotations

import _multiprocessing
import sys
import threading
import time
import weakref
from multiprocessing import synchronize

from absl import logging

_ITERATOR = "ProcessPrefetchDatasetIterator."  # grain's iterator of one worker's elements
_POLL_S = 0.25
_HELD_S = 1.0

_starting = threading.Lock()
_thread: threading.Thread | None = None


def watch() -> None:
  """Starts this process's watch of its worker iterators, once."""
  global _thread
  with _starting:
    if _thread is None or not _thread.is_alive():
      _thread = threading.Thread(target=_follow, name="input-worker-locks", daemon=True)
      _thread.start()


def _follow() -> None:
  seen = weakref.WeakSet()  # the dead workers' processes whose locks were looked at
  while True:
    try:
      for iterator in _worker_iterators_in_use():
        process = getattr(iterator, "_prefetch_process", None)
        if process is None or process.exitcode in (None, 0) or process in seen:
          continue
        seen.add(process)
        given_back = sum(give_back_if_held(lock) for lock in shared_locks(iterator))
        if given_back:
          logging.warning("input worker %d ended (status %d) holding %d lock(s) it shared "
                          "with this process: given back", process.pid, process.exitcode,
                          given_back)
    except Exception as e:  # noqa: BLE001 -- grain's internals changed: say so once, stop
      logging.warning("the watch of the input workers' shared locks stopped: %r", e)
      return
    time.sleep(_POLL_S)


def _worker_iterators_in_use() -> list:
  """grain's iterators of one worker's elements that a thread of this process is inside."""
  found = []
  for frame in sys._current_frames().values():  # noqa: SLF001
    while frame is not None:
      if frame.f_code.co_qualname.lstrip("_").startswith(_ITERATOR):  # "_P..." in grain 0.2.16
        found.append(frame.f_locals.get("self"))
      frame = frame.f_back
  return found


def shared_locks(iterator) -> list:
  """The locks of the stop event and the set-state counter that `iterator` (grain's) shares
  with its worker: what `Event.set` and grain's clean-up wait for."""
  locks = []
  event = getattr(iterator, "_prefetch_should_stop", None)
  if event is not None:
    locks.append(event._cond._lock)  # noqa: SLF001
  counter = getattr(iterator, "_set_state_request_count", None)
  if counter is not None:
    locks.append(counter.get_lock())
  return locks


def give_back_if_held(lock, held_s: float = _HELD_S) -> bool:
  """Gives `lock` (a multiprocessing Lock or RLock) back if it stays taken for `held_s`: True
  if it did. The semaphore under it is posted through a second handle, opened by name as a
  plain semaphore: `lock` itself keeps a count for the thread that holds it, which an RLock
  checks before it lets go and which `Event.set` checks in the next holder of a Lock."""
  if lock.acquire(True, held_s):
    lock.release()
    return False
  semaphore = lock._semlock  # noqa: SLF001
  if semaphore.name is None:  # unlinked at its creation (fork's): it cannot be opened again
    return False
  try:
    _multiprocessing.SemLock._rebuild(semaphore.handle, synchronize.SEMAPHORE, 1,  # noqa: SLF001
                                      semaphore.name).release()
  except (OSError, ValueError):  # gone, or given back meanwhile
    return False
  return True
