"""The input pipeline's geometry (§2, §4.1), exact evaluation and iterator restore."""

import gzip
import os

import numpy as np
import pytest

from alexnet_jax.cli import UserError
from alexnet_jax.data import pipeline, sources
from conftest import load_config

FASHION = "/usr/share/datasets/fashion-mnist"


def test_the_ten_crop_boxes_of_section_4_1():
  assert pipeline.crop_boxes(256, 224) == [(0, 0), (0, 32), (32, 0), (32, 32), (16, 16)]
  image = np.arange(6 * 6, dtype=np.uint8).reshape(6, 6, 1)
  mean = np.zeros((6, 6, 1), np.float32)
  ten = pipeline.EvalCrops(mean, 4, True, 1.0).map({"image": image, "label": 3})["image"]
  assert ten.shape == (10, 4, 4, 1)
  np.testing.assert_array_equal(ten[0], image[:4, :4])
  np.testing.assert_array_equal(ten[3], image[2:, 2:])
  np.testing.assert_array_equal(ten[4], image[1:5, 1:5])
  np.testing.assert_array_equal(ten[5:], ten[:5, :, ::-1])
  centre = pipeline.EvalCrops(mean, 4, False, 1.0).map({"image": image, "label": 3})["image"]
  np.testing.assert_array_equal(centre, image[1:5, 1:5])


def test_train_crop_subtracts_the_matching_crop_of_the_mean_and_flips():
  rng_image = np.random.default_rng(0)
  image = rng_image.integers(0, 255, (8, 8, 3), dtype=np.uint8)
  mean = rng_image.normal(size=(8, 8, 3)).astype(np.float32)
  aug = pipeline.TrainAugment(mean, 5, True, 0.5)
  seen = set()
  for seed in range(40):
    out = aug.random_map({"image": image, "label": 1}, np.random.default_rng(seed))["image"]
    centred = (image.astype(np.float32) - mean) * 0.5
    matches = [(t, l, f) for t in range(4) for l in range(4) for f in (False, True)
               if np.allclose(out, (centred[t:t + 5, l:l + 5, :][:, ::-1] if f
                                    else centred[t:t + 5, l:l + 5]))]
    assert len(matches) == 1
    seen.add(matches[0])
  assert len(seen) > 20 and {f for *_, f in seen} == {False, True}


def _synthetic_config():
  config = load_config("tiny")
  config.data.update(dict(name="synthetic", image_size=36, batch_size=8, eval_batch_size=16,
                          synthetic_train_size=40, synthetic_eval_size=37))
  return config


def test_evaluation_counts_every_example_once_and_batches_are_full():
  inp = pipeline.build_input(_synthetic_config())
  batches = list(inp.eval_batches(False))
  assert [b["image"].shape for b in batches] == [(16, 32, 32, 3)] * 3
  assert sum(b["mask"].sum() for b in batches) == 37
  ten = next(iter(inp.eval_batches(True)))
  assert ten["image"].shape == (16, 10, 32, 32, 3)


def test_same_seed_same_batches_and_a_restored_iterator_continues_exactly():
  a, b = (pipeline.build_input(_synthetic_config()) for _ in range(2))
  for _ in range(3):
    x, y = next(a.train), next(b.train)
    np.testing.assert_array_equal(x["image"], y["image"])
  state = a.train.get_state()
  expected = [next(a.train) for _ in range(6)]  # crosses an epoch boundary (5 steps / epoch)
  b.train.set_state(state)
  for want in expected:
    got = next(b.train)
    np.testing.assert_array_equal(got["image"], want["image"])
    np.testing.assert_array_equal(got["label"], want["label"])


def test_a_corrupt_idx_file_is_a_one_line_error(tmp_path):
  for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
    with gzip.open(tmp_path / name, "wb") as f:
      f.write(b"\x00\x00\x08\x03" + (5).to_bytes(4, "big") + b"\x00" * 20)
  with pytest.raises(UserError, match="truncated"):
    sources.fashion_mnist(str(tmp_path), "train", size=32)
  with pytest.raises(UserError, match="apt-get install dataset-fashion-mnist"):
    sources.fashion_mnist(str(tmp_path / "nope"), "train", size=32)


@pytest.mark.skipif(not os.path.exists(FASHION), reason="needs Debian's dataset-fashion-mnist")
def test_fashion_mnist_from_the_debian_package():
  train = sources.fashion_mnist(FASHION, "train", size=32)
  test = sources.fashion_mnist(FASHION, "test", size=32)
  assert train.images.shape == (60000, 32, 32, 1) and test.images.shape == (10000, 32, 32, 1)
  assert train.images[:, :2].max() == 0 and train.images.max() == 255
  assert np.bincount(train.labels).tolist() == [6000] * 10
  with pytest.raises(UserError, match="even padding"):
    sources.fashion_mnist(FASHION, "test", size=31)
