"""The 2012 cuda-convnet code's network, input and training where they differ from the paper
text: run #145, the run behind Table 2's "1 CNN" (40.7 % / 18.2 % top-1 / top-5 validation
error), as its layers-145.cfg and layer-params-145.cfg record it (docs/fidelity.md lists each
difference and the log line or code it comes from).

`--config=configs/paper_code.py` (variants as in paper.py: `configs/paper_code.py:no_lrn`;
`:conv6` adds the 2012 code's sixth layer, over both columns' pool5 maps: the network of runs
#146, configs/paper_code_finetune.py).
"""

from alexnet_jax.configuration import apply_variants
from alexnet_jax.configs import paper

# layer-params-145.cfg's notes, replayed (alexnet_jax/events.py). The notes count epochs from
# 1 (cuda-convnet's first pass is epoch 1): "epoch 25: set epsw to 0.001" takes effect after
# 24 passes, here `epoch 24`. epsB stays 0.02 throughout: the notes change epsW only, and the
# final file still has epsB=0.02 on conv2-fc1000 (conv1's is 0 once it is frozen).
RUN_145 = (
    "epoch 0: epsW=0.01 epsB=0.02",
    "epoch 24: epsW=0.001",  # epoch 25: set epsw to 0.001 from 0.01
    "epoch 50: epsW=0.0001",  # epoch 51: set epsw to 0.0001 from 0.001
    # epoch 67: set epsw to 0.00001 from 0.0001 on conv1; set color noise to 0 from 0.1
    "epoch 66: conv1.epsW=0.00001 pca_lighting=0",
    "epoch 71: conv1.epsW=0 conv1.epsB=0",  # epoch 72: set epsw to 0 on conv1 (frozen)
    "epoch 78: epsW=0.00001",  # epoch 79: set epsw to 0.00001 from 0.0001 (conv1 stays 0)
)


def get_config(variant: str = ""):
  config = paper.get_config()
  m = config.model
  m.lrn_alpha_over_size = True  # cmrnorm's `scale /= size`: α/n = 2e-5 per term, k = 2.
  m.lrn_conv1_pre_relu = True  # conv1: LRN on the conv output, ReLU applied at the pool.
  m.response_norm = True  # conv2: ReLU -> LRN -> rnorm (5x5, scale 1e-3 / 25, pow 0.75) -> pool.
  m.conv6_across_columns = True  # layers-146: conv6a/conv6b take pool3a and pool3b
  m.init_std.update(dict(conv3=0.03, conv4=0.03, conv5=0.03, conv6=0.03))
  # m.dropout_form stays 'paper': the code's dropout layer masks in training and multiplies by
  # the keep rate at test time, as §4.2 says.
  config.data.lighting_shrink = True  # `cropped /= 1 + color_noise_coeff`
  config.data.crop_chunk = 32  # `crop_chunk = 32`: one crop offset and mirror per 32 images
  config.data.mean_patch = "centre"  # `data_mean_crop`: the mean image's centre 224 patch
  # The data provider reads its data-batch files in one order, each file's images as written.
  config.data.reshuffle_each_epoch = False
  config.optimizer.decay_on = "kernels"  # wc on weights; layer.cu builds biases with wc = 0
  config.schedule.update(dict(kind="recorded", events=RUN_145))
  config.num_epochs = 90.0  # epoch 91: killed (after 90 passes)
  return apply_variants(config, variant)
