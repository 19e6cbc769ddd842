"""The network's description: §3.5's geometry, the §3.2 one-column net, Table 2's conv6 and the
one-line errors of a structure that cannot be built."""

import math

import pytest

from alexnet_jax import model_spec
from alexnet_jax.errors import UserError
from conftest import load_config


def spec_of(name: str, variant: str = "") -> model_spec.AlexNetSpec:
  return model_spec.AlexNetSpec.from_config(load_config(name, variant).model)


def param_count(spec: model_spec.AlexNetSpec) -> int:
  """Every column's kernels and biases; fc8's bias is one vector shared by the columns."""
  return sum(spec.columns * math.prod(spec.kernel_shape(n)) + spec.widths[n] *
             (1 if n == "fc8" else spec.columns) for n in spec.layers)


def test_geometry_of_section_3_5():
  """224 -> conv1 55x55 (cuda-convnet's 1 + ceil((224 - 11) / 4) outputs: 3 pixels of padding
  at the bottom and right) -> pool 27 -> 13 -> pool5 6x6; 60,965,224 parameters; the columns
  meet in front of conv3 and the fully-connected layers."""
  spec = spec_of("paper")
  assert (spec.conv1_padding, spec.conv1_size, spec.pool5_size) == (3, 55, 6)
  assert spec.meets == ("conv3", "fc6", "fc7", "fc8")
  assert [spec.in_features(n) for n in spec.layers] == [3, 48, 256, 192, 192, 9216, 4096, 2048]
  assert spec.kernel_shape("conv1") == (11, 11, 3, 48)
  assert param_count(spec) == 60_965_224
  assert spec.forward_flops() == pytest.approx(1.45e9, rel=0.01)
  caffe = spec_of("caffe_alexnet")  # 227 pixels: (55 - 1) x 4 + 11 = 227, no padding
  assert (caffe.input_size, caffe.conv1_padding, caffe.conv1_size) == (227, 0, 55)


def test_the_2012_codes_conv6_sees_both_columns_and_the_texts_its_own():
  """layers-146: conv6a/conv6b take pool3a and pool3b, 128 filters each over 256 maps (+590,080
  parameters); configs/paper.py:conv6 follows the text's pattern, own column (+295,168)."""
  code = spec_of("paper_code", "conv6")
  assert param_count(code) == 60_965_224 + 590_080
  assert param_count(spec_of("paper", "conv6")) == 60_965_224 + 295_168
  assert code.meets == ("conv3", "conv6", "fc6", "fc7", "fc8")
  assert code.kernel_shape("conv6") == (3, 3, 256, 128)
  assert dict(code.init_std)["conv6"] == 0.03 and dict(code.init_bias)["conv6"] == 1.0


def test_one_column_net_of_section_3_2():
  # Half the kernels in conv1-conv4; conv5 and the fully-connected layers not halved.
  expected = (11 * 11 * 3 * 48 + 48) + (5 * 5 * 48 * 128 + 128) + (3 * 3 * 128 * 192 + 192) + \
      (3 * 3 * 192 * 192 + 192) + (3 * 3 * 192 * 256 + 256) + (9216 * 4096 + 4096) + \
      (4096 * 4096 + 4096) + (4096 * 1000 + 1000)
  assert param_count(spec_of("paper", "one_column")) == expected == 59_798_312


