"""The static description of AlexNet: its layers, where the two columns meet, their widths and
the geometry of every layer, from the config's `model` section.

Paper §3.5 (layers, sizes, where the columns meet), §3.2 (the one-column comparison net), §3.3
(LRN), §3.4 (overlapping pooling), §4.2 (dropout), §5 (initialisation); Table 2's sixth
convolutional layer; §7's network with one convolutional layer removed. `models` builds and
runs the network a spec describes.
"""

from __future__ import annotations

import dataclasses
import math
import typing

from alexnet_jax.errors import UserError

CONV_LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5")
FC_LAYERS = ("fc6", "fc7", "fc8")
LAYERS = CONV_LAYERS + FC_LAYERS
# Layers whose input is every column's output (§3.5): the columns meet in front of them (and in
# front of conv6 when `conv6_across_columns`: `AlexNetSpec.meets`).
MEETS = ("conv3", "fc6", "fc7", "fc8")
# What `AlexNet.__call__(..., capture=True)` returns besides the logits, in order.
CAPTURED = ("conv1", "pool1", "conv2", "pool2", "conv3", "conv4", "conv5", "pool5", "fc6", "fc7")
# Table 2's "extra sixth convolutional layer over the last pooling layer" (3x3, as wide as conv5),
# present when `extra_conv6` is set: between pool5 and fc6; over its own column's pool5 maps, or
# over both columns' (`conv6_across_columns`: the 2012 code's conv6a/conv6b, inputs=pool3a,pool3b).
CONV6 = "conv6"
# §7: "our network's performance degrades if a single convolutional layer is removed": the layer
# left out (`removed_conv`), any but conv1, which takes the image. Its ReLU and normalisation go
# with it; the pooling layers stay where they are, so every map keeps its size; with conv3
# gone, the columns meet in front of the next convolutional layer instead.
REMOVABLE = ("conv2", "conv3", "conv4", "conv5")
# §4.2's dropout: 'paper' zeroes units with probability p in training and multiplies every
# output by 1 - p at test time (the paper, the 2012 code); 'inverted' divides the kept units by
# 1 - p in training and is the identity at test time (Caffe, PyTorch, Flax).
DROPOUT_FORMS = ("paper", "inverted")
DROPPED = ("fc6", "fc7")
# How a device holding both columns keeps their maps between the layers where they meet: side
# by side on the channel axis ('joined'), or as one array per column ('separate': no
# concatenation of conv2/conv4/conv5's outputs; the same sums).
COLUMN_MAPS = ("joined", "separate")


def _finite(value) -> bool:
  """A number (not NaN, not infinite)."""
  return isinstance(value, (int, float)) and math.isfinite(value)


