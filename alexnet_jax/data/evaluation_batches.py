"""The evaluation batches (§6's validation figures over §4.1's centre patch or its ten
patches): padded, masked batches so that every example counts once, each made of whole
chunks of examples that the reader threads or the input's worker processes read and crop
(`EvalChunk`), so a batch holds the same records, bitwise, however many there are.

A training run's evaluations may keep their worker processes from one pass to the next
(`keep`): the processes then read the passes as one endless sequence, so the next evaluation
neither starts processes nor waits for its first chunks, which they have made meanwhile.
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterator

import grain
import numpy as np

from alexnet_jax.data import augment
from alexnet_jax.data import batch as batch_lib
from alexnet_jax.data import workers as workers_lib


class EvalChunk:
  """Chunk `j` of the evaluation records: records [j k, (j + 1) k) of `records` as a padded
  evaluation batch of `k` examples (`batch.evaluation`), the unreadable ones (None) left out
  and counted in its first 'skipped'."""

  def __init__(self, records: grain.MapDataset, k: int, views: tuple[int, ...], crop: int,
               channels: int):
    self.records, self.k, self.shape = records, k, (views, crop, channels)

  def __call__(self, j: int) -> dict:
    read = [self.records[i] for i in range(j * self.k, min((j + 1) * self.k, len(self.records)))]
    kept = [r for r in read if r is not None]
    stacked = {key: np.stack([r[key] for r in kept]) for key in kept[0]} if kept else None
    chunk = batch_lib.evaluation(stacked, self.k, *self.shape)
    chunk["skipped"][0] += len(read) - len(kept)
    return chunk


def chunk_size(batch: int, views: tuple[int, ...]) -> int:
  """Examples in a chunk of an evaluation batch: the largest divisor of the batch holding at
  most a quarter of its patches in centre crops, so that a worker's 4 slots of chunks take the
  shared memory of one training batch (beside the training batches' 4)."""
  most = max(1, batch // (4 * math.prod(views)))
  return max(k for k in range(1, most + 1) if batch % k == 0)


class EvaluationBatches:
  """`self(ten_crop)`: `steps` padded batches of `batch` examples of `records` (this
  process's shard of the validation split, records {'image', 'label'} or None), the centre
  patches of `crop` pixels or the ten, read in `read`'s threads or in `workers` processes.
  `self(ten_crop, keep=True)` leaves the processes running after the pass, for the next pass
  of the same kind; one kind's are kept at a time, and `close` stops them."""

  def __init__(self, records: grain.MapDataset, steps: int, batch: int, crop: int,
               channels: int, read: grain.ReadOptions, workers: int):
    self.steps, self.batch, self.crop, self.channels = steps, batch, crop, channels
    self._records, self._read, self._workers = records, read, workers
    self._kept: dict[tuple[int, ...], workers_lib.FromStep] = {}

  def _reading(self, views: tuple[int, ...], k: int, endless: bool) -> workers_lib.FromStep:
    """The chunks of `k` examples of a pass, or of every pass (`endless`), being read."""
    chunks = grain.MapDataset.range(self.steps * self.batch // k).map(
        EvalChunk(self._records.map(augment.EvalCrops(self.crop, bool(views))), k, views,
                  self.crop, self.channels))
    reading = workers_lib.FromStep(
        chunks.repeat() if endless else chunks, self._read, self._workers,
        batch_lib.evaluation_layout(k, views, self.crop, self.channels),
        what="an evaluation batch")
    reading.lend(to_device=False)
    return reading

  def __call__(self, ten_crop: bool, keep: bool = False) -> Iterator[dict]:
    """The pass's batches, each copied once from the workers' shared memory. `keep`: with
    worker processes, they stay for the next pass (a pass left before its last batch stops
    them). Otherwise they stop after the last batch, as the reader asks for the next one or
    closes the pass."""
    views, keep = (10,) if ten_crop else (), keep and self._workers > 0
    k = chunk_size(self.batch, views)
    reading = self._kept.pop(views, None)
    self.close()  # the other kind's processes
    if reading is None:
      reading = self._reading(views, k, endless=keep)
    layout = batch_lib.evaluation_layout(self.batch, views, self.crop, self.channels)
    with contextlib.ExitStack() as unless_kept:
      unless_kept.callback(reading.close)  # worker processes and their shared memory released
      for step in range(1, self.steps + 1):
        batch = {key: np.empty(shape, dtype) for key, (shape, dtype) in layout.items()}
        for start in range(0, self.batch, k):
          for key, value in next(reading).items():
            batch[key][start:start + k] = value
        if step == self.steps and keep:  # read whole: kept, however
          reading.give_back()  # the reader leaves the last batch
          self._kept[views] = reading
          unless_kept.pop_all()
        yield batch

  def close(self) -> None:
    """Stops the processes kept for a next pass."""
    for reading in self._kept.values():
      reading.close()
    self._kept.clear()
