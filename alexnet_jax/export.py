r"""A trained network taken elsewhere: ONNX, StableHLO or a PyTorch program, with a model card.

  python -m alexnet_jax.export --workdir=W [--best | --step=N] --format=onnx|stablehlo|torch \
      --output=FILE

The exported model takes uint8 crops [N, S, S, C] (any N; S the network's input size, C its
channels): the centre S x S of an image in the stored form of its training data (§2: the
shorter side rescaled to the stored size and the central square kept, or the image squashed to
it: the model card says which), channels last. It subtracts the training set's mean (its centre
patch) and applies the pixel scale inside, and returns `probs` (the softmax over the classes)
and `fc7` (the last hidden layer after its ReLU, §6.1's descriptor): the same numbers as
`python -m alexnet_jax.predict` for the centre crop.

* `onnx`: through jax2onnx (the `export` extra), run with onnxruntime;
* `stablehlo`: a serialized `jax.export.Exported` (CPU and CUDA), run with
  `jax.export.deserialize(open(FILE, 'rb').read()).call(crops)` and nothing of alexnet_jax;
* `torch`: a `torch.export` program (`torch.export.load(FILE).module()(crops)`), the network
  written with torch's own layers (PyTorch is an optional dependency).

Beside FILE, FILE.md: the model card (network, data, accuracy of the run, the pre-processing a
caller must do, the class names).
"""

from __future__ import annotations

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from alexnet_jax import cli, inference, model_card, model_spec, models
from alexnet_jax import workdir as workdir_lib
from alexnet_jax.errors import UserError, first_line

FORMATS = {"onnx": (".onnx",), "stablehlo": (".stablehlo", ".bin"), "torch": (".pt2",)}


def export(workdir: str, *, fmt: str, output: str, step: int | None = None,
           best: bool = False) -> dict:
  """Writes `workdir`'s network (newest checkpoint; `best`, `step`) to `output` in `fmt` and
  its model card beside it; returns what was written."""
  if fmt not in FORMATS:
    raise UserError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
  workdir_lib.check_output(output, FORMATS[fmt])
  if fmt == "onnx":
    _need("jax2onnx", "pip install 'alexnet_jax[export]'")
  elif fmt == "torch":
    _need("torch", "pip install torch")
  trained = inference.load(workdir, step=step, best=best)
  if fmt == "torch":
    _to_torch(trained, output)
  else:
    fn = inference_function(trained)
    (_to_onnx if fmt == "onnx" else _to_stablehlo)(fn, trained, output)
  card = output + ".md"
  with workdir_lib.output_file(card) as f:
    f.write(model_card.model_card(trained, fmt, output, workdir))
  return {"format": fmt, "output": output, "model_card": card, "step": trained.step,
          "checkpoint": trained.path, "bytes": os.path.getsize(output)}


def _need(module: str, install: str) -> None:
  import importlib.util

  if importlib.util.find_spec(module) is None:
    raise UserError(f"this --format needs {module}: {install}")


def inference_function(trained: inference.Trained):
  """uint8 crops [N, S, S, C] -> (probs [N, classes], fc7 [N, F]), the parameters, the mean's
  centre patch and the pixel scale baked in: standard ops only (`models.single_device_forward`)."""
  spec, params, mean, scale = _baked(trained)

  def fn(crops):
    images = (crops.astype(jnp.float32) - mean) * scale
    logits, captured = models.single_device_forward(spec, params, images, portable=True)
    return jax.nn.softmax(logits, axis=-1), captured["fc7"].astype(jnp.float32)

  return fn


