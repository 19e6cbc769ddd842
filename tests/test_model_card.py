"""The model card: its Python block, run in a fresh process without alexnet_jax (Pillow, NumPy
and ONNX Runtime only) on JPEGs and PNGs, gives `predict`'s probabilities, for the embedded
default's form (Fashion-MNIST: 28x28 grey padded to 32, 28 crops), the paper's (shorter side to
256, 224 crops) and a converted Caffe workdir's (squashed to 227+)."""

import importlib.util
import os
import re

import numpy as np
import pytest
from PIL import Image

from alexnet_jax import export, inference, model_card
from alexnet_jax.data import sources
from conftest import load_config
from test_convert import caffe_workdir
from test_export import paper_geometry_workdir, random_workdir, run_without_alexnet_jax

HAS_ONNX = all(importlib.util.find_spec(m) for m in ("jax2onnx", "onnxruntime"))

RUNNER = r"""
import json, sys
import numpy as np
import onnxruntime
job = json.load(open(sys.argv[1]))
namespace = {}
exec(open(job["card_code"]).read(), namespace)
crops = np.stack([namespace["preprocess"](p) for p in job["images"]])
session = onnxruntime.InferenceSession(job["model"], providers=["CPUExecutionProvider"])
probs, _ = session.run(["probs", "fc7"], {"crops": crops})
np.save(job["out"], probs)
print(json.dumps({"imported": sorted(m for m in sys.modules if m.startswith("alexnet_jax"))}))
"""


def fashion_workdir(path: str) -> str:
  """configs/fashion_mnist.py's network with random He weights (softmax not saturated)."""
  return random_workdir(path, load_config("fashion_mnist"), seed=2, fc8_gain=4.0, mean=(20, 90))


def _images(folder):
  """JPEGs large enough for the reduced-scale decode (colour, grey, non-square), PNGs small and
  large, RGBA and 16-bit, wider and taller than 8:1: what users feed."""
  rng = np.random.default_rng(5)
  smooth = lambda h, w: np.clip(np.cumsum(rng.normal(0, 6, (h, w, 3)), axis=1) + 128, 0,
                                255).astype(np.uint8)
  os.makedirs(folder)
  Image.fromarray(smooth(560, 700)).save(f"{folder}/wide.jpg", quality=90)
  Image.fromarray(smooth(900, 600)).save(f"{folder}/tall.jpg", quality=85)
  Image.fromarray(smooth(300, 300)[..., 0]).save(f"{folder}/grey.jpg")
  Image.fromarray(smooth(120, 80)).save(f"{folder}/small.png")
  Image.fromarray(smooth(1400, 1500)).save(f"{folder}/huge.png")  # 6x Caffe's 227: reduced first
  Image.fromarray(np.dstack([smooth(260, 300), np.full((260, 300), 200, np.uint8)])).save(
      f"{folder}/alpha.png")
  Image.fromarray((smooth(64, 90)[..., 0].astype(np.uint16) * 257)).save(f"{folder}/wide16.png")
  Image.fromarray(smooth(40, 500)).save(f"{folder}/banner.png")  # over 8:1: its centre kept
  Image.fromarray(smooth(420, 36)).save(f"{folder}/pole.png")
  return sorted(os.path.join(folder, n) for n in os.listdir(folder))


@pytest.mark.slow
@pytest.mark.skipif(not HAS_ONNX, reason="needs the export extra (jax2onnx, onnxruntime)")
def test_the_cards_preprocessing_and_the_onnx_model_give_predicts_probabilities(tmp_path):
  """Mutations: the card's `draft` line dropped (a full JPEG decode) -> red on the JPEGs; its
  resize filter BILINEAR -> BICUBIC -> red; Fashion-MNIST's 28x28 read as 32x32 (the card's
  old advice) -> red; the central 8:1 part of a wider or a taller image cut at another
  place -> red."""
  paths = _images(str(tmp_path / "images"))
  for name, workdir in (("fashion", fashion_workdir(str(tmp_path / "fashion"))),
                        ("paper", paper_geometry_workdir(str(tmp_path / "paper"))),
                        ("caffe", caffe_workdir(str(tmp_path / "caffe"), tmp_path))):
    trained = inference.load(workdir)
    good, stored, bad = trained.read_images(paths)
    assert not bad and good == paths
    want = trained.predict(stored)["probs"]
    assert 0.2 < want.max() < 0.999, name  # neither uniform nor saturated
    model = str(tmp_path / f"{name}.onnx")
    export.export(workdir, fmt="onnx", output=model)
    card = open(model + ".md", encoding="utf-8").read()
    code = re.search(r"```python\n(.*?)```", card, re.S).group(1)
    (tmp_path / f"{name}_card.py").write_text(code)
    job = {"card_code": str(tmp_path / f"{name}_card.py"), "images": paths, "model": model,
           "out": str(tmp_path / f"{name}_probs.npy")}
    run_without_alexnet_jax(tmp_path, RUNNER, job)
    np.testing.assert_allclose(np.load(job["out"]), want, atol=1e-4, err_msg=name)


