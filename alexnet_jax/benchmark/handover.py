"""`benchmark input`'s hand-over rows: what moving a training batch from a worker process to
the training process costs, through the input's reused shared memory (`data.ring`) and, as
the yardstick, grain's own (a new block of shared memory per array of every batch); a batch
made in-process beside them."""

from __future__ import annotations

import time

import grain
import numpy as np

from alexnet_jax.benchmark import cpu_seconds
from alexnet_jax.data import batch as batch_lib
from alexnet_jax.data import ring, workers


class _Constant(grain.transforms.Map):
  """Index -> a constant batch of `layout` (no decoding: the hand-over alone is timed)."""

  def __init__(self, layout: dict):
    self.layout = layout

  def map(self, index):
    del index
    return {k: np.ones(shape, dtype) for k, (shape, dtype) in self.layout.items()}


def _time(kind: str, layout: dict, seconds: float) -> dict:
  dataset = (grain.MapDataset.range(1 << 30).map(_Constant(layout))
             .to_iter_dataset(grain.ReadOptions(num_threads=1, prefetch_buffer_size=2)))
  batches = ring.BatchRing(layout, 1) if kind == "reused shared memory" else None
  if batches is not None:
    dataset = dataset.map(batches.writer())
  if kind != "in-process":
    dataset = workers.in_workers(dataset, 1)
  iterator, n = iter(dataset), 0

  def take():
    item = next(iterator)
    copied = {k: v.copy() for k, v in (batches.views(item) if batches else item).items()}
    if batches is not None:
      batches.release(item)
    return copied

  try:
    for _ in range(3):  # the worker's start
      take()
    start, cpu = time.perf_counter(), cpu_seconds()
    while time.perf_counter() - start < seconds:
      take()
      n += 1
    wall, cpu = time.perf_counter() - start, cpu_seconds() - cpu
  finally:
    iterator.close()
    if batches is not None:
      batches.close()
  return {"ms_per_batch": round(1000 * wall / n, 2), "cpu_ms_per_batch": round(1000 * cpu / n, 2)}


def bench_handover(seconds: float, batch: int = 128, crop: int = 227) -> list[dict]:
  """Records: a constant training batch of `batch` `crop`-pixel patches made in-process, and
  made in one worker process and handed over through grain's shared memory and through the
  reused one, copied out each time; wall and CPU (every process) milliseconds per batch."""
  layout = batch_lib.train_layout(batch, crop, 3)
  records = [{"bench": "input", "what": f"hand-over of a batch ({batch}x{crop}x{crop}x3), {kind}",
              **_time(kind, layout, seconds)}
             for kind in ("in-process", "grain's shared memory", "reused shared memory")]
  grain_ms, reused_ms = (r["cpu_ms_per_batch"] for r in records[1:])
  records.append({"bench": "input", "what": "hand-over CPU, grain's / reused shared memory",
                  "ratio": round(grain_ms / reused_ms, 2)})
  return records