@dataclasses.dataclass(frozen=True)
class AlexNetSpec:
  """The static description of one network, built from the config's `model` section by
  `from_config` (the defaults live in configs/paper.py only; every field is required)."""

  num_classes: int
  input_size: int
  in_channels: int
  columns: int
  conv_features: tuple[int, ...]
  conv_kernels: tuple[int, ...]
  conv1_stride: int
  fc_features: tuple[int, ...]
  extra_conv6: bool
  conv6_across_columns: bool
  removed_conv: str
  activation: str
  lrn: bool
  lrn_size: int
  lrn_k: float
  lrn_alpha: float
  lrn_beta: float
  lrn_alpha_over_size: bool
  lrn_conv1_pre_relu: bool
  lrn_across_columns: bool
  column_maps: str
  response_norm: bool
  response_norm_size: int
  response_norm_alpha: float
  response_norm_beta: float
  pool_window: int
  pool_stride: int
  dropout: float
  dropout_form: str
  init_std: tuple[tuple[str, float], ...]  # (layer, std) for every layer, conv6 included
  init_bias: tuple[tuple[str, float], ...]
  dtype: str
  param_dtype: str

  @classmethod
  def from_config(cls, model_config) -> "AlexNetSpec":
    """The spec of a config's `model` section, validated; a missing or malformed field is a
    one-line `UserError`."""
    c = model_config
    values = {}
    try:
      for name, kind in typing.get_type_hints(cls).items():
        value = c[name]
        if name in ("init_std", "init_bias"):
          values[name] = tuple((n, float(value[n])) for n in LAYERS + (CONV6,))
        elif kind == tuple[int, ...]:
          values[name] = tuple(int(v) for v in value)
        else:
          values[name] = kind(value)
    except (KeyError, AttributeError) as e:
      raise UserError(f"invalid model config: missing field {e.args[0] if e.args else e}") from None
    except (TypeError, ValueError) as e:
      raise UserError(f"invalid model config: {e}") from None
    return cls(**values)

  def __post_init__(self) -> None:
    """A spec exists only for a structure that can be built: a one-line UserError otherwise."""
    def bad(msg):
      raise UserError(f"invalid model config: {msg}")
    if self.columns not in (1, 2):
      bad(f"columns must be 2 (the paper's net) or 1 (the §3.2 comparison net), got {self.columns}")
    if len(self.conv_features) != 5 or len(self.conv_kernels) != 5 or len(self.fc_features) != 2:
      bad("conv_features and conv_kernels need 5 entries and fc_features 2")
    sizes = {"conv_features": self.conv_features, "conv_kernels": self.conv_kernels,
             "fc_features": self.fc_features, "conv1_stride": (self.conv1_stride,),
             "pool_window": (self.pool_window,), "pool_stride": (self.pool_stride,),
             "input_size": (self.input_size,), "in_channels": (self.in_channels,)}
    for name, values in sizes.items():  # each a count of units or pixels
      if any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in values):
        bad(f"{name} must be whole numbers >= 1, got {values if len(values) > 1 else values[0]}")
    stds = dict(self.init_std)
    if any(not (_finite(v) and v > 0) for v in stds.values()):
      bad(f"init_std must be positive numbers, got {stds}")
    biases = dict(self.init_bias)
    if not all(_finite(v) for v in biases.values()):
      bad(f"init_bias must be finite numbers, got {biases}")
    # (k + α Σ a²)^-β of §3.3 and the 2012 code's (1 + α Σ a²)^-β: finite and positive inside
    norms = {"lrn_alpha": self.lrn_alpha, "lrn_beta": self.lrn_beta,
             "response_norm_alpha": self.response_norm_alpha,
             "response_norm_beta": self.response_norm_beta}
    for name, value in norms.items():
      if not (_finite(value) and value >= 0):
        bad(f"{name} must be a finite number >= 0, got {value}")
    if not (_finite(self.lrn_k) and self.lrn_k > 0):
      bad(f"lrn_k must be a finite number > 0 (the paper's k = 2), got {self.lrn_k}")
    if self.columns == 2 and any(f % 2 for f in self.conv_features + self.fc_features):
      bad("every width must be even to split into two columns: "
          f"{self.conv_features + self.fc_features}")
    if self.removed_conv not in ("",) + REMOVABLE:
      bad(f"removed_conv must be '' (none) or one of {', '.join(REMOVABLE)}, got "
          f"{self.removed_conv!r}")
    if self.activation not in ("relu", "tanh"):
      bad(f"activation must be 'relu' or 'tanh', got {self.activation!r}")
    if not 0.0 <= self.dropout < 1.0:
      bad(f"dropout must be in [0, 1), got {self.dropout}")
    if self.column_maps not in COLUMN_MAPS:
      bad(f"column_maps must be one of {', '.join(COLUMN_MAPS)}, got {self.column_maps!r}")
    if self.column_maps == "separate" and self.lrn_across_columns:
      bad("column_maps='separate' keeps each column's maps apart: lrn_across_columns needs "
          "them joined")
    if self.dropout_form not in DROPOUT_FORMS:
      bad(f"dropout_form must be one of {', '.join(DROPOUT_FORMS)}, got {self.dropout_form!r}")
    if self.num_classes < 2:
      bad(f"num_classes must be >= 2, got {self.num_classes}")
    for name, size in (("lrn_size", self.lrn_size),
                       ("response_norm_size", self.response_norm_size)):
      if size < 1 or size % 2 == 0:
        bad(f"{name} must be a positive odd number, got {size}")
    for name in (self.dtype, self.param_dtype):
      if name not in ("float32", "bfloat16", "float16"):
        bad(f"dtype must be float32, bfloat16 or float16, got {name!r}")
    if self.pool5_size < 1:
      bad(f"input_size {self.input_size} is too small for this network")

  # --- geometry -----------------------------------------------------------------------------

  @property
  def convs(self) -> tuple[str, ...]:
    """The five convolutional layers of §3.5 less `removed_conv`, in order."""
    return tuple(n for n in CONV_LAYERS if n != self.removed_conv)

  @property
  def layers(self) -> tuple[str, ...]:
    """The layers with parameters, in order."""
    return self.convs + ((CONV6,) if self.extra_conv6 else ()) + FC_LAYERS

  @property
  def meets(self) -> tuple[str, ...]:
    """The layers in front of which the columns meet: conv3 (or the convolutional layer after
    it, when it is removed), conv6 over both columns, the fully-connected layers."""
    first = next(n for n in self.convs if n in CONV_LAYERS[2:])
    return (first,) + ((CONV6,) if self.extra_conv6 and self.conv6_across_columns else ()) + \
        MEETS[1:]

  @property
  def captured(self) -> tuple[str, ...]:
    return tuple(n for n in CAPTURED[:8] if n != self.removed_conv) + \
        ((CONV6,) if self.extra_conv6 else ()) + CAPTURED[8:]

  @property
  def widths(self) -> dict[str, int]:
    """Per-column output width of each layer (fc8: the number of classes)."""
    if self.columns == 2:
      w = [f // 2 for f in self.conv_features + self.fc_features]
    else:  # §3.2: half the kernels in conv1-conv4; conv5 and the fc layers not halved.
      w = [f // 2 for f in self.conv_features[:4]] + [self.conv_features[4], *self.fc_features]
    widths = dict(zip(LAYERS, w + [self.num_classes]))
    return widths | {CONV6: widths["conv5"]}

  @property
  def conv1_padding(self) -> int:
    """Bottom/right zero padding of conv1: cuda-convnet's 1 + ceil((H - k) / s) outputs."""
    k, s = self.conv_kernels[0], self.conv1_stride
    out = 1 + math.ceil((self.input_size - k) / s)
    return max((out - 1) * s + k - self.input_size, 0)

  def _pool(self, n: int) -> int:
    return (n - self.pool_window) // self.pool_stride + 1

  @property
  def conv1_size(self) -> int:
    k, s = self.conv_kernels[0], self.conv1_stride
    return (self.input_size + self.conv1_padding - k) // s + 1

  @property
  def pool5_size(self) -> int:
    return self._pool(self._pool(self._pool(self.conv1_size)))

  def before(self, layer: str) -> str:
    """The layer whose output `layer` reads (through a pooling layer or not)."""
    return dict(zip(self.layers[1:], self.layers))[layer]

  def in_features(self, layer: str) -> int:
    """Input width of one column's kernel in `layer` (§3.5 connectivity): the maps of the layer
    before it, every column's where the columns meet (fc8: its own column's units, the
    columns' partial logits summed)."""
    w, c = self.widths, self.columns
    if layer == "conv1":
      return self.in_channels
    seen = (c if layer in self.meets and layer != "fc8" else 1) * w[self.before(layer)]
    if layer == "fc6":
      return seen * self.pool5_size ** 2
    return seen

  def forward_flops(self) -> int:
    """Multiply-adds ×2 of one image's forward pass through the convolutions and matmuls
    (the paper network: 1.45 GFLOP). A training step costs about three times this."""
    sizes = {"conv1": self.conv1_size, "conv2": self._pool(self.conv1_size)}
    sizes.update(dict.fromkeys(("conv3", "conv4", "conv5"), self._pool(sizes["conv2"])))
    sizes.update({CONV6: self.pool5_size, "fc6": 1, "fc7": 1, "fc8": 1})
    return sum(2 * self.columns * sizes[n] ** 2 * math.prod(self.kernel_shape(n))
               for n in self.layers)

  def conv_kernel(self, layer: str) -> int:
    return 3 if layer == CONV6 else self.conv_kernels[CONV_LAYERS.index(layer)]

  def kernel_shape(self, layer: str) -> tuple[int, ...]:
    if layer in CONV_LAYERS + (CONV6,):
      k = self.conv_kernel(layer)
      return (k, k, self.in_features(layer), self.widths[layer])
    return (self.in_features(layer), self.widths[layer])
