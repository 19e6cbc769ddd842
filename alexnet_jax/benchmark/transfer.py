"""`benchmark transfer`: host-to-device GB/s of one training batch, by way of crossing: each
field from ordinary (pageable) host memory, as the loop does; the fields packed in one
buffer (one transfer); through JAX's pinned host memory (`memory_kind='pinned_host'`); each
field read in place from the input workers' shared memory (`data.ring`), as the loop does
with worker processes on a GPU."""

from __future__ import annotations

import numpy as np

from alexnet_jax.benchmark import emit, figure, timed
from alexnet_jax.data import batch as batch_lib
from alexnet_jax.data import ring


def _host_batch(layout: dict) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(0)
  return {k: rng.integers(0, 255, shape).astype(dtype) for k, (shape, dtype) in layout.items()}


def bench_transfer(config, *, batch: int, seconds: float) -> list[dict]:
  """Prints (and returns) a record per way: GB/s, ms and CPU ms per batch of `batch` patches of
  the config's crop, on the first device."""
  import jax
  from jax.sharding import SingleDeviceSharding

  batch = batch or config.data.batch_size
  layout = batch_lib.device_layout(batch, config.model.input_size, config.model.in_channels)
  host = _host_batch(layout)
  nbytes = sum(v.nbytes for v in host.values())
  device = jax.devices()[0]
  on_device = SingleDeviceSharding(device)
  kinds = {m.kind for m in device.addressable_memories()}
  packed = np.concatenate([v.reshape(-1).view(np.uint8) for v in host.values()])
  slots = ring.BatchRing(layout, workers=1)
  records = []
  try:
    ticket = slots.writer().map(host)
    ways = {"fields, pageable host memory": lambda: jax.device_put(host, on_device),
            "one packed buffer, pageable host memory": lambda: jax.device_put(packed, on_device),
            "fields, in place in the workers' shared memory":
                lambda: jax.device_put(slots.views(ticket), on_device)}
    if "pinned_host" in kinds:
      pinned = SingleDeviceSharding(device, memory_kind="pinned_host")
      ways["fields, through pinned host memory"] = lambda: jax.device_put(
          jax.device_put(host, pinned), on_device)
    for way, put in ways.items():
      wall, cpu, n = timed(lambda: jax.block_until_ready(put()), seconds)
      record = {"bench": "transfer", "way": way, "device": device.device_kind, "batch": batch,
                "mb_per_batch": figure(nbytes / 1e6), "gb_per_s": figure(nbytes * n / wall / 1e9),
                "ms_per_batch": figure(1e3 * wall / n), "cpu_ms_per_batch": figure(1e3 * cpu / n)}
      records.append(record)
      emit(record)
  finally:
    slots.release_all()
    slots.close()
  return records
