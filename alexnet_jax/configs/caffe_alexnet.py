"""The network BVLC Caffe trained (`models/bvlc_alexnet`), as a variant of the paper's, for its
converted weights (`python -m alexnet_jax.convert caffe ...`) and for training it afresh.

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
  converter, which turns conv1's input channels (and the mean image) to RGB.
"""

from alexnet_jax.configuration import apply_variants
from alexnet_jax.configs import paper


def get_config(variant: str = ""):
  config = paper.get_config()
  config.model.update(dict(input_size=227, lrn_k=1.0, lrn_alpha=1e-4, lrn_alpha_over_size=True,
                           lrn_beta=0.75, lrn_size=5, lrn_across_columns=True,
                           dropout_form="inverted"))
  # bvlc_alexnet's solver: biases of 0.1 where the paper has 1, no decay and 2x ε on biases.
  config.model.init_bias.update(dict(conv2=0.1, conv4=0.1, conv5=0.1, fc6=0.1, fc7=0.1))
  config.optimizer.update(dict(decay_on="kernels", bias_lr_multiplier=2.0))
  config.mesh.model = 1
  # No PCA lighting: bvlc_alexnet was trained "not ... with the relighting data-augmentation".
  config.data.update(dict(resize="squash", image_size=256, mean="pixel", pca_lighting=0.0))
  return apply_variants(config, variant)
