"""`benchmark step`'s pieces that need no GPU: the profile ranking, the FLOPs counted, the
PyTorch network `--compare_torch` times (the same maths as ours), the training mesh."""

import numpy as np
import pytest

from alexnet_jax import model_spec, models
from alexnet_jax.benchmark import step as benchmark
from alexnet_jax.configs import tiny


def test_top_device_ops_ranks_device_events_per_step():
  """Per step over 3 steps, ms to 4 decimals and calls to 2; an event without a duration
  lasts nothing. Mutations: a rounding one digit longer; a missing duration taken as 1 µs
  -> red."""
  trace = {"traceEvents": [
      {"ph": "M", "name": "process_name", "pid": 1, "args": {"name": "/device:GPU:0"}},
      {"ph": "M", "name": "process_name", "pid": 2, "args": {"name": "/host:CPU"}},
      *[{"ph": "X", "pid": 1, "name": "conv", "dur": 300.123} for _ in range(4)],
      *[{"ph": "X", "pid": 1, "name": "lrn", "dur": 100.0} for _ in range(2)],
      {"ph": "X", "pid": 1, "name": "marker"},
      {"ph": "X", "pid": 2, "name": "host work", "dur": 1e6},
  ]}
  ops = benchmark.top_device_ops(trace, steps=3)
  assert ops == [{"op": "conv", "ms_per_step": 0.4002, "calls_per_step": 1.33},
                 {"op": "lrn", "ms_per_step": 0.0667, "calls_per_step": 0.67},
                 {"op": "marker", "ms_per_step": 0.0, "calls_per_step": 0.33}]


def test_forward_flops_of_the_paper_network():
  from alexnet_jax.configs import paper

  spec = model_spec.AlexNetSpec.from_config(paper.get_config().model)
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
  for name in model_spec.CONV_LAYERS:
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
  spec = model_spec.AlexNetSpec.from_config(config.model)
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


def test_the_pytorch_network_normalises_as_its_config_says():
  """After conv1 and conv2: the paper's LRN as `nn.LocalResponseNorm` takes it (α·n, since it
  divides by n), Caffe's α as it is (Caffe divides by n too), none when LRN is ablated.
  Mutations: α·n -> α/n; the LRN left out or kept under `no_lrn` -> red."""
  torch = pytest.importorskip("torch", reason="PyTorch is a benchmark-only dependency")
  from conftest import load_config

  from alexnet_jax import torch_alexnet

  def lrns(name, variant=""):
    spec = model_spec.AlexNetSpec.from_config(load_config(name, variant).model)
    return [(m.size, m.alpha, m.beta, m.k) for m in torch_alexnet.build(spec)
            if isinstance(m, torch.nn.LocalResponseNorm)]

  assert lrns("paper") == [(5, pytest.approx(5e-4), 0.75, 2.0)] * 2
  assert lrns("caffe_alexnet") == [(5, pytest.approx(1e-4), 0.75, 1.0)] * 2
  assert lrns("paper", "no_lrn") == []


def test_the_step_benchmark_times_the_training_step_on_the_training_mesh(monkeypatch):
  """`benchmark step` builds through `train_setup.setup_train` (the config's optimizer, the
  training mesh): on 8 devices the two columns are on the 'model' axis, so the compiled step
  holds the columns' all-gathers."""
  from conftest import fixed_clock, load_config

  from alexnet_jax import train_setup

  built = []
  real = train_setup.setup_train
  monkeypatch.setattr(train_setup, "setup_train",
                      lambda config, mesh, **kw: built.append((config, mesh, kw))
                      or real(config, mesh, **kw))
  fixed_clock(monkeypatch, benchmark, "perf_counter", 0.5)  # each timing of `steps`: 0.5 s
  config = load_config("paper_code", "", ["model.input_size=32", "model.conv1_stride=1",
                                          "model.conv_kernels=(5,5,3,3,3)",
                                          "model.conv_features=(16,32,48,48,32)",
                                          "model.fc_features=(64,64)", "model.num_classes=10"])
  seconds, flops, hlo, _ = benchmark.timed_step(config, 8, steps=1)
  assert seconds == pytest.approx(0.5)  # per step (mutation: divided by 2 -> red)
  # Forward, input gradients and weight gradients of 8 images, counted from the layer shapes.
  from alexnet_jax import model_spec

  assert flops == 3.0 * model_spec.AlexNetSpec.from_config(config.model).forward_flops() * 8
  (used, mesh, kwargs), = built
  assert used is config and dict(mesh.shape) == {"data": 4, "model": 2}
  assert kwargs == {"step_norms": True}  # the step as training runs it
  assert "all-gather" in hlo


def test_the_step_timed_is_the_program_training_compiled(tmp_path, caplog):
  """After a run in this process, the step benchmark (what `benchmark end2end` times after
  its loop) traces and compiles no training step of its own: the same program, its mean
  image at the stored size included. Mutation: the mean at the crop's size -> red."""
  from conftest import compiled, small_config

  from alexnet_jax import train

  config = small_config(epochs=0.5)
  train.train_and_evaluate(config, str(tmp_path))
  with compiled(caplog) as programs:
    benchmark.timed_step(config, config.data.batch_size, steps=1)
  assert [p for p in programs if "train_step" in p] == []


