"""The full paper network (configs/paper.py, two columns, 1000→10 classes) on Fashion-MNIST,
for a GPU: images upscaled to 256x256 (§2's stored size), trained on random 224 crops with
flips, bf16 compute. ε 0.01 ÷10 three times (§5) at fixed epochs, so that a run takes a known
time (the plateau rule: --config.schedule.kind=plateau).

Inputs at the 2012 code's scale (raw 0-255 values less the mean image, paper.py's
pixel_scale 1) and its std of 0.03 in conv3-conv5 (layers-145.cfg; the text says 0.01 for
every layer): with them the image's part of every layer's activations stays well above what
bfloat16 resolves at initialisation (`python -m alexnet_jax.diagnose`; docs/fidelity.md, "The
paper's initialisation", has the figures).
"""

from alexnet_jax.configuration import apply_variants
from alexnet_jax.configs import paper


def get_config(variant: str = ""):
  config = paper.get_config()
  config.model.update(dict(num_classes=10, in_channels=1, dtype="bfloat16"))
  config.model.init_std.update(dict(conv3=0.03, conv4=0.03, conv5=0.03))
  config.data.update(dict(name="fashion_mnist", data_dir="/usr/share/datasets/fashion-mnist",
                          image_size=256, eval_batch_size=500, read_threads=8, prefetch=8))
  config.schedule.update(dict(kind="steps", drop_epochs=(15.0, 22.0, 27.0)))
  config.num_epochs = 30.0
  config.log_every_steps = 200
  config.checkpoint.every_steps = 5000
  return apply_variants(config, variant)
