"""export: the ONNX, StableHLO and PyTorch files run in a process that never imports
alexnet_jax and give `predict`'s numbers, at two batch sizes, for a two-column network of the
paper's geometry and for a converted Caffe workdir; the model card."""

import importlib.util
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from alexnet_jax import convert, export, inference, models
from alexnet_jax.errors import UserError
from conftest import load_config
from test_convert import caffe_workdir

HAS_TORCH = importlib.util.find_spec("torch") is not None
HAS_ONNX = all(importlib.util.find_spec(m) for m in ("jax2onnx", "onnxruntime"))

# Runs each exported file on the crops with its own runtime only, and says whether anything of
# alexnet_jax was imported.
RUNNER = r"""
import json, sys
import numpy as np
jobs = json.load(open(sys.argv[1]))
for job in jobs:
  crops = np.load(job["crops"])
  if job["format"] == "onnx":
    import onnxruntime
    session = onnxruntime.InferenceSession(job["file"], providers=["CPUExecutionProvider"])
    probs, fc7 = session.run(["probs", "fc7"], {"crops": crops})
  elif job["format"] == "stablehlo":
    from jax import export
    exported = export.deserialize(bytearray(open(job["file"], "rb").read()))
    probs, fc7 = (np.asarray(x) for x in exported.call(crops))
  else:
    import torch
    with torch.no_grad():
      module = torch.export.load(job["file"]).module()
      probs, fc7 = (x.numpy() for x in module(torch.from_numpy(crops)))
  np.save(job["out"] + "_probs.npy", probs)
  np.save(job["out"] + "_fc7.npy", fc7)
print(json.dumps({"imported": sorted(m for m in sys.modules if m.startswith("alexnet_jax"))}))
"""


