"""The network and recipe BVLC Caffe trained (`models/bvlc_alexnet`: train_val.prototxt and
solver.prototxt), as a variant of the paper's, for its converted weights (`python -m
alexnet_jax.convert caffe ...`) and for training Caffe's recipe with this stack.

Where Caffe's AlexNet differs from the paper's (docs/fidelity.md):
* 227x227 crops, so conv1 needs no extra padding to give 55x55 maps;
* LRN with Caffe's constants: local_size 5, α = 1e-4 divided by n per term, β = 0.75, k = 1,
  and its window over all 96 (256) maps of the layer, across the column boundary (Caffe's norm1
  and norm2 follow the ungrouped conv1 and the concatenated groups of conv2): one device holds
  both columns (mesh.model = 1);
* inverted dropout (Caffe scales the kept units at training time); no PCA lighting;
* Caffe's pre-processing: images resized to 256x256 ignoring the aspect ratio (its
  `convert_imageset --resize_height=256 --resize_width=256` database), the 256x256 mean image,
  pixel values 0-255, 227 centre crop / ten crops. Caffe's BGR order is handled by the
  converter, which turns conv1's input channels (and the mean image) to RGB;
* the solver: batch 256; weights ~ N(0, 0.01²) but fc6 and fc7 N(0, 0.005²); biases 0 in conv1,
  conv3, fc8 and 0.1 elsewhere; lr 0.01 for weights and 0.02 for biases (lr_mult 2), both ÷10
  every 100,000 iterations (`lr_policy: "step"`), 450,000 iterations; momentum 0.9; weight
  decay 0.0005 on weights only (decay_mult 0 on biases).
"""

from alexnet_jax.configuration import apply_variants
from alexnet_jax.configs import paper

# solver.prototxt: base_lr 0.01, lr_policy "step", gamma 0.1, stepsize 100000, max_iter 450000;
# every layer's bias has lr_mult 2.
SOLVER = tuple(f"step {k * 100_000}: epsW={0.01 * 0.1 ** k:.0e} epsB={0.02 * 0.1 ** k:.0e}"
               for k in range(5))


def get_config(variant: str = ""):
  config = paper.get_config()
  config.model.update(dict(input_size=227, lrn_k=1.0, lrn_alpha=1e-4, lrn_alpha_over_size=True,
                           lrn_beta=0.75, lrn_size=5, lrn_across_columns=True,
                           dropout_form="inverted"))
  config.model.init_std.update(dict(fc6=0.005, fc7=0.005))
  config.model.init_bias.update(dict(conv2=0.1, conv4=0.1, conv5=0.1, fc6=0.1, fc7=0.1))
  config.mesh.model = 1
  # No PCA lighting: bvlc_alexnet was trained "not ... with the relighting data-augmentation".
  config.data.update(dict(resize="squash", image_size=256, mean="pixel", pca_lighting=0.0,
                          batch_size=256))
  config.optimizer.update(dict(decay_on="kernels", momentum=0.9, weight_decay=5e-4))
  config.schedule.update(dict(kind="recorded", events=SOLVER))
  config.num_steps = 450_000
  return apply_variants(config, variant)
