"""Caffe's bvlc_alexnet converted (`python -m alexnet_jax.convert caffe`): a narrowed model with
random weights written in both protobuf encodings, its logits against an independent float64
NumPy implementation of Caffe's forward pass on the same BGR input."""

import math
import os
import struct

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from alexnet_jax import checkpoint_params, convert, inference, models
from alexnet_jax.data.stats import Stats
from alexnet_jax.errors import UserError
from conftest import load_config

# A narrowed bvlc_alexnet: the real layer names, structure and groups, smaller widths and input
# (99x99: conv1 23x23, pool1 11, pool2 5, pool5 2x2, so fc6's flattening order matters).
NARROW = ["model.input_size=99", "model.conv_features=(8,16,24,24,16)",
          "model.fc_features=(32,32)", "model.num_classes=10", "data.image_size=110",
          "data.name=synthetic"]
GROUPS = {"conv1": 1, "conv2": 2, "conv3": 1, "conv4": 2, "conv5": 2}
PADS = {"conv1": 0, "conv2": 2, "conv3": 1, "conv4": 1, "conv5": 1}


# ----------------------------------------------------------------------------- protobuf writer

def _varint(n):
  out = bytearray()
  while True:
    byte, n = n & 0x7F, n >> 7
    out.append(byte | (0x80 if n else 0))
    if not n:
      return bytes(out)


def _field(number, kind, payload):
  key = _varint(number << 3 | kind)
  if kind == 2:
    return key + _varint(len(payload)) + payload
  return key + payload


def _blob(array, v1):
  """A BlobProto: V1 files use num/channels/height/width and unpacked floats here, V2 ones a
  BlobShape and packed floats."""
  array = np.asarray(array, np.float32)
  if v1:
    dims = (1,) * (4 - array.ndim) + array.shape
    out = b"".join(_field(n, 0, _varint(d)) for n, d in zip((1, 2, 3, 4), dims))
    return out + b"".join(_field(5, 5, struct.pack("<f", v)) for v in array.reshape(-1))
  shape = _field(1, 2, b"".join(_varint(d) for d in array.shape))
  return _field(7, 2, shape) + _field(5, 2, array.astype("<f4").tobytes())


def write_caffemodel(path, weights, v1):
  """NetParameter with one layer per (name, [blobs]); also a data and a relu layer without
  blobs, as real files have."""
  layers = [("data", []), *weights.items(), ("relu1", [])]
  body = _field(1, 2, b"AlexNet")
  for name, blobs in layers:
    if v1:  # V1LayerParameter: name 4, type 5 (enum), blobs 6; NetParameter.layers = 2
      layer = _field(4, 2, name.encode()) + _field(5, 0, _varint(4 if "conv" in name else 14))
      layer += b"".join(_field(6, 2, _blob(b, True)) for b in blobs)
      body += _field(2, 2, layer)
    else:  # LayerParameter: name 1, type 2 (string), blobs 7; NetParameter.layer = 100
      kind = b"Convolution" if "conv" in name else b"InnerProduct"
      layer = _field(1, 2, name.encode()) + _field(2, 2, kind)
      layer += b"".join(_field(7, 2, _blob(b, False)) for b in blobs)
      body += _field(100, 2, layer)
  with open(path, "wb") as f:
    f.write(body)


def random_caffe_weights(spec, seed=0):
  """Caffe-layout blobs: conv OIHW (in = in/group), inner products (out, in), biases (out)."""
  rng = np.random.default_rng(seed)
  w, c = spec.widths, spec.columns
  weights, cin = {}, spec.in_channels
  for name in ("conv1", "conv2", "conv3", "conv4", "conv5"):
    out, k = c * w[name], spec.conv_kernel(name)
    fan_in = cin // GROUPS[name]
    weights[name] = [rng.normal(0, 1 / math.sqrt(fan_in * k * k), (out, fan_in, k, k)),
                     rng.normal(0, 0.1, out)]
    cin = out
  fan_in = cin * spec.pool5_size ** 2
  for name in ("fc6", "fc7"):
    out = c * w[name]
    weights[name] = [rng.normal(0, 1 / math.sqrt(fan_in), (out, fan_in)), rng.normal(0, 0.1, out)]
    fan_in = out
  weights["fc8"] = [rng.normal(0, 1 / math.sqrt(fan_in), (spec.num_classes, fan_in)),
                    rng.normal(0, 0.1, spec.num_classes)]
  return weights


