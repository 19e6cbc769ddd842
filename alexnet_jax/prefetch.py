"""Batches put on the devices ahead of the training loop, in a background thread.

The loop's main thread then only takes ready global arrays from a queue: the host→device copy
of batch k+1 overlaps step k, and no step waits on a transfer. The input iterator runs ahead by
up to `depth` batches, so its own state is not the loop's position: `get_state` returns the
iterator's state as it was right after the batch the loop took last, which is what a checkpoint
saves (grain's `CheckpointSave` reads `get_state`), so a resume continues with the next batch
the loop would have taken.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Callable, Iterator

_DONE = object()


class DevicePrefetch:
  """An iterator of (device batch, unreadable images skipped) over `iterator`'s host batches,
  `put` (host batch -> device arrays) applied `depth` batches ahead in a thread."""

  def __init__(self, iterator: Iterator[dict], put: Callable[[dict], dict], depth: int = 2):
    self._iterator, self._put = iterator, put
    self._queue = queue.Queue(maxsize=max(1, depth))
    self._state = iterator.get_state()  # before any batch is taken
    self._stop = threading.Event()
    self.transfer_seconds = 0.0  # the thread's time in `put`, since the last `take_transfer`
    self._thread = threading.Thread(target=self._run, name="device-prefetch", daemon=True)
    self._thread.start()

  def _run(self) -> None:
    try:
      while not self._stop.is_set():
        batch = next(self._iterator)
        state = self._iterator.get_state()
        skipped = int(batch.pop("skipped").sum()) if "skipped" in batch else 0
        start = time.perf_counter()
        arrays = self._put(batch)
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

  def __iter__(self):
    return self

  def __next__(self) -> tuple[dict, int]:
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

  def take_transfer(self) -> float:
    seconds, self.transfer_seconds = self.transfer_seconds, 0.0
    return seconds

  def close(self) -> None:
    self._stop.set()
    while self._thread.is_alive():
      try:
        self._queue.get_nowait()
      except queue.Empty:
        pass
      self._thread.join(timeout=0.05)