def _baked(trained: inference.Trained):
  """What an exported network holds: (its spec, computing in float32 whatever the run's compute
  dtype: ONNX Runtime has no bfloat16 convolutions; its parameters as float32 NumPy arrays, the
  training mean's centre patch [S, S, C] float32, the pixel scale)."""
  spec = dataclasses.replace(model_spec.AlexNetSpec.from_config(trained.config.model),
                             dtype="float32", param_dtype="float32")
  params = jax.tree.map(lambda a: np.asarray(a, np.float32), jax.device_get(trained.params))
  size, stored = spec.input_size, trained.stats.mean.shape[0]
  top = (stored - size) // 2
  mean = np.asarray(trained.stats.mean[top:top + size, top:top + size], np.float32)
  return spec, params, mean, float(trained.config.data.pixel_scale)


def _input(trained, batch):
  c = trained.config.model
  return jax.ShapeDtypeStruct((batch, c.input_size, c.input_size, c.in_channels), jnp.uint8)


def _to_onnx(fn, trained, output: str) -> None:
  import logging as std_logging

  # jax2onnx reports the plugins it skips (other libraries') and onnx_ir its constant folding
  # with tracebacks at WARNING: neither concerns this network.
  for name in ("jax2onnx", "onnx_ir"):
    std_logging.getLogger(name).setLevel(std_logging.ERROR)
  from importlib.metadata import version

  from jax2onnx import to_onnx

  batch, = jax.export.symbolic_shape("N")
  try:
    model = to_onnx(fn, [_input(trained, batch)], model_name="alexnet",
                    input_names=["crops"], output_names=["probs", "fc7"])
  except (AttributeError, TypeError) as e:  # jax2onnx reaches into jax's internals
    raise UserError(
        f"jax2onnx {version('jax2onnx')} cannot trace with jax {jax.__version__} "
        f"({type(e).__name__}: {first_line(e)}): pip install 'alexnet_jax[export]' installs the "
        "jax it works with; --format=stablehlo needs no jax2onnx") from None
  with workdir_lib.output_file(output, "wb") as f:
    f.write(model.SerializeToString())


def _to_stablehlo(fn, trained, output: str) -> None:
  batch, = jax.export.symbolic_shape("N")
  exported = jax.export.export(jax.jit(fn), platforms=("cpu", "cuda"))(_input(trained, batch))
  with workdir_lib.output_file(output, "wb") as f:
    f.write(exported.serialize())


def _to_torch(trained, output: str) -> None:
  import torch

  module = torch_module(trained)
  c = trained.config.model
  example = torch.zeros((2, c.input_size, c.input_size, c.in_channels), dtype=torch.uint8)
  batch = torch.export.Dim("N", min=1)
  with torch.no_grad():
    program = torch.export.export(module, (example,), dynamic_shapes={"crops": {0: batch}})
  try:  # through a temporary file: a failed write leaves an earlier export as it was
    with workdir_lib.output_file(output, "wb") as f:
      torch.export.save(program, f)
  except RuntimeError as e:  # torch's own errors (its C++ writer on a full disk among them)
    raise UserError(f"cannot write {output} ({first_line(e)})") from None


