"""The paper's network and recipe, as written in the text (Krizhevsky et al. 2012).

Named ablations (paper §3.1-§4.2) are variants: `--config=configs/paper.py:no_lrn`.
"""

import ml_collections

# name -> (paper section, overrides of the model config)
ABLATIONS = {
    "no_lrn": ("§3.3", {"lrn": False}),
    "no_overlap_pool": ("§3.4", {"pool_window": 2}),
    "one_column": ("§3.2", {"columns": 1}),
    "tanh": ("§3.1", {"activation": "tanh"}),
    "no_dropout": ("§4.2", {"dropout": 0.0}),
}


def model_config() -> ml_collections.ConfigDict:
  """§3.5 architecture, §3.3 LRN constants, §3.4 pooling, §4.2 dropout, §5 initialisation."""
  return ml_collections.ConfigDict(dict(
      name="alexnet",
      num_classes=1000,
      input_size=224,
      in_channels=3,
      columns=2,
      conv_features=(96, 256, 384, 384, 256),
      conv_kernels=(11, 5, 3, 3, 3),
      conv1_stride=4,
      fc_features=(4096, 4096),
      activation="relu",
      lrn=True,
      lrn_size=5,
      lrn_k=2.0,
      lrn_alpha=1e-4,
      lrn_beta=0.75,
      lrn_alpha_over_size=False,
      lrn_conv1_pre_relu=False,
      contrast_norm=False,  # the 2012 code's extra norm after conv2 (configs/paper_code.py)
      contrast_norm_size=5,
      contrast_norm_k=1.0,
      contrast_norm_alpha=1e-3,
      contrast_norm_beta=0.75,
      pool_window=3,
      pool_stride=2,
      dropout=0.5,
      init_std=dict(conv1=0.01, conv2=0.01, conv3=0.01, conv4=0.01, conv5=0.01,
                    fc6=0.01, fc7=0.01, fc8=0.01),
      init_bias=dict(conv1=0.0, conv2=1.0, conv3=0.0, conv4=1.0, conv5=1.0,
                     fc6=1.0, fc7=1.0, fc8=0.0),
      dtype="float32",
      param_dtype="float32",
  ))


def apply_ablation(config: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
  if name not in ABLATIONS:
    raise ValueError(f"unknown variant {name!r}; known: {', '.join(ABLATIONS)}")
  config.model.update(ABLATIONS[name][1])
  return config


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.model = model_config()
  config.mesh = ml_collections.ConfigDict(dict(model=2))
  if variant:
    apply_ablation(config, variant)
  return config
