r"""Trained weights from elsewhere: BVLC Caffe's `bvlc_alexnet.caffemodel`, the one public
AlexNet with the paper's two columns, as a workdir of this project.

    python -m alexnet_jax.convert caffe --caffemodel=bvlc_alexnet.caffemodel \
        [--mean=imagenet_mean.binaryproto] --workdir=DIR

reads the model's binary protobuf (`NetParameter`, in the V1 `layers` or the V2 `layer`
encoding; Caffe is not needed: a small wire-format reader is below) and writes DIR as training
would: an Orbax checkpoint of the parameter tree (`checkpoints/0/`), its config
(`configs/caffe_alexnet.py`: Caffe's network and pre-processing), class names, and the data
statistics (Caffe's 256x256 mean image when given, else its per-channel mean). `predict`,
`evaluate`, `features`, `visualize kernels` and fine-tuning (`init_from.workdir`) then use DIR
like any trained workdir.

The conversion, layer by layer: Caffe's OIHW kernels to HWIO; each grouped layer's two halves
(conv2, conv4, conv5: `group: 2`) and each layer's output halves to the two columns; conv1's
input channels from Caffe's BGR to RGB (the converted network reads RGB, as the pipeline
delivers; the mean image is turned the same way); fc6's rows from Caffe's C x H x W flattening of
pool5 (the two groups' channels in order) to this network's H x W x C; the inner products'
(out, in) matrices transposed; fc8's input halves to the columns' partial logits.
"""

from __future__ import annotations

import os
import struct

import numpy as np
from absl import logging

from alexnet_jax import checkpoint, checkpoint_meta, cli, configuration, model_spec
from alexnet_jax import workdir as workdir_lib
from alexnet_jax.data.stats import Stats
from alexnet_jax.errors import UserError

CAFFE_LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")
# The per-channel mean (BGR) Caffe's examples subtract when no mean image is given.
CAFFE_CHANNEL_MEAN_BGR = (104.0, 117.0, 123.0)


# ----------------------------------------------------------------------------- wire format

class _Truncated(ValueError):
  pass


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
  result, shift = 0, 0
  while True:
    if pos >= len(buf):
      raise _Truncated("the file ends inside a number")
    byte = buf[pos]
    pos += 1
    result |= (byte & 0x7F) << shift
    if not byte & 0x80:
      return result, pos
    shift += 7
    if shift > 63:
      raise ValueError("a number longer than 10 bytes")


def _fields(buf: bytes):
  """(field number, wire type, value) of a protobuf message: value is an int (varint, fixed)
  or the bytes of a length-delimited field."""
  pos = 0
  while pos < len(buf):
    key, pos = _varint(buf, pos)
    number, kind = key >> 3, key & 7
    if number == 0:
      raise ValueError("field number 0")
    if kind == 0:
      value, pos = _varint(buf, pos)
    elif kind == 1:
      if pos + 8 > len(buf):
        raise _Truncated("the file ends inside a 64-bit field")
      value, pos = buf[pos:pos + 8], pos + 8
    elif kind == 2:
      length, pos = _varint(buf, pos)
      if pos + length > len(buf):
        raise _Truncated("the file ends inside a field")
      value, pos = buf[pos:pos + length], pos + length
    elif kind == 5:
      if pos + 4 > len(buf):
        raise _Truncated("the file ends inside a 32-bit field")
      value, pos = buf[pos:pos + 4], pos + 4
    else:
      raise ValueError(f"wire type {kind}")
    yield number, kind, value


def _floats(kind: int, value) -> list[float]:
  if kind == 2:  # packed
    if len(value) % 4:
      raise ValueError("a packed float array of odd length")
    return list(struct.unpack(f"<{len(value) // 4}f", value))
  if kind == 5:
    return [struct.unpack("<f", value)[0]]
  raise ValueError("a float field of another wire type")


def _ints(kind: int, value) -> list[int]:
  if kind == 0:
    return [value]
  if kind == 2:  # packed varints
    out, pos = [], 0
    while pos < len(value):
      v, pos = _varint(value, pos)
      out.append(v)
    return out
  raise ValueError("an integer field of another wire type")


def read_blob(buf: bytes) -> np.ndarray:
  """A Caffe `BlobProto` as a float32 array of its shape (`shape` when present, else the
  legacy num/channels/height/width)."""
  legacy = {1: 1, 2: 1, 3: 1, 4: 1}
  dims, data, double = None, [], []
  for number, kind, value in _fields(buf):
    if number in legacy and kind == 0:
      legacy[number] = value
    elif number == 5:
      data += _floats(kind, value)
    elif number == 8:
      double += (list(struct.unpack(f"<{len(value) // 8}d", value)) if kind == 2
                 else [struct.unpack("<d", value)[0]])
    elif number == 7:
      dims = []
      for n, k, v in _fields(value):
        if n == 1:
          dims += _ints(k, v)
  values = np.asarray(data or double, np.float32)
  shape = tuple(dims) if dims is not None else tuple(legacy[k] for k in (1, 2, 3, 4))
  if values.size != int(np.prod(shape)):
    raise ValueError(f"a blob of shape {shape} holds {values.size} values")
  return values.reshape(shape)