def caffe_workdir(path: str, tmp_path, overrides=()) -> str:
  """A workdir converted from a narrowed bvlc_alexnet with random weights (`NARROW` and
  `overrides`), its caffemodel written in `tmp_path`; `path`."""
  from alexnet_jax import model_spec

  config = load_config("caffe_alexnet", "", [*NARROW, *overrides])
  spec = model_spec.AlexNetSpec.from_config(config.model)
  caffemodel = str(tmp_path / "narrow.caffemodel")
  write_caffemodel(caffemodel, random_caffe_weights(spec, seed=4), v1=False)
  convert.convert_caffe(caffemodel, path, config)
  return path


# ----------------------------------------------------------------------------- Caffe's forward

def _conv(x, weight, bias, stride, pad, group):
  n, cin, h, wd = x.shape
  out, cg, k, _ = weight.shape
  x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
  oh, ow = (h + 2 * pad - k) // stride + 1, (wd + 2 * pad - k) // stride + 1
  y = np.zeros((n, out, oh, ow))
  per = out // group
  for g in range(group):
    xs = x[:, g * cg:(g + 1) * cg]
    ws = weight[g * per:(g + 1) * per]
    for i in range(k):
      for j in range(k):
        patch = xs[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride]
        y[:, g * per:(g + 1) * per] += np.einsum("nchw,oc->nohw", patch, ws[:, :, i, j])
  return y + bias[None, :, None, None]


