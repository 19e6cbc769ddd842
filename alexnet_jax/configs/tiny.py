"""The paper's structure shrunk for CPUs: same layers, columns and communication, narrower and
on 32x32 inputs (conv1 5x5 stride 1). Used by the fast tests and as the base of the embedded
Fashion-MNIST default."""

from alexnet_jax.configuration import apply_variants
from alexnet_jax.configs import paper


def get_config(variant: str = ""):
  config = paper.get_config()
  config.model.update(dict(
      num_classes=10,
      input_size=32,
      conv_features=(32, 64, 96, 96, 64),
      conv_kernels=(5, 5, 3, 3, 3),
      conv1_stride=1,
      fc_features=(256, 256),
  ))
  return apply_variants(config, variant)