def read_caffemodel(path: str) -> dict[str, list[np.ndarray]]:
  """{layer name: its blobs} of the layers with parameters in a `.caffemodel`."""
  try:
    with open(path, "rb") as f:
      buf = f.read()
  except OSError as e:
    raise UserError(f"cannot read {path}: {e.strerror}") from None
  layers = {}
  try:
    for number, kind, value in _fields(buf):
      if kind != 2 or number not in (2, 100):  # V1 `layers`, V2 `layer`
        continue
      name_field, blob_field = (4, 6) if number == 2 else (1, 7)
      name, blobs = None, []
      for n, k, v in _fields(value):
        if n == name_field and k == 2:
          name = v.decode("utf-8", "replace")
        elif n == blob_field and k == 2:
          blobs.append(read_blob(v))
      if name is not None and blobs:
        layers[name] = blobs
  except _Truncated as e:
    raise UserError(f"{path} is truncated ({e}): download it again") from None
  except (ValueError, struct.error) as e:
    raise UserError(f"{path} is not a Caffe model ({e})") from None
  if not layers:
    raise UserError(f"{path} is not a Caffe model with weights (no layer with blobs in it)")
  return layers


# ----------------------------------------------------------------------------- the conversion

def _expect(layer: str, blob: np.ndarray, shape: tuple[int, ...], what: str) -> np.ndarray:
  """`blob` as `shape`; legacy blobs are 4-d (num, channels, height, width) with 1s in front of
  a bias or a matrix, dropped here."""
  squeezed = blob
  if blob.ndim != len(shape):
    squeezed = blob.reshape([d for d in blob.shape if d != 1] or [1])
  if squeezed.shape != shape:
    raise UserError(f"layer {layer}: the {what} has shape {tuple(blob.shape)}, the config's "
                    f"network needs {shape} (another network than configs/caffe_alexnet.py?)")
  return squeezed


def caffe_to_params(layers: dict[str, list[np.ndarray]], spec: model_spec.AlexNetSpec) -> dict:
  """This project's parameter tree {layer: {'kernel', 'bias'}} (numpy, float32) from Caffe's
  blobs, for the network `spec` describes (checked blob by blob)."""
  missing = [n for n in CAFFE_LAYERS if n not in layers]
  if missing:
    raise UserError(f"the Caffe model has no layer {missing[0]} (layers: "
                    f"{', '.join(sorted(layers))})")
  if spec.columns != 2 or spec.extra_conv6 or spec.removed_conv:
    raise UserError("the Caffe network has two columns (groups), five convolutional layers "
                    "and no conv6")
  w = spec.widths
  params = {}
  for name in model_spec.CONV_LAYERS:
    blobs = layers[name]
    if len(blobs) != 2:
      raise UserError(f"layer {name}: {len(blobs)} blobs, expected a kernel and a bias")
    out, cin, k = 2 * w[name], spec.in_features(name), spec.conv_kernel(name)
    kernel = _expect(name, blobs[0], (out, cin, k, k), "kernel")
    bias = _expect(name, blobs[1], (out,), "bias")
    if name == "conv1":
      kernel = kernel[:, ::-1]  # BGR -> RGB input channels
    hwio = kernel.transpose(2, 3, 1, 0)  # OIHW -> HWIO
    params[name] = {"kernel": np.stack([hwio[..., c * w[name]:(c + 1) * w[name]]
                                        for c in range(2)]),
                    "bias": bias.reshape(2, w[name])}
  side, channels = spec.pool5_size, 2 * w["conv5"]
  for name in ("fc6", "fc7"):
    blobs = layers[name]
    out, fan_in = 2 * w[name], spec.in_features(name)
    matrix = _expect(name, blobs[0], (out, fan_in), "weight matrix")
    bias = _expect(name, blobs[1], (out,), "bias")
    if name == "fc6":  # Caffe flattens pool5 as C x H x W, this network as H x W x C
      matrix = matrix.reshape(out, channels, side, side).transpose(0, 2, 3, 1).reshape(out, -1)
    joined = matrix.T  # [in, out]
    params[name] = {"kernel": np.stack([joined[:, c * w[name]:(c + 1) * w[name]]
                                        for c in range(2)]),
                    "bias": bias.reshape(2, w[name])}
  blobs = layers["fc8"]
  matrix = _expect("fc8", blobs[0], (spec.num_classes, 2 * w["fc7"]), "weight matrix")
  params["fc8"] = {"kernel": matrix.T.reshape(2, w["fc7"], spec.num_classes),
                   "bias": _expect("fc8", blobs[1], (spec.num_classes,), "bias")}
  return {n: {k: np.ascontiguousarray(v, np.float32) for k, v in p.items()}
          for n, p in params.items()}


