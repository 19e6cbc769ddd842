"""The device mesh: a `'data'` axis for the batch and a `'model'` axis for the paper's columns."""

from __future__ import annotations

import jax
from jax.sharding import AxisType

from alexnet_jax.errors import UserError

DATA = "data"
MODEL = "model"


def make_mesh(*, data: int | None = None, model: int = 1, devices=None) -> jax.sharding.Mesh:
  """A `('data', 'model')` mesh; `data=None` uses every remaining device for the batch.

  Axis types are `Auto`: the columns' communication is written explicitly inside the model's
  `shard_map`, and everything outside it (loss, optimizer) is left to the compiler.
  """
  devices = list(jax.devices() if devices is None else devices)
  if model < 1 or len(devices) % model:
    raise UserError(f"invalid mesh: the 'model' axis ({model}) must divide the number of "
                     f"devices ({len(devices)})")
  if data is None:
    data = len(devices) // model
  if data < 1 or data * model > len(devices):
    raise UserError(f"invalid mesh: data={data} x model={model} needs more than the "
                     f"{len(devices)} devices available")
  return jax.make_mesh((data, model), (DATA, MODEL), axis_types=(AxisType.Auto,) * 2,
                       devices=devices[:data * model])


def validate(mesh_config) -> None:
  """`mesh.model`: -1 (one device per column when the devices allow) or a positive size."""
  if mesh_config.model != -1 and mesh_config.model < 1:
    raise UserError(f"mesh.model must be -1 (automatic) or >= 1, got {mesh_config.model}")


def mesh_for(config) -> jax.sharding.Mesh:
  """The mesh of a training config over every device: `mesh.model`, or with -1 the number of
  columns when the devices divide evenly (one device per column), else 1."""
  model_axis = int(config.mesh.model)
  if model_axis == -1:
    columns = int(config.model.columns)
    model_axis = columns if jax.device_count() % columns == 0 else 1
  return make_mesh(model=model_axis)


def check_batch_sizes(data_config, mesh) -> None:
  """A training config's batch sizes against the 'data' axis of its mesh (the device count)."""
  data_axis = mesh.shape[DATA]
  for name in ("batch_size", "eval_batch_size"):
    size = data_config[name]
    if size % data_axis:
      raise UserError(f"data.{name}={size} must be a positive multiple of the 'data' mesh axis "
                      f"({data_axis} = {jax.device_count()} devices / model axis "
                      f"{mesh.shape[MODEL]})")


TRANSFERS = ("pageable", "pinned")


def to_global(batch: dict, sharding, transfer: str = "pageable") -> dict:
  """This process's share of a batch as global arrays sharded as `sharding` says, copied
  from the host batch itself ('pageable') or staged in JAX's pinned host memory first
  ('pinned': `data.transfer`)."""
  if transfer == "pageable":
    return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}
  pinned = sharding.with_memory_kind("pinned_host")
  return jax.device_put({k: v if isinstance(v, jax.Array)  # decoded on a device: stays there
                         else jax.make_array_from_process_local_data(pinned, v)
                         for k, v in batch.items()}, sharding)
