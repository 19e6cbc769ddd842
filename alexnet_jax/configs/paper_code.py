"""The 2012 cuda-convnet code's network and input where they differ from the paper text
(docs/fidelity.md lists each difference and the code it comes from).

`--config=configs/paper_code.py` (variants as in paper.py: `configs/paper_code.py:no_lrn`).
"""

from alexnet_jax.configuration import apply_variants
from alexnet_jax.configs import paper


def get_config(variant: str = ""):
  config = paper.get_config()
  m = config.model
  m.lrn_alpha_over_size = True  # cmrnorm's `scale /= size`: α/n = 2e-5 per term, k = 2.
  m.lrn_conv1_pre_relu = True  # conv1: LRN on the conv output, ReLU applied at the pool.
  m.response_norm = True  # conv2: ReLU -> LRN -> rnorm (5x5, scale 1e-3 / 25, pow 0.75) -> pool.
  m.init_std.update(dict(conv3=0.03, conv4=0.03, conv5=0.03))
  # m.dropout_form stays 'paper': the code's dropout layer masks in training and multiplies by
  # the keep rate at test time, as §4.2 says.
  config.data.lighting_shrink = True  # `cropped /= 1 + color_noise_coeff`
  config.data.crop_chunk = 32  # `crop_chunk = 32`: one crop offset and mirror per 32 images
  config.optimizer.decay_on = "kernels"  # wc on weights, no decay on biases (as Caffe)
  config.optimizer.bias_lr_multiplier = 2.0  # epsB = 0.02 = 2 x epsW
  return apply_variants(config, variant)