def run_without_alexnet_jax(folder, runner: str, jobs) -> None:
  """Runs `runner` (a script reading `jobs` from the JSON file its first argument names) in a
  fresh process in `folder`, without this checkout on the path; checks that it ends well and
  that it imported nothing of alexnet_jax (its last line: {"imported": [...]})."""
  (folder / "jobs.json").write_text(json.dumps(jobs))
  (folder / "runner.py").write_text(runner)
  result = subprocess.run([sys.executable, "runner.py", "jobs.json"], cwd=folder,
                          capture_output=True, text=True,
                          env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
  assert result.returncode == 0, result.stderr[-3000:]
  assert json.loads(result.stdout.strip().splitlines()[-1]) == {"imported": []}


def random_workdir(path: str, config, *, seed: int, fc8_gain: float, mean: tuple) -> str:
  """`config`'s network with random weights (He, fc8's at `fc8_gain`: how sure its softmax
  is; biases of std 0.1) and a mean image uniform in `mean` (low, high), written as a
  converted workdir at `path`."""
  import jax

  _, abstract = models.abstract_model(config.model)
  rng = np.random.default_rng(seed)

  def weight(path_, leaf):
    if path_[-1].key == "bias":
      return rng.normal(0, 0.1, leaf.shape).astype(np.float32)
    gain = fc8_gain if path_[0].key == "fc8" else math.sqrt(2)
    return rng.normal(0, gain / math.sqrt(math.prod(leaf.shape[1:-1])), leaf.shape).astype(
        np.float32)

  params = jax.tree_util.tree_map_with_path(weight, abstract)
  size = config.data.image_size
  image = rng.uniform(*mean, (size, size, config.model.in_channels)).astype(np.float32)
  convert.write_workdir(path, config, params, image, converted_from=path)
  return path


def paper_geometry_workdir(path: str, overrides=()) -> str:
  """configs/paper.py's geometry (224 crops of 256, 11x11 stride-4 conv1, two columns meeting at
  conv3 and the fully connected layers) narrowed, with random weights scaled so the softmax is
  neither uniform nor saturated (its top probability near 0.75); `overrides`: more
  `--config.*` settings."""
  config = load_config("paper", "", ["model.conv_features=(8,16,24,24,16)",
                                     "model.fc_features=(32,32)", "model.num_classes=10",
                                     "data.name=synthetic", *overrides])
  return random_workdir(path, config, seed=0, fc8_gain=0.3, mean=(90, 130))


def predicted_centre_crops(trained, batch: int, rng):
  """(the centre crops of `batch` random uint8 images in `trained`'s stored form, what an
  exported model takes; `predict`'s outputs for those images)."""
  size, stored = int(trained.config.model.input_size), trained.stored_size
  top = (stored - size) // 2
  images = rng.integers(0, 256, (batch, stored, stored, 3), dtype=np.uint8)
  return (np.ascontiguousarray(images[:, top:top + size, top:top + size]),
          trained.predict(images))


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
  """The two workdirs, and per batch size the centre crops (saved) and `predict`'s outputs."""
  tmp = tmp_path_factory.mktemp("export")
  rng = np.random.default_rng(1)
  found = {}
  for name, workdir in (("paper", paper_geometry_workdir(str(tmp / "paper"))),
                        ("caffe", caffe_workdir(str(tmp / "caffe"), tmp))):
    trained = inference.load(workdir)
    batches = []
    for batch in (1, 3):
      crops, want = predicted_centre_crops(trained, batch, rng)
      assert 0.3 < want["probs"].max() < 0.99  # a softmax neither uniform nor saturated
      path = str(tmp / f"{name}_{batch}.npy")
      np.save(path, crops)
      batches.append((path, want))
    found[name] = (workdir, batches)
  return found


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["stablehlo", "onnx", "torch"])
def test_an_export_runs_without_alexnet_jax_and_gives_predicts_numbers(fmt, cases, tmp_path):
  if fmt == "onnx" and not HAS_ONNX:
    pytest.skip("needs the export extra (jax2onnx, onnxruntime)")
  if fmt == "torch" and not HAS_TORCH:
    pytest.skip("needs PyTorch")
  jobs, expected = [], {}
  for name, (workdir, batches) in cases.items():
    output = str(tmp_path / f"{name}{export.FORMATS[fmt][0]}")
    export.export(workdir, fmt=fmt, output=output)
    for crops, want in batches:
      out = str(tmp_path / os.path.basename(crops)[:-4])
      jobs.append({"format": fmt, "file": output, "crops": crops, "out": out})
      expected[out] = want
  run_without_alexnet_jax(tmp_path, RUNNER, jobs)
  for out, want in expected.items():
    probs, fc7 = np.load(out + "_probs.npy"), np.load(out + "_fc7.npy")
    assert probs.shape == want["probs"].shape
    np.testing.assert_allclose(probs, want["probs"], atol=1e-4, err_msg=out)
    np.testing.assert_allclose(fc7, want["fc7"], rtol=1e-4, atol=1e-4 * np.abs(want["fc7"]).max(),
                               err_msg=out)


def _centre_crops_and_predictions(path, overrides, seed):
  """(the restored network of a `paper_geometry_workdir` with `overrides`, the centre crops of
  three random images in its stored form, `predict`'s outputs for them)."""
  trained = inference.load(paper_geometry_workdir(path, overrides))
  crops, want = predicted_centre_crops(trained, 3, np.random.default_rng(seed))
  assert np.ptp(want["probs"], axis=0).max() > 0.005  # 500x the tolerance: they depend on the image
  return trained, crops, want


def _assert_predicts(probs, fc7, want):
  np.testing.assert_allclose(np.asarray(probs), want["probs"], atol=1e-5)
  np.testing.assert_allclose(np.asarray(fc7), want["fc7"], rtol=1e-4,
                             atol=1e-5 * np.abs(want["fc7"]).max())


@pytest.mark.parametrize("overrides", [(), ("data.pixel_scale=0.05",),
                                       ("data.pixel_scale=0.05", "data.mean_patch=centre"),
                                       ("model.removed_conv=conv3", "data.pixel_scale=0.05")])
def test_the_exported_function_computes_predicts_numbers_at_any_pixel_scale(overrides, tmp_path):
  """What the ONNX and StableHLO files hold (`inference_function`: the mean and the pixel
  scale baked in) gives `predict`'s centre-crop numbers. Mutation: the crops divided by the
  pixel scale -> red (the export test's workdirs have a scale of 1)."""
  trained, crops, want = _centre_crops_and_predictions(str(tmp_path / "run"), overrides, 3)
  _assert_predicts(*export.inference_function(trained)(crops), want)


