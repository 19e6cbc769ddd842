"""The device mesh (`sharding.make_mesh`, `mesh_for`) and the batch's crossing to the devices
(`sharding.to_global`)."""

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from alexnet_jax import sharding
from alexnet_jax.errors import UserError
from conftest import load_config


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


def test_an_array_already_on_a_device_is_not_staged_through_the_host(monkeypatch):
  """A batch whose patches were decoded on the device (`nvdecode.DeviceDecoder`): they stay
  there, the other fields are staged. Mutation: the device array staged too -> red."""
  batch_sharding = NamedSharding(sharding.make_mesh(), PartitionSpec(sharding.DATA))
  image = jax.device_put(np.arange(8 * 2 * 2 * 3, dtype=np.uint8).reshape(8, 2, 2, 3),
                         jax.devices()[0])
  staged, real = [], jax.make_array_from_process_local_data

  def recorded(target, value):
    staged.append(value.shape)
    return real(target, value)

  monkeypatch.setattr(jax, "make_array_from_process_local_data", recorded)
  out = sharding.to_global({"image": image, "label": np.arange(8, dtype=np.int32)},
                           batch_sharding, "pinned")
  assert staged == [(8,)]
  assert out["image"].sharding == batch_sharding
  np.testing.assert_array_equal(np.asarray(out["image"]), np.asarray(image))


def test_the_mesh_takes_the_devices_asked_for_and_refuses_more():
  """On the suite's 8 host devices: `data x model` devices or a one-line error, and
  `mesh.model=-1` one device per column when the columns divide the devices, else 1.
  Mutations: `data * model` -> `/` in the device check -> red; the columns' divisibility test
  inverted -> red; mesh.model=1 refused (`< 1` -> `<= 1`) -> red."""
  assert dict(sharding.make_mesh(data=2, model=2).shape) == {"data": 2, "model": 2}
  assert dict(sharding.make_mesh(model=2).shape) == {"data": 4, "model": 2}
  for data, model in ((5, 2), (0, 1), (9, 1)):
    with pytest.raises(UserError, match="needs more than the 8 devices available"):
      sharding.make_mesh(data=data, model=model)
  config = load_config("tiny")
  for accepted in (-1, 1, 2):  # mesh.model=1: both columns on each device (`--config.mesh.model=1`)
    config.mesh.model = accepted
    sharding.validate(config.mesh)
  for refused in (0, -2):
    config.mesh.model = refused
    with pytest.raises(UserError, match=f"mesh.model must be -1 .* or >= 1, got {refused}"):
      sharding.validate(config.mesh)
  for mesh_model, columns, want in ((-1, 2, (4, 2)), (-1, 3, (8, 1)), (4, 2, (2, 4))):
    config.mesh.model, config.model.columns = mesh_model, columns
    assert tuple(sharding.mesh_for(config).shape.values()) == want
