"""The 2012 cuda-convnet code's choices where they differ from the paper text (NOTES.md).

`--config=configs/paper_code.py` (ablations as in paper.py: `configs/paper_code.py:no_lrn`).
"""

from configs import paper


def get_config(variant: str = ""):
  config = paper.get_config()
  m = config.model
  m.lrn_alpha_over_size = True  # `scale /= size`: α/n = 2e-5 per term, k = 2.
  m.lrn_conv1_pre_relu = True  # conv1: LRN on the conv output, ReLU applied at the pool.
  m.contrast_norm = True  # conv2: ReLU -> LRN -> contrast norm (size 5, α 1e-3/25) -> pool.
  m.init_std.update(dict(conv3=0.03, conv4=0.03, conv5=0.03))
  config.optimizer.decay_on = "kernels"  # wc on weights, no decay on biases (as Caffe)
  config.optimizer.bias_lr_multiplier = 2.0  # epsB = 0.02 = 2 x epsW
  return paper.apply_ablation(config, variant)