def test_only_the_onnx_format_needs_jax2onnx(tmp_path, monkeypatch):
  """Without jax2onnx, --format=onnx is one line saying what to install and writes nothing;
  --format=stablehlo still exports. Mutation: the jax2onnx check for every format but onnx ->
  red."""
  import importlib.util

  find_spec = importlib.util.find_spec
  monkeypatch.setattr(importlib.util, "find_spec",
                      lambda name, *a: None if name == "jax2onnx" else find_spec(name, *a))
  workdir = paper_geometry_workdir(str(tmp_path / "paper"))
  onnx = tmp_path / "m.onnx"
  with pytest.raises(UserError, match=r"^this --format needs jax2onnx: pip install "
                                      r"'alexnet_jax\[export\]'$"):
    export.export(workdir, fmt="onnx", output=str(onnx))
  assert not onnx.exists() and not os.path.exists(f"{onnx}.md")
  written = export.export(workdir, fmt="stablehlo", output=str(tmp_path / "m.stablehlo"))
  assert written["bytes"] > 0 and os.path.exists(written["model_card"])


@pytest.mark.skipif(not HAS_TORCH, reason="needs PyTorch")
@pytest.mark.parametrize("overrides", [
    ("model.lrn_alpha_over_size=True", "model.lrn_conv1_pre_relu=True",
     "model.response_norm=True", "data.mean_patch=centre"),
    ("model.extra_conv6=True", "model.conv6_across_columns=True"),
    ("model.extra_conv6=True",),
    ("model.activation=tanh", "model.dropout_form=inverted", "model.lrn=False"),
    ("model.columns=1", "model.dropout=0.3", "data.pixel_scale=0.05"),
    ("model.removed_conv=conv2", "data.pixel_scale=0.05"),
    ("model.removed_conv=conv3", "data.pixel_scale=0.05"),
], ids=["paper_code", "conv6_across", "conv6_own", "tanh_inverted_no_lrn", "one_column",
        "no_conv2", "no_conv3"])
def test_the_torch_network_computes_predicts_numbers_in_every_variant(overrides, tmp_path):
  """`torch_module` writes the network again with torch's layers: each variant of the network
  it spells out (the 2012 code's pre-ReLU LRN and response norm, conv6 over both columns or its
  own, tanh, dropout's two forms, no LRN, one column, a pixel scale, §7's conv2 or conv3
  removed) gives `predict`'s numbers.
  Mutations: conv6 grouped when across the columns; the response norm's window sum without n²;
  LRN after the ReLU at conv1 when pre-ReLU; tanh as ReLU; the test-time scale `1 - dropout`
  taken for inverted dropout; LRN applied with lrn=False; the crops divided by the pixel scale
  -> each red (conv6's, the response norm's, the pre-ReLU LRN's and tanh's survived the export
  test above: its two workdirs use none of them)."""
  import torch

  trained, crops, want = _centre_crops_and_predictions(str(tmp_path / "run"), overrides, 2)
  with torch.no_grad():
    probs, fc7 = export.torch_module(trained)(torch.from_numpy(crops))
  _assert_predicts(probs.numpy(), fc7.numpy(), want)


def test_the_model_card_says_the_run_the_input_and_the_classes(straight_run, tmp_path):
  straight_run, _ = straight_run
  output = str(tmp_path / "model.stablehlo")
  written = export.export(straight_run, fmt="stablehlo", output=output, best=True)
  card = open(written["model_card"]).read()
  trained = inference.load(straight_run, best=True)
  metrics = [json.loads(line) for line in open(os.path.join(straight_run, "metrics.jsonl"))]
  at_best = [r for r in metrics if r["split"] == "eval" and r["step"] == trained.step][-1]
  assert trained.step != metrics[-1]["step"]  # the best is not the last: the card says the best's
  assert (f"centre crop: top-1 {100 * (1 - at_best['top1_error']):.2f} %, top-5 "
          f"{100 * (1 - at_best['top5_error']):.2f} % accuracy (step {trained.step})") in card
  m, d = trained.config.model, trained.config.data
  assert f'def stored(path, size={d.image_size}, mode="RGB"):' in card
  assert "Ten crops (§4.1, `predict --ten_crop`) are not this model's" in card  # mean at the crop
  assert f"uint8 [N, {m.input_size}, {m.input_size}, {m.in_channels}]" in card
  assert card.endswith("".join(f"{i}: {n}\n" for i, n in enumerate(trained.class_names)))
  assert f"(step {written['step']})" in card


