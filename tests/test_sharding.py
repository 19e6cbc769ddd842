"""The batch's crossing to the devices (`sharding.to_global`)."""

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from alexnet_jax import sharding


def test_a_pinned_transfer_stages_the_batch_in_pinned_host_memory_and_lands_the_same(
    monkeypatch):
  """Mutation: 'pinned' without the staging -> no pinned host array made (red)."""
  batch_sharding = NamedSharding(sharding.make_mesh(), PartitionSpec(sharding.DATA))
  batch = {"image": np.arange(8 * 4 * 4 * 3, dtype=np.uint8).reshape(8, 4, 4, 3),
           "label": np.arange(8, dtype=np.int32)}
  kinds, real = [], jax.make_array_from_process_local_data

  def recorded(target, value):
    kinds.append(target.memory_kind)
    return real(target, value)

  monkeypatch.setattr(jax, "make_array_from_process_local_data", recorded)
  for transfer in sharding.TRANSFERS:
    kinds.clear()
    out = sharding.to_global(batch, batch_sharding, transfer)
    assert kinds == ["pinned_host" if transfer == "pinned" else "device"] * 2
    for key, want in batch.items():
      assert out[key].sharding == batch_sharding and out[key].sharding.memory_kind == "device"
      np.testing.assert_array_equal(np.asarray(out[key]), want)
