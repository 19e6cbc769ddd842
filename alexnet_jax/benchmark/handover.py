"""`benchmark input`'s hand-over rows: what moving a training batch from a worker process to
the training process costs, through the input's reused shared memory (`data.ring`) and, as
the yardstick, grain's own (a new block of shared memory per array of every batch); a batch
made in-process beside them."""

from __future__ import annotations

import grain
import numpy as np

from alexnet_jax.benchmark import timed
from alexnet_jax.data import batch as batch_lib
from alexnet_jax.data import workers


class _Constant(grain.transforms.Map):
  """Index -> a constant batch of `layout` (no decoding: the hand-over alone is timed)."""

  def __init__(self, layout: dict):
    self.layout = layout

  def map(self, index):
    del index
    return {k: np.ones(shape, dtype) for k, (shape, dtype) in self.layout.items()}


def _time(kind: str, layout: dict, seconds: float) -> dict:
  """A constant batch made in-process, or in one worker and handed over through grain's shared
  memory or through the input's own (`workers.FromStep`, as training takes its batches),
  copied out each time."""
  constant = grain.MapDataset.range(1 << 30).map(_Constant(layout))
  read = grain.ReadOptions(num_threads=1, prefetch_buffer_size=2)
  if kind == "reused shared memory":
    iterator = workers.FromStep(constant, read, 1, layout)  # copies each batch out
  else:
    dataset = constant.to_iter_dataset(read)
    iterator = iter(workers.in_workers(dataset, 1) if kind != "in-process" else dataset)

  def take():
    batch = next(iterator)
    return batch if kind == "reused shared memory" else {k: v.copy() for k, v in batch.items()}

  try:
    wall, cpu, n = timed(take, seconds)
  finally:
    iterator.close()
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