def read_mean(path: str, size: int) -> np.ndarray:
  """Caffe's mean image (`.binaryproto`, 1 x 3 x S x S, BGR) as float32 [size, size, 3] RGB."""
  try:
    with open(path, "rb") as f:
      blob = read_blob(f.read())
  except OSError as e:
    raise UserError(f"cannot read {path}: {e.strerror}") from None
  except (ValueError, struct.error) as e:
    raise UserError(f"{path} is not a Caffe mean image ({e})") from None
  image = blob.reshape(blob.shape[-3:]) if blob.ndim >= 3 else None
  if image is None or image.shape != (3, size, size):
    raise UserError(f"{path} holds a blob of shape {tuple(blob.shape)}, not 1 x 3 x {size} x "
                    f"{size}")
  if not np.isfinite(image).all():
    raise UserError(f"{path} holds a mean image that is not finite (NaN or infinity)")
  return np.ascontiguousarray(image[::-1].transpose(1, 2, 0), np.float32)


def imagenet_class_names(count: int) -> tuple[str, ...]:
  """ILSVRC-2012's WordNet ids in Caffe's order (sorted, as its synsets.txt), from the label
  file tensorflow-datasets ships; numbers when it is not there."""
  import importlib.util

  spec = importlib.util.find_spec("tensorflow_datasets")
  if spec and spec.submodule_search_locations:
    path = os.path.join(spec.submodule_search_locations[0], "datasets", "imagenet2012",
                        "labels.txt")
    if os.path.exists(path):
      with open(path, encoding="utf-8") as f:
        names = tuple(line.strip() for line in f if line.strip())
      if len(names) == count:
        return names
  return tuple(str(i) for i in range(count))


def convert_caffe(caffemodel: str, workdir: str, config, *, mean: str = "") -> str:
  """Writes `workdir` from a Caffe AlexNet for `config` (configs/caffe_alexnet.py or a
  narrowed variant of it); returns the checkpoint's directory."""
  spec = model_spec.AlexNetSpec.from_config(config.model)
  params = caffe_to_params(read_caffemodel(caffemodel), spec)
  size = int(config.data.image_size)
  if mean:
    mean_image = read_mean(mean, size)
  else:
    rgb = np.asarray(CAFFE_CHANNEL_MEAN_BGR[::-1], np.float32)
    mean_image = np.broadcast_to(rgb, (size, size, 3)).copy()
  step_dir = write_workdir(workdir, config, params, mean_image, converted_from=caffemodel)
  logging.info("converted %s into %s", caffemodel, step_dir)
  return step_dir


def write_workdir(workdir: str, config, params: dict, mean_image: np.ndarray, *,
                  converted_from: str) -> str:
  """A workdir that inference, export and fine-tuning restore, from the network `config`
  describes with weights made elsewhere (`params` as the model's, each layer's kernel and bias
  stacked over the columns) and the mean image they expect; ImageNet's PCA lighting. Returns
  the checkpoint's directory (a grey network: the first component alone)."""
  spec = model_spec.AlexNetSpec.from_config(config.model)
  defaults = Stats.imagenet_defaults(int(config.data.image_size))
  channels = mean_image.shape[-1]
  stats = Stats(mean_image, defaults.eigval[:channels],
                defaults.eigvec if channels == 3 else np.ones((1, 1), np.float32), 0)
  names = (imagenet_class_names(spec.num_classes) if config.data.name == "imagenet2012"
           else tuple(str(i) for i in range(spec.num_classes)))
  meta = checkpoint_meta.build(0, epoch=0.0, config=config, processes=1, class_names=names,
                               converted_from=converted_from)
  step_dir = checkpoint.write_converted(workdir, params, meta)
  stats.save(workdir_lib.RunDir(workdir).stats)
  return step_dir


def main(argv):
  from absl import flags

  FLAGS = flags.FLAGS
  if argv[1:] != ["caffe"]:
    raise UserError("usage: python -m alexnet_jax.convert caffe --caffemodel=PATH "
                    "[--mean=imagenet_mean.binaryproto] --workdir=DIR")
  step_dir = convert_caffe(FLAGS.caffemodel, FLAGS.workdir, FLAGS.config, mean=FLAGS.mean)
  print(f"written: {step_dir} (predict: python -m alexnet_jax.predict --workdir={FLAGS.workdir} "
        "IMAGE...)")


if __name__ == "__main__":
  from absl import flags
  from ml_collections import config_flags

  flags.DEFINE_string("caffemodel", None, "the .caffemodel file")
  flags.DEFINE_string("mean", "", "Caffe's mean image (.binaryproto); default: its channel mean")
  flags.DEFINE_string("workdir", None, "the workdir to write")
  config_flags.DEFINE_config_file("config", configuration.resolve("configs/caffe_alexnet.py"),
                                  "the network the weights are for", lock_config=True)
  cli.run(main, required_flags=("caffemodel", "workdir"), positional=True)
