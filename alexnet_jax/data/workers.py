"""The input's worker processes (`data.workers`): how many, starting them (grain's
`mp_prefetch`), the training and evaluation batches read in them (`FromStep`), each handed
over in reused shared memory (`data.ring`), a
worker that dies as one line (`read`; the locks it shared given back by `data.worker_locks`),
and workers that end with the training process."""

from __future__ import annotations

import atexit
import functools
import os
import re
import signal
import threading
import time
import weakref

import grain
import jax
from absl import flags

from alexnet_jax.data import ring, spawning, worker_locks
from alexnet_jax.errors import UserError

_WATCH_S = 0.5
_OPEN: weakref.WeakSet = weakref.WeakSet()  # the `FromStep`s reading now


@atexit.register
def _close_open() -> None:
  """Closes the readers a script left open as it exits, before multiprocessing stops its
  child processes (it would wait for workers that leave SIGTERM to the training process) and
  before the interpreter's teardown, where closing them failed."""
  for reading in list(_OPEN):
    reading.close()


def _start_worker(index: int, count: int, parent: int) -> None:
  """grain's `worker_init_fn`: the worker's block of shared memory; SIGINT and SIGTERM left
  to the training process, which makes them a stop request and stops its workers (Ctrl-C in a
  terminal, or a SLURM job's preemption, reaches every process of the group: each worker
  died with a traceback, an evaluation then ended on its death); and a watch that ends the
  worker when the training process (`parent`) is gone (killed: it would wait on grain's queue
  forever, holding its memory and the blocks)."""
  del count
  ring.set_worker(index)
  for sig in (signal.SIGINT, signal.SIGTERM):
    signal.signal(sig, signal.SIG_IGN)

  def watch():
    while os.getppid() == parent:
      time.sleep(_WATCH_S)
    os._exit(0)

  threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def in_workers(dataset: grain.IterDataset, workers: int) -> grain.IterDataset:
  """`dataset` read in `workers` processes (grain's `mp_prefetch`), or here when 0."""
  if workers <= 0:
    return dataset
  spawning.check_can_spawn(without="data.workers=0")
  if not flags.FLAGS.is_parsed():  # grain's workers read its flags: a library call's defaults
    flags.FLAGS.mark_as_parsed()
  worker_locks.watch()
  return dataset.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers),
                             worker_init_fn=functools.partial(_start_worker,
                                                              parent=os.getpid()))


def _handed_over(dataset: grain.IterDataset, layout: dict,
                 workers: int) -> tuple[ring.BatchRing, grain.DatasetIterator]:
  """`dataset`'s elements (of `layout`) read in `workers` processes and handed over in a
  `ring.BatchRing`: the ring and the iterator of their tickets."""
  slots = ring.BatchRing(layout, workers)
  try:
    return slots, iter(in_workers(dataset.map(slots.writer()), workers))
  except BaseException:
    slots.close()
    raise


def _stop(slots: ring.BatchRing | None, iterator) -> None:
  """Stops the workers (no worker waits for a slot meanwhile), then removes their ring."""
  if slots is not None:
    slots.release_all()
  if iterator is not None and hasattr(iterator, "close"):
    iterator.close()
  if slots is not None:
    slots.close()


def input_workers(data, encoded: bool) -> int:
  """The worker processes `data.workers` asks for, for a split of image files (`encoded`) or
  of in-memory images: -1 is one per core less the two the loop itself needs (its main thread
  and the transfer thread) for files, and none for in-memory images (nothing to decode) or on
  a machine of two cores or fewer."""
  if data.workers >= 0:
    return int(data.workers)
  return max(0, (os.cpu_count() or 1) - 2) if encoded else 0


def read(iterator, what: str, *default):
  """`next(iterator, *default)`; a worker process that ended without a Python error (grain's
  RuntimeError: killed, say) as one line naming `what` it was to read."""
  try:
    return next(iterator, *default)
  except RuntimeError as e:
    code = re.search(r"terminated unexpectedly with exit code (-?\d+)", str(e))
    if code is None:
      raise
    raise UserError(spawning.ended(int(code[1]), "an input worker process",
                                   f"before {what}")) from None


class FromStep(grain.DatasetIterator):
  """The training batches from any step: the batch sequence is a random-access dataset that
  the step indexes, so the step is the whole input position (`get_state`: {'step': k}). It is
  what a checkpoint saves, and it restores bitwise with any number of worker processes (each
  reading whole batches, `workers` > 0, or none) and of training processes. Worker processes
  hand their batches over through a `ring.BatchRing` of `layout`; a batch taken is a copy
  unless the reader asked to borrow them (`lend`). `finish`, if given, is applied to each
  batch taken (`nvdecode.DeviceDecoder`: it decodes them, reading a lent batch in place).
  `what`: the batches as a worker's death names them ('{}': the step)."""

  def __init__(self, batches: grain.MapDataset, read: grain.ReadOptions, workers: int,
               layout: dict, finish=None, what: str = "step {}'s batch"):
    super().__init__()
    self._batches, self._read, self._workers, self._layout = batches, read, workers, layout
    self._finish, self._what = finish, what
    self._step, self._iterator, self._ring = 0, None, None
    self._lends, self._lent = False, None

  def _open(self) -> grain.DatasetIterator:
    if self._iterator is None:
      dataset = self._batches[self._step:].to_iter_dataset(self._read)
      if self._workers > 0:
        self._ring, self._iterator = _handed_over(dataset, self._layout, self._workers)
      else:
        self._iterator = iter(dataset)
      _OPEN.add(self)
    return self._iterator

  def lend(self, to_device: bool = True) -> bool:
    """Asks for the batches in place, in shared memory and valid until the next `next`,
    instead of copies; granted (True) with worker processes, and, for a reader that copies
    them to the device (`to_device`), not on the CPU backend (whose device arrays may alias
    host memory). The reader's copy of a lent batch must be complete when it asks for the
    next one (or calls `give_back`)."""
    self._lends = self._workers > 0 and (not to_device or jax.default_backend() != "cpu")
    return self._lends

  def __next__(self) -> dict:
    self.give_back()
    item = read(self._open(), self._what.format(self._step + 1))
    self._step += 1
    if self._ring is None:
      return self._finished(item)
    batch = self._ring.views(item)
    if self._lends:
      self._lent = item
      return self._finished(batch)
    batch = {k: v.copy() for k, v in batch.items()}
    self._ring.release(item)
    return self._finished(batch)

  def _finished(self, batch: dict) -> dict:
    return batch if self._finish is None else self._finish(batch)

  def give_back(self) -> None:
    """Frees the lent batch's slot before the next `next` (a reader that pauses)."""
    if self._lent is not None:
      self._ring.release(self._lent)
      self._lent = None

  def get_state(self) -> dict:
    return {"step": self._step}

  def set_state(self, state: dict) -> None:
    """`{'step': k}`; grain's own state of an in-process iterator (`next_index`: the step),
    as checkpoints of earlier versions hold it."""
    step = state.get("step", state.get("next_index")) if isinstance(state, dict) else None
    if not isinstance(step, int) or step < 0:
      raise UserError(f"not an input position: {str(state)[:80]}")
    self.close()
    self._step = step

  def start_prefetch(self) -> None:
    """Starts the worker processes (or reader threads) before the first batch is asked for."""
    start = getattr(self._open(), "start_prefetch", None)
    if start is not None:
      start()

  def close(self) -> None:
    if self._iterator is None:  # (grain closes an iterator again as it is collected)
      return
    _OPEN.discard(self)
    _stop(self._ring, self._iterator)
    self._iterator = self._ring = self._lent = None
