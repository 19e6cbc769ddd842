"""Fine-tuning (Table 2, "*"): a trained workdir's layers copied into a fresh network.

Every layer comes from the `init_from.workdir` checkpoint (`checkpoint.restore_trained`) except
those in `init_from.new_layers` (fc8: a head for the new classes; conv6 with
configs/finetune.py:new_conv6). Table 2's route is configs/paper.py:conv6 for training on the
first dataset, then configs/finetune.py:conv6 on the second (conv6 copied with the rest).
"""

from __future__ import annotations

import jax
from absl import logging

from alexnet_jax import checkpoint, models
from alexnet_jax.errors import UserError


def validate(init_from) -> None:
  """`init_from`: a step >= 0 and new layers this network can have."""
  if init_from.step < 0:
    raise UserError(f"init_from.step must be >= 0 (0: the newest), got {init_from.step}")
  unknown = [n for n in init_from.new_layers if n not in models.LAYERS + (models.CONV6,)]
  if unknown:
    raise UserError(f"init_from.new_layers names unknown layers {unknown}; the layers are "
                    f"{', '.join(models.LAYERS + (models.CONV6,))}")


def transfer(params: dict, init_from, mesh: jax.sharding.Mesh) -> dict:
  """`params` (a fresh model's) with each layer of the source checkpoint copied in, except the
  layers in `init_from.new_layers`. A layer that only one of the two networks has, or of
  another shape, is a one-line error: the backbone must be the source's."""
  step_dir, _, _, _, source = checkpoint.restore_trained(
      init_from.workdir, step=int(init_from.step) or None, best=bool(init_from.best),
      mesh_for=lambda _: mesh)
  new_layers = tuple(init_from.new_layers)
  for name in source:
    if name not in params:
      raise UserError(
          f"cannot fine-tune from {step_dir}: it has a {name} layer and this config does not"
          + ("; set --config.model.extra_conv6=True (configs/finetune.py:conv6)"
             if name == models.CONV6 else ""))
  out = {}
  for name, layer in params.items():
    if name in new_layers:
      logging.info("fine-tuning: %s initialised afresh (a new layer)", name)
      out[name] = layer
      continue
    if name not in source:
      raise UserError(
          f"cannot fine-tune from {step_dir}: it has no {name} layer to copy; train the source "
          f"with it (configs/paper.py:conv6, the paper's route) or add {name} to "
          "init_from.new_layers (configs/finetune.py:new_conv6)")
    for key in layer:
      if source[name][key].shape != layer[key].shape:
        raise UserError(
            f"cannot fine-tune from {step_dir}: {name}.{key} has shape "
            f"{tuple(source[name][key].shape)} there and {tuple(layer[key].shape)} in this "
            f"config; use the source's model config or add {name} to init_from.new_layers")
    out[name] = jax.tree.map(lambda s, t: jax.device_put(s.astype(t.dtype), t.sharding),
                             source[name], layer)
  logging.info("fine-tuning from %s", step_dir)
  return out
