"""The benchmark harness's pieces that do not need a GPU: the profile ranking, the collective
byte count, and the PyTorch network `--compare-torch` times (the same maths as ours)."""

import numpy as np
import pytest

from alexnet_jax import benchmark, models
from configs import tiny


def test_top_device_ops_ranks_device_events_per_step():
  trace = {"traceEvents": [
      {"ph": "M", "name": "process_name", "pid": 1, "args": {"name": "/device:GPU:0"}},
      {"ph": "M", "name": "process_name", "pid": 2, "args": {"name": "/host:CPU"}},
      *[{"ph": "X", "pid": 1, "name": "conv", "dur": 300.0} for _ in range(4)],
      *[{"ph": "X", "pid": 1, "name": "lrn", "dur": 100.0} for _ in range(2)],
      {"ph": "X", "pid": 2, "name": "host work", "dur": 1e6},
  ]}
  ops = benchmark.top_device_ops(trace, steps=2)
  assert ops == [{"op": "conv", "ms_per_step": 0.6, "calls_per_step": 2.0},
                 {"op": "lrn", "ms_per_step": 0.1, "calls_per_step": 1.0}]


def test_collective_bytes_reads_result_shapes():
  hlo = ("  %ag = bf16[128,13,13,256]{3,2,1,0} all-gather(bf16[128,13,13,128] %x), dimensions={3}\n"
         "  %ar = (f32[10]{0}, f32[4,4]{1,0}) all-reduce(%a, %b), to_apply=%sum\n")
  assert benchmark.collective_bytes(hlo) == {"all-gather": 2 * 128 * 13 * 13 * 256,
                                             "all-reduce": 4 * (10 + 16)}


def test_forward_flops_of_the_paper_network():
  from configs import paper

  spec = models.AlexNetSpec.from_config(paper.get_config().model)
  # conv1 55²·11²·3·96 + conv2 27²·5²·48·256 + conv3 13²·3²·256·384 + conv4 13²·3²·192·384
  # + conv5 13²·3²·192·256 + fc 9216·4096 + 4096·4096 + 4096·1000 multiply-adds.
  macs = (55**2 * 121 * 3 * 96 + 27**2 * 25 * 48 * 256 + 13**2 * 9 * 256 * 384
          + 13**2 * 9 * 192 * 384 + 13**2 * 9 * 192 * 256 + 9216 * 4096 + 4096**2 + 4096 * 1000)
  assert spec.forward_flops() == 2 * macs


def _torch_weights(spec, params):
  """Our stacked column kernels as the PyTorch layers' weights (grouped convs: group c is
  column c; fc6's rows reordered from NHWC to NCHW flattening)."""
  import torch

  out = []
  for name in models.CONV_LAYERS:
    kernel, bias = (np.asarray(a) for a in params[name])
    weight = np.concatenate([k.transpose(3, 2, 0, 1) for k in kernel])
    out.append((weight, bias.reshape(-1)))
  for name in ("fc6", "fc7"):
    kernel, bias = (np.asarray(a) for a in params[name])
    weight = np.concatenate([k.T for k in kernel])
    if name == "fc6":
      side, channels = spec.pool5_size, spec.columns * spec.widths["conv5"]
      weight = weight.reshape(-1, side, side, channels).transpose(0, 3, 1, 2).reshape(
          weight.shape[0], -1)
    out.append((weight, bias.reshape(-1)))
  kernel, bias = (np.asarray(a) for a in params["fc8"])
  out.append((kernel.reshape(-1, kernel.shape[-1]).T, bias))
  return [(torch.tensor(w.copy()), torch.tensor(b.copy())) for w, b in out]


def test_the_pytorch_network_computes_our_network():
  torch = pytest.importorskip("torch", reason="PyTorch is a benchmark-only dependency")
  import jax.numpy as jnp
  from flax import nnx

  from alexnet_jax import torch_alexnet

  config = tiny.get_config()
  config.model.update(dict(lrn=False, dropout=0.0))  # LRN: the next test
  spec = models.AlexNetSpec.from_config(config.model)
  model = models.create_model(config.model, seed=3)
  params = {n: (v["kernel"], v["bias"]) for n, v in nnx.to_pure_dict(nnx.state(model)).items()}
  net = torch_alexnet.build(spec).eval()
  layers = [m for m in net if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
  with torch.no_grad():
    for layer, (weight, bias) in zip(layers, _torch_weights(spec, params), strict=True):
      layer.weight.copy_(weight)
      layer.bias.copy_(bias)
  images = np.random.default_rng(0).normal(size=(4, 32, 32, 3)).astype(np.float32)
  ours = np.asarray(model(jnp.asarray(images)))
  with torch.no_grad():
    theirs = net(torch.tensor(images).permute(0, 3, 1, 2).contiguous()).numpy()
  np.testing.assert_allclose(theirs, ours, rtol=1e-4, atol=1e-4 * np.abs(ours).max())


def test_pytorch_lrn_with_alpha_times_n_is_the_papers():
  torch = pytest.importorskip("torch", reason="PyTorch is a benchmark-only dependency")
  import jax.numpy as jnp

  from alexnet_jax import ops

  x = np.random.default_rng(1).normal(scale=30.0, size=(2, 5, 5, 48)).astype(np.float32)
  ours = np.asarray(ops.lrn(jnp.asarray(x)))
  lrn = torch.nn.LocalResponseNorm(5, alpha=5 * 1e-4, beta=0.75, k=2.0)
  theirs = lrn(torch.tensor(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
  np.testing.assert_allclose(theirs, ours, rtol=1e-5)


def test_end2end_runs_the_training_loop_and_reports_input_wait():
  import json
  import os
  import subprocess
  import sys

  env = dict(os.environ, JAX_PLATFORMS="cpu")
  out = subprocess.run(
      [sys.executable, "-m", "alexnet_jax.benchmark", "end2end", "--config=configs/tiny.py",
       "--steps=40", "--generate=64", "--batch=16"],
      capture_output=True, text=True, env=env, timeout=600, check=True)
  record = json.loads(out.stdout.strip().splitlines()[-1])
  assert record["bench"] == "end2end" and record["steps"] == 40 and record["img_per_s"] > 0
  assert 0.0 <= record["input_wait_fraction"] <= 1.0
