"""The layer table of a configured network, from shapes alone (no forward pass is run): each
layer's output shape, parameters and connectivity (§3.5, Figure 2).

    python -m alexnet_jax.layer_shapes --config=configs/paper.py
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from absl import flags
from flax import nnx

from alexnet_jax import cli, model_spec, models


def _connectivity(spec: model_spec.AlexNetSpec, layer: str) -> str:
  if spec.columns == 1:
    return "one column"
  if layer == "fc8":
    return "both columns: psum of the columns' partial logits"
  if layer in spec.meets:
    return f"both columns: all-gather over 'model' ({spec.columns} x {spec.widths[layer]})"
  return f"own column ({spec.columns} x {spec.widths[layer]})"


def layer_rows(model_config) -> list[tuple[str, tuple[int, ...], int, str]]:
  """Rows of (layer, output shape without batch, parameters, connectivity)."""
  spec = model_spec.AlexNetSpec.from_config(model_config)
  model = nnx.eval_shape(lambda: models.AlexNet(spec, rngs=nnx.Rngs(0)))
  graphdef, state = nnx.split(model)
  images = jax.ShapeDtypeStruct((1, spec.input_size, spec.input_size, spec.in_channels),
                                jnp.float32)
  logits, captured = jax.eval_shape(
      lambda s, x: nnx.merge(graphdef, s)(x, capture=True), state, images)
  shapes = {name: tuple(v.shape[1:]) for name, v in captured.items()}
  shapes["fc8"] = tuple(logits.shape[1:])
  rows = [("input", tuple(images.shape[1:]), 0, "")]
  for name in spec.captured + ("fc8",):
    if name in spec.layers:
      layer = getattr(model, name)
      count = math.prod(layer.kernel.shape) + math.prod(layer.bias.shape)
      rows.append((name, shapes[name], count, _connectivity(spec, name)))
    else:
      rows.append((name, shapes[name], 0, "max-pool per column"))
  return rows


def format_table(rows) -> str:
  lines = [f"{'layer':<7}{'output':>16}{'params':>14}  connectivity"]
  for name, shape, count, conn in rows:
    lines.append(f"{name:<7}{'x'.join(map(str, shape)):>16}{count:>14,}  {conn}")
  lines.append(f"total params: {sum(r[2] for r in rows)}")
  return "\n".join(lines)


def main(argv):
  del argv
  print(format_table(layer_rows(flags.FLAGS.config.model)))


if __name__ == "__main__":
  from ml_collections import config_flags

  config_flags.DEFINE_config_file("config", None, "Training configuration file.",
                                  lock_config=True)
  cli.run(main, required_flags=("config",))