def test_bad_requests_are_one_line_errors(tmp_path):
  workdir = paper_geometry_workdir(str(tmp_path / "paper"))
  with pytest.raises(UserError, match="--format must be one of onnx, stablehlo, torch"):
    export.export(workdir, fmt="tflite", output=str(tmp_path / "m.tflite"))
  with pytest.raises(UserError, match=r"\.stablehlo"):
    export.export(workdir, fmt="stablehlo", output=str(tmp_path / "m.onnx"))
  with pytest.raises(UserError, match="no checkpoint"):
    export.export(str(tmp_path / "absent"), fmt="stablehlo", output=str(tmp_path / "m.stablehlo"))


@pytest.mark.skipif(not HAS_ONNX, reason="needs the export extra (jax2onnx, onnxruntime)")
def test_a_jax_that_jax2onnx_cannot_trace_with_is_one_line(tmp_path, monkeypatch):
  """jax2onnx 0.13.0 under jax 0.12 (Python 3.12 and later get it without the export extra's
  bound) failed in jax's internals with a traceback."""
  import jax2onnx

  def internals_moved(*args, **kwargs):
    raise AttributeError("module 'jax._src.core' has no attribute 'ClosedJaxpr'")

  monkeypatch.setattr(jax2onnx, "to_onnx", internals_moved)
  workdir = paper_geometry_workdir(str(tmp_path / "paper"))
  output = tmp_path / "m.onnx"
  with pytest.raises(UserError, match=r"^jax2onnx 0\.13\.0 cannot trace with jax [\d.]+ "
                                      r"\(AttributeError: module 'jax._src.core' has no attribute "
                                      r"'ClosedJaxpr'\): pip install 'alexnet_jax\[export\]'"):
    export.export(workdir, fmt="onnx", output=str(output))
  assert not output.exists() and not os.path.exists(f"{output}.md")


@pytest.mark.skipif(not HAS_ONNX, reason="needs the export extra (jax2onnx, onnxruntime)")
def test_a_bfloat16_workdir_exports_an_onnx_file_that_onnx_runtime_loads(tmp_path):
  """A workdir trained in bfloat16 exported an ONNX file (exit 0, with a card) that ONNX
  Runtime could not load. Mutation: the export spec keeping the run's compute dtype -> red."""
  import onnxruntime

  from alexnet_jax import configuration

  workdir = paper_geometry_workdir(str(tmp_path / "paper"))
  meta_config = inference.load(workdir).config
  config = configuration.load(os.path.join(os.path.dirname(__file__), "..", "configs",
                                           "paper.py"),
                              [f"{k}={v}" for k, v in configuration.flat(meta_config).items()
                               if k.startswith("model.") and k != "model.dtype"]
                              + ["data.name=synthetic", "model.dtype=bfloat16"])
  _, abstract = models.abstract_model(config.model)
  import jax

  params = jax.tree.map(lambda a: np.zeros(a.shape, np.float32) + 0.01, abstract)
  convert.write_workdir(str(tmp_path / "bf16"), config, params,
                        np.full((256, 256, 3), 100, np.float32), converted_from=workdir)
  model = str(tmp_path / "bf16.onnx")
  export.export(str(tmp_path / "bf16"), fmt="onnx", output=model)
  session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
  probs, _ = session.run(["probs", "fc7"], {"crops": np.zeros((1, 224, 224, 3), np.uint8)})
  assert probs.shape == (1, 10) and abs(float(probs.sum()) - 1) < 1e-5
  assert "computed in float32 (trained in bfloat16)" in open(model + ".md").read()