def _lrn(x, size=5, alpha=1e-4, beta=0.75, k=1.0):
  """Caffe's LRN, ACROSS_CHANNELS: x / (k + alpha/size * Σ x² over the channel window)^beta,
  the window zero-padded at the first and last channels, over all channels of the layer."""
  sq = np.pad(x ** 2, ((0, 0), (size // 2, size // 2), (0, 0), (0, 0)))
  window = sum(sq[:, i:i + x.shape[1]] for i in range(size))
  return x / (k + alpha / size * window) ** beta


def _pool(x, size=3, stride=2):
  """Caffe's max pooling: output size rounded up, windows clipped at the edge."""
  n, c, h, w = x.shape
  oh, ow = (int(math.ceil((h - size) / stride)) + 1, int(math.ceil((w - size) / stride)) + 1)
  y = np.full((n, c, oh, ow), -np.inf)
  for i in range(oh):
    for j in range(ow):
      y[:, :, i, j] = x[:, :, i * stride:i * stride + size,
                        j * stride:j * stride + size].max((2, 3))
  return y


def caffe_forward(bgr, weights):
  """bvlc_alexnet's deploy net in float64: conv1 relu1 norm1 pool1 conv2 relu2 norm2 pool2
  conv3 relu3 conv4 relu4 conv5 relu5 pool5 fc6 relu6 (drop6: identity) fc7 relu7 fc8."""
  relu = lambda v: np.maximum(v, 0.0)
  w = {n: [np.asarray(b, np.float64) for b in blobs] for n, blobs in weights.items()}
  x = _pool(_lrn(relu(_conv(bgr, *w["conv1"], 4, 0, 1))))
  x = _pool(_lrn(relu(_conv(x, *w["conv2"], 1, 2, 2))))
  x = relu(_conv(x, *w["conv3"], 1, 1, 1))
  x = relu(_conv(x, *w["conv4"], 1, 1, 2))
  x = _pool(relu(_conv(x, *w["conv5"], 1, 1, 2)))
  x = x.reshape(len(x), -1)
  x = relu(x @ w["fc6"][0].T + w["fc6"][1])
  x = relu(x @ w["fc7"][0].T + w["fc7"][1])
  return x @ w["fc8"][0].T + w["fc8"][1]


# ----------------------------------------------------------------------------- tests

@pytest.mark.parametrize("encoding", ["V1 layers", "V2 layer"])
def test_converted_logits_equal_caffes_forward(tmp_path, encoding):
  from alexnet_jax import model_spec

  config = load_config("caffe_alexnet", "", NARROW)
  spec = model_spec.AlexNetSpec.from_config(config.model)
  weights = random_caffe_weights(spec)
  path = str(tmp_path / "narrow.caffemodel")
  write_caffemodel(path, weights, v1=encoding.startswith("V1"))
  mean_bgr = np.random.default_rng(1).uniform(90, 130, (3, 110, 110))
  mean_path = str(tmp_path / "mean.binaryproto")
  with open(mean_path, "wb") as f:
    f.write(_blob(mean_bgr[None], v1=True))
  workdir = str(tmp_path / "converted")
  convert.convert_caffe(path, workdir, config, mean=mean_path)

  trained = inference.load(workdir)
  np.testing.assert_allclose(trained.stats.mean, mean_bgr[::-1].transpose(1, 2, 0), rtol=1e-6)
  assert trained.params["conv1"]["kernel"].shape == (2, 11, 11, 3, 4)
  bgr = np.random.default_rng(2).normal(0, 50, (8, 3, 99, 99))  # N, C (BGR), H, W
  want = caffe_forward(bgr, weights)
  model = nnx.merge(trained.graphdef, trained.params)
  got = np.asarray(model(jnp.asarray(bgr[:, ::-1].transpose(0, 2, 3, 1), jnp.float32)))
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_the_full_bvlc_alexnet_shapes_are_the_configs():
  from alexnet_jax import model_spec

  spec = model_spec.AlexNetSpec.from_config(load_config("caffe_alexnet").model)
  assert (spec.input_size, spec.conv1_padding, spec.conv1_size, spec.pool5_size) == (227, 0, 55, 6)
  assert spec.in_features("fc6") == 9216 and spec.lrn_across_columns
  shapes = {n: [b.shape for b in blobs] for n, blobs in random_caffe_weights(spec).items()}
  assert shapes["conv2"][0] == (256, 48, 5, 5) and shapes["conv3"][0] == (384, 256, 3, 3)
  assert shapes["fc6"][0] == (4096, 9216) and shapes["fc8"][0] == (1000, 4096)


def test_bad_caffe_files_are_one_line_errors(tmp_path):
  from alexnet_jax import model_spec

  config = load_config("caffe_alexnet", "", NARROW)
  spec = model_spec.AlexNetSpec.from_config(config.model)
  good = str(tmp_path / "good.caffemodel")
  write_caffemodel(good, random_caffe_weights(spec), v1=False)
  noise = tmp_path / "noise.caffemodel"
  noise.write_bytes(np.random.default_rng(0).bytes(5000))
  with pytest.raises(UserError, match="is not a Caffe model"):
    convert.convert_caffe(str(noise), str(tmp_path / "w1"), config)
  cut = tmp_path / "cut.caffemodel"
  cut.write_bytes(open(good, "rb").read()[:-3000])
  with pytest.raises(UserError, match="is truncated"):
    convert.convert_caffe(str(cut), str(tmp_path / "w2"), config)
  other = load_config("caffe_alexnet", "", [*NARROW[:1], "model.conv_features=(8,20,24,24,16)",
                                            *NARROW[2:]])
  with pytest.raises(UserError, match=r"layer conv2: the kernel has shape \(16, 4, 5, 5\), the "
                                      r"config's network needs \(20, 4, 5, 5\)"):
    convert.convert_caffe(good, str(tmp_path / "w3"), other)
  with pytest.raises(UserError, match="cannot read"):
    convert.convert_caffe(str(tmp_path / "absent.caffemodel"), str(tmp_path / "w4"), config)
  # A layer missing, a layer with one blob, a mean image absent or not a blob. Mutations:
  # each check dropped (a KeyError, an IndexError, a traceback) -> red.
  weights = random_caffe_weights(spec)
  write_caffemodel(tmp_path / "no_fc8.caffemodel", {n: b for n, b in weights.items()
                                                    if n != "fc8"}, v1=False)
  with pytest.raises(UserError, match=r"^the Caffe model has no layer fc8 \(layers: conv1, "
                                      r"conv2, conv3, conv4, conv5, fc6, fc7\)$"):
    convert.convert_caffe(str(tmp_path / "no_fc8.caffemodel"), str(tmp_path / "w5"), config)
  write_caffemodel(tmp_path / "one.caffemodel", {**weights, "conv2": weights["conv2"][:1]},
                   v1=False)
  with pytest.raises(UserError, match="^layer conv2: 1 blobs, expected a kernel and a bias$"):
    convert.convert_caffe(str(tmp_path / "one.caffemodel"), str(tmp_path / "w6"), config)
  with pytest.raises(UserError, match=f"^cannot read {tmp_path}/absent.binaryproto: No such "
                                      "file or directory$"):
    convert.read_mean(str(tmp_path / "absent.binaryproto"), 5)
  with pytest.raises(UserError, match=f"^{noise} is not a Caffe mean image"):
    convert.read_mean(str(noise), 5)


def _layer(*blob_fields):
  """A V2 file of one layer 'conv1' whose one blob holds `blob_fields`."""
  return _field(100, 2, _field(1, 2, b"conv1") + _field(7, 2, b"".join(blob_fields)))


@pytest.mark.parametrize("body,message", [
    (b"\x80", "is truncated .the file ends inside a number.: download it again"),
    (b"\xff" * 10 + b"\x01", "is not a Caffe model .a number longer than 10 bytes."),
    (b"\x00", "is not a Caffe model .field number 0."),
    (_field(1, 1, b"1234567"), "is truncated .the file ends inside a 64-bit field.: download "
                               "it again"),
    (_field(1, 5, b"123"), "is truncated .the file ends inside a 32-bit field.: download it "
                           "again"),
    (_field(1, 2, b"abc")[:-1], "is truncated .the file ends inside a field.: download it "
                                "again"),
    (_field(1, 3, b""), "is not a Caffe model .wire type 3."),
    (_layer(_field(5, 2, b"12345")), "is not a Caffe model .a packed float array of odd length."),
    (_layer(_field(5, 0, _varint(7))), "is not a Caffe model .a float field of another wire "
                                       "type."),
    (_layer(_field(7, 2, _field(1, 5, b"1234"))), "is not a Caffe model .an integer field of "
                                                  "another wire type."),
], ids=["varint cut", "varint too long", "field 0", "fixed64 cut", "fixed32 cut", "bytes cut",
        "wire type 3", "odd floats", "float varint", "int fixed32"])
def test_each_fault_of_the_wire_format_is_one_line(tmp_path, body, message):
  """Every refusal of the protobuf reader, through `read_caffemodel` as convert reads a file.
  Mutations: each check dropped (a traceback, or a file read as something it is not) -> red;
  a 10-byte number refused -> red (the fault is the eleventh byte)."""
  (tmp_path / "m.caffemodel").write_bytes(body)
  with pytest.raises(UserError, match=f"^{tmp_path}/m.caffemodel {message}$"):
    convert.read_caffemodel(str(tmp_path / "m.caffemodel"))


def test_a_ten_byte_number_is_read():
  """The longest varint protobuf writes (a negative int64). Mutation: `shift > 63` -> `> 56`
  -> red."""
  assert convert._varint(b"\xff" * 9 + b"\x01", 0) == (2 ** 64 - 1, 10)


@pytest.mark.slow
def test_a_converted_workdir_predicts_and_fine_tunes_like_a_trained_one(tmp_path, capsys):
  from PIL import Image

  from alexnet_jax import model_spec, predict, train

  config = load_config("caffe_alexnet", "", NARROW)
  spec = model_spec.AlexNetSpec.from_config(config.model)
  path = str(tmp_path / "narrow.caffemodel")
  weights = random_caffe_weights(spec)
  write_caffemodel(path, weights, v1=False)
  workdir = str(tmp_path / "converted")
  convert.convert_caffe(path, workdir, config)
  # Without --mean, the channel mean Caffe's examples subtract (`mean_value: 104 117 123`, BGR)
  # in RGB at every pixel (mutation: any of the three doubled -> red).
  mean = inference.load(workdir).stats.mean
  assert mean.shape == (110, 110, 3) and (mean == np.float32([123, 117, 104])).all()
  with pytest.raises(UserError, match="holds a run already"):
    convert.convert_caffe(path, workdir, config)
  # A trained workdir that kept only best/ (and its statistics) is refused as well: converting
  # into it overwrote data_stats.npz and left its model unusable. Mutation: the check back to
  # checkpoints/ alone -> red.
  import shutil

  kept_best = tmp_path / "kept_best"
  kept_best.mkdir()
  shutil.copytree(f"{workdir}/checkpoints", kept_best / "best")
  shutil.copy(f"{workdir}/data_stats.npz", kept_best / "data_stats.npz")
  before = (kept_best / "data_stats.npz").read_bytes()
  with pytest.raises(UserError, match=r"holds a run already \(best, data_stats.npz\)"):
    convert.convert_caffe(path, str(kept_best), config)
  assert (kept_best / "data_stats.npz").read_bytes() == before
  photo = tmp_path / "wide.png"  # 3:1, squashed to 110x110 as Caffe's database was
  Image.fromarray(np.random.default_rng(3).integers(0, 255, (60, 180, 3), np.uint8)).save(photo)
  assert predict.predict_files(workdir, [str(photo)]) == 0
  assert capsys.readouterr().out.count("\n  0.") == 5
  tune = load_config("caffe_alexnet", "", [*NARROW[:3], "model.num_classes=3",
                                           "data.image_size=110", "data.name=synthetic",
                                           "data.batch_size=16", "data.eval_batch_size=16",
                                           "data.synthetic_train_size=32",
                                           "data.synthetic_eval_size=16", "num_epochs=0.5",
                                           "num_steps=0", "schedule.kind=constant",
                                           "optimizer.learning_rate=1e-9",
                                           f"init_from.workdir={workdir}"])
  train.train_and_evaluate(tune, str(tmp_path / "tuned"))
  tuned = inference.load(str(tmp_path / "tuned"))
  source = inference.load(workdir)
  np.testing.assert_allclose(np.asarray(tuned.params["conv2"]["kernel"]),
                             np.asarray(source.params["conv2"]["kernel"]), atol=1e-6)


@pytest.mark.parametrize("channels", [3, 1])
def test_weights_made_elsewhere_are_step_0_of_one_process_with_imagenets_lighting(tmp_path,
                                                                                  channels):
  """A workdir written from weights made elsewhere: checkpoint 0 at epoch 0, its input
  position of one process, its origin named; ImageNet's published PCA lighting (a grey
  network: the first component's eigenvalue and a unit vector), counted as defaults, not as
  measured. Mutations: the meta's step 1, epoch 1.0 or processes 2; the grey eigvector
  (2, 1) or (1, 2); the count 1 -> red."""
  config = load_config("tiny", "", [f"model.in_channels={channels}", "data.name=synthetic"])
  _, abstract = models.abstract_model(config.model)
  params = jax.tree.map(lambda a: np.zeros(a.shape, np.float32), abstract)
  workdir = str(tmp_path / "w")
  mean = np.full((36, 36, channels), 100, np.float32)
  step_dir = convert.write_workdir(workdir, config, params, mean, converted_from="model.bin")
  path, meta = checkpoint_params.newest_meta(workdir)
  assert path == step_dir and step_dir.endswith("checkpoints/0")
  assert (meta["step"], meta["epoch"], meta["processes"]) == (0, 0.0, 1)
  assert meta["converted_from"] == os.path.abspath("model.bin")
  stats, published = Stats.load(f"{workdir}/data_stats.npz"), Stats.imagenet_defaults(36)
  np.testing.assert_array_equal(stats.mean, mean)
  np.testing.assert_array_equal(stats.eigval, published.eigval[:channels])
  np.testing.assert_array_equal(stats.eigvec,
                                published.eigvec if channels == 3 else np.ones((1, 1)))
  assert stats.count == 0


def test_squash_resizes_ignoring_the_aspect_ratio():
  import io

  from PIL import Image

  from alexnet_jax.data import images

  wide = np.zeros((60, 180, 3), np.uint8)
  wide[:, :60] = 255  # the left third white
  for fmt in ("PNG", "JPEG"):
    buf = io.BytesIO()
    Image.fromarray(wide).save(buf, fmt)
    squashed = images.decode(buf.getvalue(), 30, 3, "squash").astype(int)
    cropped = images.decode(buf.getvalue(), 30, 3).astype(int)
    assert squashed[:, :8].mean() > 240 and squashed[:, 12:].mean() < 15  # all of it, squeezed
    assert cropped.mean() < 15  # §2: the central square only, all black


def test_a_mean_image_that_is_not_finite_is_refused(tmp_path):
  """A caffemodel's mean of NaN converted, and predict printed NaN probabilities with exit 0.
  Mutation: the finiteness check in read_mean dropped -> red."""
  size = 6
  blob = np.full((1, 3, size, size), np.nan, np.float32)
  shape = _field(7, 2, _field(1, 2, b"".join(_varint(d) for d in blob.shape)))
  (tmp_path / "mean.binaryproto").write_bytes(shape + _field(5, 2, blob.astype("<f4").tobytes()))
  with pytest.raises(UserError, match="not finite"):
    convert.read_mean(str(tmp_path / "mean.binaryproto"), size)


def test_blobs_read_alike_in_every_encoding_caffe_writes():
  """A BlobProto as Caffe writes it: legacy num/channels/height/width with single floats, a
  BlobShape with packed floats, and a Blob<double>'s `double_data`, packed or one field per
  value (the last 64-bit field ending the buffer). Mutations: the 64-bit field's bound `>` ->
  `>=` (the last value called truncated) -> red; packed and unpacked doubles swapped -> red."""
  array = np.random.default_rng(4).normal(size=(2, 3, 4)).astype(np.float32)
  shape = _field(7, 2, _field(1, 2, b"".join(_varint(d) for d in array.shape)))
  flat = array.reshape(-1).astype(np.float64)
  legacy_dims = b"".join(_field(n, 0, _varint(d)) for n, d in zip((2, 3, 4), array.shape))
  encodings = {
      "legacy floats": _blob(array, v1=True),
      # `num` left out counts 1 (mutation: a legacy default 2 -> red).
      "legacy, num left out": legacy_dims + _field(5, 2, array.astype("<f4").tobytes()),
      # dims one field each, not packed (mutation: `_ints` reading kind 1 for 0 -> red).
      "unpacked dims": _field(7, 2, b"".join(_field(1, 0, _varint(d)) for d in array.shape))
                       + _field(5, 2, array.astype("<f4").tobytes()),
      "packed floats": _blob(array, v1=False),
      "packed doubles": shape + _field(8, 2, flat.astype("<f8").tobytes()),
      "doubles": shape + b"".join(_field(8, 1, struct.pack("<d", v)) for v in flat)}
  for name, buf in encodings.items():
    got = convert.read_blob(buf)
    want = array[None] if name.startswith("legacy") else array  # legacy: 1 x 2 x 3 x 4
    assert got.shape == want.shape, name
    np.testing.assert_array_equal(got, want, err_msg=name)
  with pytest.raises(ValueError, match=r"a blob of shape \(2, 3, 4\) holds 23 values"):
    convert.read_blob(shape + _field(5, 2, flat[:-1].astype("<f4").tobytes()))


def test_mean_images_of_three_or_four_dimensions_are_read_and_others_refused(tmp_path):
  """Caffe's mean.binaryproto is 1 x 3 x S x S (legacy) or a 3 x S x S BlobShape; a blob of
  another rank or size is one line. Mutations: rank `>= 3` -> `> 3` (the 3-d mean refused)
  -> red; `image is None or` -> `and` (a 2-d blob a TypeError) -> red."""
  size = 5
  bgr = np.random.default_rng(6).uniform(0, 255, (3, size, size)).astype(np.float32)
  rgb = bgr[::-1].transpose(1, 2, 0)
  for name, blob in (("legacy.binaryproto", _blob(bgr[None], v1=True)),
                     ("shape.binaryproto", _blob(bgr, v1=False))):
    (tmp_path / name).write_bytes(blob)
    np.testing.assert_array_equal(convert.read_mean(str(tmp_path / name), size), rgb)
  for blob, shown in ((bgr[0], r"\(5, 5\)"), (bgr[:, :4], r"\(3, 4, 5\)")):
    (tmp_path / "bad.binaryproto").write_bytes(_blob(blob, v1=False))
    with pytest.raises(UserError, match=rf"holds a blob of shape {shown}, not 1 x 3 x 5 x 5"):
      convert.read_mean(str(tmp_path / "bad.binaryproto"), size)


def test_networks_caffes_weights_cannot_fill_are_refused(tmp_path):
  """A net definition without weights (layers without blobs), and a config with conv6 or one
  column, are one line each. Mutations: a layer kept when it has a name `or` blobs -> red
  (blob-less layers reached the conversion); `columns != 2 or extra_conv6` -> `and` -> red."""
  from alexnet_jax import model_spec

  config = load_config("caffe_alexnet", "", NARROW)
  spec = model_spec.AlexNetSpec.from_config(config.model)
  weights = random_caffe_weights(spec)
  empty = str(tmp_path / "deploy.caffemodel")
  write_caffemodel(empty, {name: [] for name in weights}, v1=False)
  with pytest.raises(UserError, match="is not a Caffe model with weights"):
    convert.read_caffemodel(empty)
  path = str(tmp_path / "narrow.caffemodel")
  write_caffemodel(path, weights, v1=False)
  for change in ("model.extra_conv6=True", "model.columns=1"):
    other = load_config("caffe_alexnet", "", [*NARROW, change])
    with pytest.raises(UserError, match="the Caffe network has two columns"):
      convert.convert_caffe(path, str(tmp_path / change), other)


def test_an_imagenet_conversion_names_its_classes_by_their_wordnet_ids(tmp_path):
  """bvlc_alexnet's 1,000 outputs are ILSVRC-2012's synsets in sorted order, the order of
  tensorflow-datasets' label file; another dataset's or another count's are numbered.
  Mutations: the ImageNet test `==` -> `!=` -> red; the count check inverted -> red."""
  names = convert.imagenet_class_names(1000)
  assert names[:2] == ("n01440764", "n01443537") and list(names) == sorted(names)
  assert convert.imagenet_class_names(10) == tuple(str(i) for i in range(10))
  for dataset, first in (("imagenet2012", "n01440764"), ("synthetic", "0")):
    workdir = caffe_workdir(str(tmp_path / dataset), tmp_path,
                            ["model.num_classes=1000", f"data.name={dataset}"])
    assert inference.load(workdir).class_names[:1] == (first,)