@pytest.mark.parametrize("overrides", [(), ("data.image_size=28",), ("data.image_size=33",
                                                                      "model.input_size=30")])
def test_the_cards_code_makes_the_fashion_mnist_crops_the_network_reads(tmp_path, overrides):
  """The card's Python block, run in-process, against the crops inference makes for a
  Fashion-MNIST network: 28x28 padded to 32 or not at all, and upscaled above 32 (the full
  network's form; 33 stands for 256 here: the same branch). Mutations in the card's
  `fashion_mnist_stored`: the upscale from channel 1, the branch at `size <= 33` -> red."""
  config = load_config("fashion_mnist", "", overrides)
  namespace = {}
  exec(model_card.preprocessing_code(config), namespace)
  decode = sources.stored_decoder(config.data, 1)
  crop = int(config.model.input_size)
  for path in _images(str(tmp_path / "images")):
    stored = decode(open(path, "rb").read())
    top = (stored.shape[0] - crop) // 2
    np.testing.assert_array_equal(namespace["preprocess"](path),
                                  stored[top:top + crop, top:top + crop], err_msg=path)


def test_the_card_offers_ten_crops_only_where_training_subtracted_the_centre_patch(tmp_path):
  """The exported model subtracts the mean's centre patch: its ten crops are the run's only when
  training did the same (`data.mean_patch=centre`). Mutation: the mean-patch test inverted ->
  red."""

  for overrides, mean, ten_crops in (
      ((), "the mean image (at the crop)", "are not this model's: training subtracted"),
      (("data.mean_patch=centre",), "the mean image (its centre patch)",
       "the four corner and the centre 224x224 patches of `stored(path)` and their mirror")):
    workdir = paper_geometry_workdir(str(tmp_path / "-".join(overrides or ("crop",))), overrides)
    card = model_card.model_card(inference.load(workdir), "onnx", "m.onnx", workdir)
    assert f"* Mean subtracted: {mean}; pixel scale 1." in card
    assert ten_crops in card


def test_the_cards_accuracy_is_the_exported_steps_or_the_last_said_as_such(tmp_path):
  """The card's figures: none for a run without metrics (a converted network); the evaluation
  at the exported checkpoint's step where there is one, for each split apart; else the last
  one, naming the checkpoint's step. Mutations: the step match `==` -> `!=` -> red; the
  fallback to the last evaluation dropped -> red; the note's `==` -> `!=` -> red."""
  from alexnet_jax import metrics

  workdir = paper_geometry_workdir(str(tmp_path / "paper"))
  trained = inference.load(workdir)
  card = lambda: model_card.model_card(trained, "onnx", "m.onnx", workdir)
  assert "* not recorded (no metrics.jsonl beside the checkpoints)." in card()

  with metrics.MetricWriter(workdir) as writer:  # the rows as a run logs them
    for step, split, top1 in ((trained.step, "train", 0.9), (trained.step, "eval", 0.40),
                              (trained.step + 7, "eval", 0.30),
                              (trained.step + 7, "eval_10crop", 0.20)):
      writer.write(step, split, {"loss": 1.0, "top1_error": top1, "top5_error": top1 / 2})
  text = card()
  assert (f"* centre crop: top-1 60.00 %, top-5 80.00 % accuracy (step {trained.step}).\n"
          in text)
  assert (f"* ten crops (§4.1): top-1 80.00 %, top-5 90.00 % accuracy (step "
          f"{trained.step + 7}; the exported checkpoint is step {trained.step}).\n" in text)
  assert "not recorded" not in text