def torch_module(trained):
  """The network of `trained` at test time as a `torch.nn.Module` (uint8 crops in, (probs, fc7)
  out), written with torch's layers: the columns as channel groups (the convolutional layers
  after conv1 that see only their own column: conv2, conv4, conv5, conv6 over its own), LRN
  within each column or across them, the 2012 code's response norm, §4.2's test-time dropout
  scale."""
  import torch
  import torch.nn.functional as F
  from torch import nn

  spec, params, mean, scale = _baked(trained)
  mean = torch.tensor(mean)
  columns = spec.columns

  def conv_weight(name):  # [columns, kh, kw, cin, cout] -> [columns * cout, cin, kh, kw]
    kernel = params[name]["kernel"]
    return torch.tensor(np.concatenate([k.transpose(3, 2, 0, 1) for k in kernel]))

  def dense_weight(name):  # [columns, in, out] -> [columns * out, in]
    kernel = params[name]["kernel"]
    joined = np.concatenate(list(kernel), axis=-1) if name != "fc8" else kernel.reshape(
        -1, kernel.shape[-1])
    return torch.tensor(np.ascontiguousarray(joined.T))

  bias = lambda name: torch.tensor(params[name]["bias"].reshape(-1))
  own = {n for n in spec.layers if n.startswith("conv") and n != "conv1" and n not in spec.meets}
  keep = 1.0 - spec.dropout if spec.dropout_form == "paper" else 1.0
  lrn_alpha = (spec.lrn_alpha / spec.lrn_size if spec.lrn_alpha_over_size else spec.lrn_alpha)

  class AlexNet(nn.Module):
    def __init__(self):
      super().__init__()
      self.register_buffer("mean", mean)
      for name in spec.layers:
        weight = conv_weight(name) if name.startswith("conv") else dense_weight(name)
        self.register_buffer(f"{name}_w", weight)
        self.register_buffer(f"{name}_b", bias(name))

    def act(self, x):
      return torch.relu(x) if spec.activation == "relu" else torch.tanh(x)

    def conv(self, name, x):
      k = spec.conv_kernel(name)
      groups = columns if name in own else 1
      weight, b = getattr(self, f"{name}_w"), getattr(self, f"{name}_b")
      if name == "conv1":
        x = F.pad(x, (0, spec.conv1_padding, 0, spec.conv1_padding))
        return F.conv2d(x, weight, b, stride=spec.conv1_stride)
      return F.conv2d(x, weight, b, padding=k // 2, groups=groups)

    def lrn(self, x):
      if not spec.lrn:
        return x
      norm = lambda v: F.local_response_norm(v, spec.lrn_size, alpha=lrn_alpha * spec.lrn_size,
                                             beta=spec.lrn_beta, k=spec.lrn_k)
      if spec.lrn_across_columns:
        return norm(x)
      return torch.cat([norm(v) for v in torch.chunk(x, columns, dim=1)], dim=1)

    def response_norm(self, x):
      if not spec.response_norm:
        return x
      n = spec.response_norm_size
      energy = F.avg_pool2d(x * x, n, stride=1, padding=n // 2, count_include_pad=True) * n * n
      return x * torch.pow(1.0 + spec.response_norm_alpha / n ** 2 * energy,
                           -spec.response_norm_beta)

    def pool(self, x):
      return F.max_pool2d(x, spec.pool_window, spec.pool_stride)

    def forward(self, crops):
      x = ((crops.to(torch.float32) - self.mean) * scale).permute(0, 3, 1, 2)
      h = self.conv("conv1", x)
      if spec.lrn_conv1_pre_relu:
        h = self.act(self.pool(self.lrn(h)))
      else:
        h = self.pool(self.lrn(self.act(h)))
      if "conv2" in spec.layers:
        h = self.response_norm(self.lrn(self.act(self.conv("conv2", h))))
      h = self.pool(h)
      for name in ("conv3", "conv4", "conv5"):
        if name in spec.layers:
          h = self.act(self.conv(name, h))
      h = self.pool(h)
      if spec.extra_conv6:
        h = self.act(self.conv("conv6", h))
      h = torch.flatten(h.permute(0, 2, 3, 1), 1)  # this network flattens H x W x C
      fc6 = self.act(F.linear(h, self.fc6_w, self.fc6_b))
      fc7 = self.act(F.linear(fc6 * keep, self.fc7_w, self.fc7_b))
      logits = F.linear(fc7 * keep, self.fc8_w, self.fc8_b)
      return torch.softmax(logits, dim=-1), fc7

  return AlexNet().eval()


def main(argv):
  del argv
  FLAGS = flags.FLAGS
  print(json.dumps(export(FLAGS.workdir, fmt=FLAGS.format, output=FLAGS.output, step=FLAGS.step,
                          best=FLAGS.best), ensure_ascii=False))


if __name__ == "__main__":
  cli.define_restore_flags()
  flags.DEFINE_enum("format", None, list(FORMATS), "onnx, stablehlo or torch")
  flags.DEFINE_string("output", None, "the file to write (.onnx, .stablehlo, .pt2)")
  cli.run(main, required_flags=("workdir", "format", "output"))
