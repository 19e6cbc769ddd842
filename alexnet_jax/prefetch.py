"""Batches put on the devices ahead of the training loop, in a background thread.

The loop's main thread then only takes ready global arrays from a queue: the host→device copy
of batch k+1 overlaps step k, and no step waits on a transfer. `DevicePrefetch` is the iterator
the loop reads and the one a checkpoint saves and restores (grain's `CheckpointSave` /
`CheckpointRestore` call `get_state` / `set_state`): its state is the input position after the
last batch the loop took, although the thread runs up to `depth` batches ahead, so a resume
continues with the next batch the loop would have taken.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Callable

import grain
import jax

_DONE = object()
# The thread's parts of each batch, as annotations in a profile (`profiling`).
HOST_BATCH, TRANSFER = "host_batch", "transfer"
PARTS = (HOST_BATCH, TRANSFER)


class DevicePrefetch(grain.DatasetIterator):
  """(device batch, unreadable images skipped) from `iterator`'s host batches, `put` (host
  batch -> device arrays) applied `depth` batches ahead in a thread that starts with the first
  `next` (a restored position is set before). `close` (or leaving the `with` block) stops the
  thread; `iterator` is left open, its owner's to close."""

  def __init__(self, iterator: grain.DatasetIterator, put: Callable[[dict], dict],
               depth: int = 2):
    super().__init__()
    self._iterator, self._put, self._depth = iterator, put, max(1, depth)
    # Host batches read in place (the input workers' shared memory): each one's copy to the
    # device completes before the next is asked for.
    self._borrowed = bool(getattr(iterator, "lend", lambda: False)())
    self._state = iterator.get_state()  # before any batch is taken
    self._queue = self._thread = None
    self._stop = threading.Event()
    self.transfer_seconds = 0.0  # the thread's time in `put`, since the last `take_transfer`

  def __enter__(self) -> "DevicePrefetch":
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def _start(self) -> None:
    self._stop.clear()
    self._queue = queue.Queue(maxsize=self._depth)
    self._thread = threading.Thread(target=self._run, name="device-prefetch", daemon=True)
    self._thread.start()

  def _run(self) -> None:
    try:
      while not self._stop.is_set():
        with jax.profiler.TraceAnnotation(HOST_BATCH):
          batch = next(self._iterator)
        state = self._iterator.get_state()
        skipped = int(batch.pop("skipped").sum()) if "skipped" in batch else 0
        start = time.perf_counter()
        with jax.profiler.TraceAnnotation(TRANSFER):
          arrays = self._put(batch)
          if self._borrowed:
            jax.block_until_ready(arrays)
        self.transfer_seconds += time.perf_counter() - start
        self._offer((arrays, skipped, state))
    except BaseException as e:  # noqa: BLE001 -- handed to the loop's thread and raised there
      self._offer(e)
    self._offer(_DONE)

  def _offer(self, item) -> None:
    while not self._stop.is_set():
      try:
        self._queue.put(item, timeout=0.1)
        return
      except queue.Full:
        continue

  def __next__(self) -> tuple[dict, int]:
    if self._thread is None:
      self._start()
    item = self._queue.get()
    if item is _DONE:
      raise StopIteration
    if isinstance(item, BaseException):
      raise item
    arrays, skipped, self._state = item
    return arrays, skipped

  def get_state(self) -> dict:
    """The input position after the last batch taken from this prefetcher."""
    return self._state

  def set_state(self, state: dict) -> None:
    """Continues from `state` (a position `get_state` returned): batches read ahead are
    dropped."""
    self._halt()
    self._iterator.set_state(state)
    self._state = state

  def take_transfer(self) -> float:
    seconds, self.transfer_seconds = self.transfer_seconds, 0.0
    return seconds

  def _halt(self) -> None:
    if self._thread is None:
      return
    self._stop.set()
    while self._thread.is_alive():
      try:
        self._queue.get_nowait()
      except queue.Empty:
        pass
      self._thread.join(timeout=0.05)
    self._thread = None

  def start_prefetch(self) -> None:
    start = getattr(self._iterator, "start_prefetch", None)
    if start is not None:
      start()

  def close(self) -> None:
    self._halt()