@pytest.mark.parametrize("variant,removed,added,meets,in_features", [
    # conv2 (2 x (5x5x48x128 + 128)) out; conv3 sees both columns' pool2 of conv1: 96 maps,
    # not 256 (2 x 3x3x(256 - 96)x192 fewer)
    ("no_conv2", 307_456 + 552_960, 0, "conv3", [3, 96, 192, 192, 9216, 4096, 2048]),
    # conv3 (2 x (3x3x256x192 + 192)) out; conv4 now meets: 256 maps in, not 192 (+2 x 3x3x64x192)
    ("no_conv3", 885_120, 221_184, "conv4", [3, 48, 256, 192, 9216, 4096, 2048]),
    ("no_conv4", 663_936, 0, "conv3", [3, 48, 256, 192, 9216, 4096, 2048]),
    # conv5 (2 x (3x3x192x128 + 128)) out; pool5 pools conv4's 384 maps: fc6 sees 6x6x384, not
    # 6x6x256 (+2 x 4608 x 2048)
    ("no_conv5", 442_624, 18_874_368, "conv3", [3, 48, 256, 192, 13824, 4096, 2048]),
])
def test_section_7s_networks_have_one_convolutional_layer_less(variant, removed, added, meets,
                                                                in_features):
  """§7 "if a single convolutional layer is removed": its kernels go, the next layer reads the
  maps before it (pooled as before: every size stays), the columns meet in front of conv3 or,
  without it, of conv4. Mutations: conv3's meeting not moved to conv4 (its input 128 per
  column); fc6 reading conv5's width when conv5 is gone; conv2's maps kept in conv3's input ->
  red."""
  spec = spec_of("paper", variant)
  name = variant[3:]
  assert name not in spec.layers and name not in spec.captured and "pool2" in spec.captured
  assert param_count(spec) == 60_965_224 - removed + added
  assert spec.meets == (meets, "fc6", "fc7", "fc8")
  assert [spec.in_features(n) for n in spec.layers] == in_features
  assert (spec.conv1_size, spec.pool5_size) == (55, 6)


@pytest.mark.parametrize("change,message", [
    ({"columns": 3}, "columns must be 2"),
    ({"removed_conv": "conv1"}, "removed_conv must be '' .none. or one of conv2, conv3, conv4, "
                                "conv5, got 'conv1'"),
    ({"conv_features": ("wide", 64, 96, 96, 64)}, "invalid model config"),
    ({"conv_features": (96, 255, 384, 384, 256)}, "every width must be even"),
    ({"lrn_size": 4}, "lrn_size must be a positive odd number"),
    ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
    ({"column_maps": "split"}, "column_maps must be one of joined, separate"),
    ({"column_maps": "separate", "lrn_across_columns": True},
     "lrn_across_columns needs them joined"),
    ({"input_size": 40}, "input_size 40 is too small"),
    ({"init_bias": {"fc6": float("nan")}}, "init_bias must be finite numbers"),
    ({"lrn_k": 0.0}, r"lrn_k must be a finite number > 0 \(the paper's k = 2\), got 0.0"),
    ({"lrn_beta": float("nan")}, "lrn_beta must be a finite number >= 0, got nan"),
    ({"response_norm_alpha": -1e-3}, "response_norm_alpha must be a finite number >= 0"),
])
def test_invalid_structures_are_one_line_errors(change, message):
  config = load_config("paper")
  config.model.update(change)
  with pytest.raises(UserError, match=message):
    model_spec.AlexNetSpec.from_config(config.model)


def test_the_smallest_network_the_checks_allow_is_built():
  """The bounds of the checks above, from the accepted side: one unit a layer, two classes,
  LRN windows of one map, k below 1, and the smallest input that leaves pool5 a pixel (64 ->
  conv1 15 -> pool 7 -> conv2 7 -> pool 3 -> conv5 3 -> pool5 1). Mutations: each bound moved
  by one -> red."""
  config = load_config("paper", "one_column")
  config.model.update(dict(conv_features=(1, 1, 1, 1, 1), fc_features=(1, 1), num_classes=2,
                           lrn_size=1, response_norm_size=1, lrn_k=0.5, input_size=64))
  spec = model_spec.AlexNetSpec.from_config(config.model)
  assert (spec.conv1_size, spec.pool5_size) == (15, 1)
  config.model.input_size = 63
  with pytest.raises(UserError, match="input_size 63 is too small"):
    model_spec.AlexNetSpec.from_config(config.model)


def test_a_missing_field_is_named():
  model = load_config("tiny").model
  with pytest.raises(UserError, match="missing field lrn_size"):
    model_spec.AlexNetSpec.from_config({k: v for k, v in model.items() if k != "lrn_size"})