def test_the_step_record_and_torchs_beside_it_from_a_fixed_timing(monkeypatch, capsys):
  """`bench_step`'s figures from a step of 7.1234 ms and 3 GFLOP for 7 images, each at its
  rounding: img/s, TFLOP/s, the fraction of the device's peak, GFLOP per image, the profile's
  ops; with --compare_torch, PyTorch eager (30.1234 ms) and compiled (20.1234 ms) each timed
  on the same network and set against ours. Mutations: a figure rounded to one more digit
  -> red."""
  import json
  import types

  import jax

  from alexnet_jax import torch_alexnet

  ops = [{"op": "conv", "ms_per_step": 4.0, "calls_per_step": 2.0}]
  monkeypatch.setattr(benchmark, "timed_step", lambda config, batch, steps, profile_steps: (
      0.0071234, 3e9, "", ops if profile_steps else []))
  config = tiny.get_config()
  kind = jax.devices()[0].device_kind
  monkeypatch.setitem(benchmark.PEAK_FLOPS, (kind, config.model.dtype), 1e12)
  monkeypatch.setattr(benchmark, "_torch_for_comparison", lambda: types.SimpleNamespace(
      __version__="9.9", cuda=types.SimpleNamespace(get_device_name=lambda: "a GPU")))
  timed = []

  def torch_step(spec, batch, steps, dtype, compile):
    timed.append((spec.num_classes, batch, dtype, compile))
    return 0.0201234 if compile else 0.0301234

  monkeypatch.setattr(torch_alexnet, "time_training_step", torch_step)
  benchmark.bench_step(config, batch=7, steps=2, profile=True, compare_torch=True)
  step, op, eager, compiled = (json.loads(line) for line in capsys.readouterr().out.splitlines())
  assert {k: step[k] for k in ("batch", "img_per_s", "ms_per_step", "tflop_per_s",
                               "fraction_of_peak", "gflop_per_image")} == {
      "batch": 7, "img_per_s": 982.7, "ms_per_step": 7.123, "tflop_per_s": 0.421,
      "fraction_of_peak": 0.4211, "gflop_per_image": 0.429}
  assert op == {"profile": "conv", "ms_per_step": 4.0, "calls_per_step": 2.0}
  assert timed == [(config.model.num_classes, 7, config.model.dtype, c) for c in (False, True)]
  assert [(r["framework"], r["img_per_s"], r["ms_per_step"], r["jax_speedup"])
          for r in (eager, compiled)] == [("torch 9.9 eager", 232.4, 30.123, 4.229),
                                          ("torch 9.9 compile", 347.9, 20.123, 2.825)]

  benchmark.bench_step(config, batch=0, steps=2, profile=False, compare_torch=False)
  step, = (json.loads(line) for line in capsys.readouterr().out.splitlines())
  assert step["batch"] == config.data.batch_size
  ops.clear()  # a backend whose trace has no device ops (XLA's CPU backend) says so
  benchmark.bench_step(config, batch=0, steps=2, profile=True, compare_torch=False)
  assert json.loads(capsys.readouterr().out.splitlines()[1])["profile"].startswith("no per-op")


def test_compare_torch_without_pytorch_or_without_a_cuda_gpu_is_one_error(monkeypatch):
  import sys
  import types

  from alexnet_jax.errors import UserError

  monkeypatch.setitem(sys.modules, "torch", None)  # not installed
  with pytest.raises(UserError, match="needs PyTorch"):
    benchmark._torch_for_comparison()
  monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(
      cuda=types.SimpleNamespace(is_available=lambda: False)))
  with pytest.raises(UserError, match="on a CUDA GPU and none is visible"):
    benchmark._torch_for_comparison()


def test_the_profile_ranks_the_device_ops_of_the_trace_it_records(monkeypatch):
  """`_profile` runs the steps under `jax.profiler` and ranks the ops of the trace-event file
  it wrote (XLA's CPU backend records no device ops: the ranking is given the trace).
  Each step is given the state the last one returned. Mutations: the trace's folder not
  searched, the file found taken as none; the batch given as the state -> red."""
  import jax
  import jax.numpy as jnp

  ranked = []
  monkeypatch.setattr(benchmark, "top_device_ops", lambda trace, steps: ranked.append(
      (sorted(trace) if isinstance(trace, dict) else "list", steps)) or ["ops"])
  jitted, states = jax.jit(lambda state, x: (state + x, jnp.sum(state))), []
  step = lambda state, x: states.append(np.asarray(state)) or jitted(state, x)
  assert benchmark._profile(step, (jnp.zeros(4), jnp.ones(4)), steps=3) == ["ops"]
  assert len(ranked) == 1 and ranked[0][1] == 3 and "traceEvents" in ranked[0][0]
  assert [float(s[0]) for s in states] == [0.0, 1.0, 2.0]
