"""The benchmark harness's pieces that do not need a GPU: the profile ranking, the collective
byte count, and the PyTorch network `--compare_torch` times (the same maths as ours)."""

import numpy as np
import pytest

from alexnet_jax import benchmark, models
from alexnet_jax.configs import tiny


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
  from alexnet_jax.configs import paper

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


def test_end2end_reports_the_training_loops_own_rate_and_input_wait(monkeypatch, capsys):
  """The figures are the loop's metrics (after the compiling interval), run in-process."""
  import json

  from alexnet_jax import metrics
  from conftest import load_config

  rows = []  # the metrics file as last read (the curves plot reads it too)

  def read(path, real=metrics.read_metrics):
    rows[:] = real(path)
    return list(rows)

  monkeypatch.setattr(metrics, "read_metrics", read)
  record = benchmark.bench_end2end(load_config("tiny"), source="synthetic", root="",
                                   generate=64, batch=16, workers=0, steps=8)
  assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == record
  train_rows = [r for r in rows if r["split"] == "train"]
  assert [r["step"] for r in train_rows] == [2, 4, 6, 8]  # steps // 4 per log line
  assert record["steps"] == 8 and record["batch"] == 16
  assert record["img_per_s"] == pytest.approx(
      np.mean([r["img_per_s"] for r in train_rows[1:]]), abs=0.1)
  assert record["input_wait_fraction"] == pytest.approx(
      np.mean([r["input_wait_fraction"] for r in train_rows[1:]]), abs=1e-3)


def test_the_step_benchmark_times_the_training_step_on_the_training_mesh(monkeypatch):
  """`benchmark step` builds through `train_setup.setup_train` (the config's optimizer, the
  training mesh): on 8 devices the two columns are on the 'model' axis, so the compiled step
  holds the columns' all-gathers."""
  from alexnet_jax import train_setup
  from conftest import load_config

  built = []
  real = train_setup.setup_train
  monkeypatch.setattr(train_setup, "setup_train",
                      lambda config, mesh, **kw: built.append((config, mesh)) or real(config, mesh, **kw))
  config = load_config("paper_code", "", ["model.input_size=32", "model.conv1_stride=1",
                                          "model.conv_kernels=(5,5,3,3,3)",
                                          "model.conv_features=(16,32,48,48,32)",
                                          "model.fc_features=(64,64)", "model.num_classes=10"])
  seconds, flops, hlo, _ = benchmark._timed_step(config, 8, steps=1)
  # Forward, input gradients and weight gradients of 8 images, counted from the layer shapes.
  from alexnet_jax import models

  assert flops == 3.0 * models.AlexNetSpec.from_config(config.model).forward_flops() * 8
  assert seconds > 0
  (used, mesh), = built
  assert used is config and dict(mesh.shape) == {"data": 4, "model": 2}
  assert "all-gather" in hlo


def test_imagenet_like_jpegs_come_from_real_photographs_at_imagenets_sizes(tmp_path):
  from PIL import Image

  made = benchmark.generate_imagenet_like(str(tmp_path), 24, classes=3, seed=0)
  assert "grace_hopper.jpg" in made["photographs"] and made["images"] == 24
  paths = sorted(p for p in tmp_path.rglob("*.JPEG"))
  assert len(paths) == 24 and len({p.parent.name for p in paths}) == 3
  common = {(500, 375), (375, 500), (500, 333), (333, 500)}
  sizes = []
  for path in paths:
    with Image.open(path) as image:
      sizes.append(image.size)
      assert image.format == "JPEG" and image.mode == "RGB"
      pixels = np.asarray(image, np.float64)
    assert pixels.std() > 5  # content, not a flat fill
  assert sum(s in common for s in sizes) >= 16  # mostly ImageNet's common sizes; a tail above
  assert all(s in common or max(s) >= 600 for s in sizes)
  assert made["mean_kb"] > 10 and made["mean_pixels"] >= 333 * 500


def test_the_input_benchmark_compares_originals_prepared_and_a_pil_loop(capsys):
  records = benchmark.bench_input(root="", generate=16, workers=1, seconds=0.1)
  what = [r["what"] for r in records]
  assert what[0] == "generated ImageNet-like JPEGs" and what[1].startswith("prepare")
  assert "plain PIL loop on the originals, 1 core" in what
  for form in ("originals", "prepared"):
    assert f"pipeline on the {form}, 1 reader thread" in what
  assert "ratio" in records[-1] and records[-1]["ratio"] > 0
  assert len(capsys.readouterr().out.strip().splitlines()) == len(records)


@pytest.mark.parametrize("source,prepared", [("synthetic", False), ("jpeg", True)])
def test_the_null_model_loop_reports_host_time_by_part(source, prepared, capsys):
  from conftest import load_config

  record = benchmark.bench_end2end(load_config("tiny"), source=source, root="", generate=64,
                                   batch=16, workers=0, steps=8, null_model=True,
                                   prepared=prepared)
  assert record["model"] == "null" and record["source"].startswith(source)
  assert ("(prepared)" in record["source"]) == prepared
  assert set(record["host_ms_per_step"]) == {"checkpoint", "device_wait", "dispatch",
                                             "input_wait", "metrics", "other", "transfer"}
  assert all(v >= 0 for v in record["host_ms_per_step"].values())


def test_the_plain_pil_loop_skips_and_counts_an_unreadable_file(tmp_path):
  """`benchmark input --root` died on one corrupt file with a traceback."""
  from PIL import Image

  good = tmp_path / "good.jpg"
  Image.new("RGB", (300, 280), (10, 20, 30)).save(good)
  bad = tmp_path / "bad.jpg"
  bad.write_bytes(b"not a jpeg")
  rate, unreadable = benchmark.plain_pil_loop([str(bad), str(good)], seconds=0.2)
  assert rate > 0 and unreadable >= 1
