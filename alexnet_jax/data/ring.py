"""Whole batches from the input's worker processes to the training process through shared
memory that is reused: one block per worker, created by the training process before the
workers start, holding `SLOTS` batches of one layout and a flag per slot.

A worker writes its k-th batch into slot k mod `SLOTS` once the training process has freed it
and hands over a `Ticket` (a few bytes through grain's queue); the training process reads the
slot in place (`BatchRing.views`) and frees it (`release`) when its copy of it is made (on the
device, or on the host). Nothing is created, mapped or unlinked per batch, and nothing is left
in /dev/shm when the ring is closed.
"""

from __future__ import annotations

import dataclasses
import mmap
import os
import secrets
import time
from multiprocessing import shared_memory

import grain
import numpy as np

from alexnet_jax.errors import UserError

SLOTS = 4  # per worker: one written, one in grain's queue, one in its buffer, one read
_ALIGN = 4096
# A worker whose slots are all full is ahead of the training process by that many batches: it
# polls for a free slot at first every 0.2 ms, then ever less often, up to every 5 ms (8 % of a
# core each for the fast poll, 2 % for the slow one, measured on a 2-core VM).
_WAIT_S, _WAIT_MAX_S = 0.0002, 0.005

_worker_index = 0  # this process's index among the input workers (`set_worker`)


def set_worker(index: int) -> None:
  """Which worker's block this process writes (in each worker, as it starts)."""
  global _worker_index
  _worker_index = index


@dataclasses.dataclass(frozen=True)
class Ticket:
  """Batch ready in `slot` of `worker`'s block."""
  worker: int
  slot: int


def _offsets(layout: dict[str, tuple[tuple[int, ...], str]]) -> tuple[dict[str, int], int]:
  """Each field's byte offset in a slot (aligned), and the slot's size."""
  offsets, size = {}, 0
  for name, (shape, dtype) in layout.items():
    offsets[name] = size
    size += -(-int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize // _ALIGN) * _ALIGN
  return offsets, max(size, _ALIGN)


def _views(buffer, layout, offsets: dict[str, int], base: int) -> dict[str, np.ndarray]:
  return {name: np.ndarray(shape, dtype, buffer, base + offsets[name])
          for name, (shape, dtype) in layout.items()}


def _own_mapping(block: shared_memory.SharedMemory):
  """`block`'s memory mapped anew, for views that outlive its closing: NumPy keeps a view's
  mapping object alive, not the SharedMemory, whose `close` unmaps its own mapping."""
  path = os.path.join("/dev/shm", block.name.lstrip("/"))
  if not os.path.exists(path):  # POSIX shared memory without a /dev/shm (not Linux)
    return block.buf
  fd = os.open(path, os.O_RDWR)
  try:
    return mmap.mmap(fd, block.size)
  finally:
    os.close(fd)


def block_prefix(pid: int) -> str:
  """How the names of process `pid`'s rings' blocks in /dev/shm begin."""
  return f"alexnet_jax_{pid}_"


def _shm_free_bytes() -> int | None:
  try:
    stat = os.statvfs("/dev/shm")
  except OSError:
    return None
  return stat.f_bavail * stat.f_frsize


class BatchRing:
  """The training process's side: `workers` blocks of `slots` batches laid out as `layout`
  ({field: (shape, dtype)}); `writer()` is the workers' side."""

  def __init__(self, layout: dict[str, tuple[tuple[int, ...], str]], workers: int,
               slots: int = SLOTS):
    self.layout = {k: (tuple(int(d) for d in shape), np.dtype(dtype).str)
                   for k, (shape, dtype) in layout.items()}
    self.slots = slots
    self._offsets, self._slot_bytes = _offsets(self.layout)
    block = _ALIGN + slots * self._slot_bytes
    free = _shm_free_bytes()
    if free is not None and workers * block > free:
      raise UserError(
          f"the input's {workers} worker processes need {workers * block / 2**20:.0f} MiB of "
          f"shared memory ({slots} batches of {self._slot_bytes / 2**20:.1f} MiB each) but "
          f"/dev/shm has {free / 2**20:.0f} MiB free: lower data.workers or data.batch_size, "
          "or give the machine more (docker run --shm-size=...)")
    prefix = block_prefix(os.getpid()) + secrets.token_hex(4)
    self._blocks = []
    try:
      for worker in range(workers):
        self._blocks.append(shared_memory.SharedMemory(f"{prefix}_{worker}", create=True,
                                                       size=block))
    except OSError as e:
      self.close()
      raise UserError(f"cannot create the input workers' shared memory: {e}") from None
    self._memory = [_own_mapping(b) for b in self._blocks]
    self._busy = [np.ndarray((slots,), np.int64, m) for m in self._memory]  # new: all 0

  def writer(self) -> "RingWriter":
    return RingWriter([b.name for b in self._blocks], self.layout, self.slots)

  def views(self, ticket: Ticket) -> dict[str, np.ndarray]:
    """The batch of `ticket`, in place: valid until its slot is released (its memory stays
    mapped while the view lives)."""
    base = _ALIGN + ticket.slot * self._slot_bytes
    return _views(self._memory[ticket.worker], self.layout, self._offsets, base)

  def release(self, ticket: Ticket) -> None:
    """`ticket`'s slot may be written again."""
    self._busy[ticket.worker][ticket.slot] = 0

  def release_all(self) -> None:
    """Frees every slot: a worker waiting for one goes on (to be stopped)."""
    for busy in self._busy:
      busy[:] = 0

  def close(self) -> None:
    """Removes the blocks, once the workers are stopped (a view still held keeps its memory
    until it is dropped)."""
    self._busy = self._memory = []
    for block in self._blocks:
      block.close()
      try:
        block.unlink()
      except FileNotFoundError:
        pass
    self._blocks = []


class RingWriter(grain.transforms.Map):
  """The workers' side, a map at the end of each worker's pipeline: batch -> `Ticket`. It
  attaches to its worker's block on the first batch (it is pickled into the worker)."""

  def __init__(self, names: list[str], layout: dict, slots: int):
    self._names, self._layout, self._slots = names, layout, slots
    self._offsets, self._slot_bytes = _offsets(layout)
    self._block = self._busy = None
    self._count = 0

  def __getstate__(self) -> dict:
    return {**self.__dict__, "_block": None, "_busy": None}

  def _attach(self) -> None:
    self._block = shared_memory.SharedMemory(self._names[_worker_index])
    self._busy = np.ndarray((self._slots,), np.int64, self._block.buf)

  def _wait(self, slot: int) -> None:
    delay = _WAIT_S
    while self._busy[slot]:
      time.sleep(delay)
      delay = min(2 * delay, _WAIT_MAX_S)

  def map(self, batch: dict) -> Ticket:
    if self._block is None:
      self._attach()
    slot = self._count % self._slots
    self._wait(slot)
    views = _views(self._block.buf, self._layout, self._offsets,
                   _ALIGN + slot * self._slot_bytes)
    if batch.keys() != views.keys():
      raise ValueError(f"batch fields {sorted(batch)} are not the ring's {sorted(views)}")
    for name, view in views.items():
      value = np.asarray(batch[name])
      if value.shape != view.shape or value.dtype != view.dtype:
        raise ValueError(f"batch field {name} is {value.dtype}{value.shape}, the ring's "
                         f"{view.dtype}{view.shape}")
      view[...] = value
    self._busy[slot] = 1
    self._count += 1
    return Ticket(_worker_index, slot)
