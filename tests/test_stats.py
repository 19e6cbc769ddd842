"""Training-set statistics (§2 mean image, §4.1 RGB PCA): against NumPy, the published
fallback against a real photograph, and the statistics command."""

import os

import numpy as np
import pytest
from PIL import Image

from alexnet_jax.data.stats import Stats, compute
from alexnet_jax.errors import UserError
from conftest import build_input, folder_config, image_folder_tree


def test_the_published_pca_fallback_has_the_scale_of_a_real_photographs_statistics():
  """The fallback and `python -m alexnet_jax.data.stats` hold one quantity, √λ of 0-255 RGB
  values: the published ImageNet eigenvalues are for 0-1 values, and used as if they were
  √λ in grey levels they fell 2-15x short of computed statistics."""
  import matplotlib

  photo = os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "sample_data",
                       "grace_hopper.jpg")
  with Image.open(photo) as im:
    computed = compute([np.asarray(im.convert("RGB"))[None]])
  fallback = Stats.imagenet_defaults(8)
  ratio = np.sqrt(fallback.eigval) / np.sqrt(computed.eigval)
  assert np.all((ratio > 1 / 2.5) & (ratio < 2.5)), ratio
  assert abs(float(fallback.eigvec[:, 0] @ computed.eigvec[:, 0])) > 0.98  # the luminance axis
  # §4.1's shift `lighting_scale @ α` (α ~ N(0, σ²) per component) has σ² times the pixels'
  # covariance (mutation: λ in place of √λ in `Stats.lighting_scale` -> red).
  pixels = np.asarray(Image.open(photo).convert("RGB"), np.float64).reshape(-1, 3)
  np.testing.assert_allclose(computed.lighting_scale @ computed.lighting_scale.T,
                             np.cov(pixels, rowvar=False, bias=True), rtol=1e-3, atol=1e-2)
  np.testing.assert_allclose(np.sqrt(fallback.eigval), 255 * np.sqrt([0.2175, 0.0188, 0.0045]),
                             rtol=1e-3)
  # The published eigenvectors are orthonormal to their 4 decimals (mutation: one entry
  # doubled -> red); a rounding's negative eigenvalue gives no shift along its axis (mutation:
  # eigenvalues under 1 raised to 1 -> red).
  np.testing.assert_allclose(fallback.eigvec.T @ fallback.eigvec, np.eye(3), atol=2e-4)
  small = Stats(fallback.mean, np.array([4.0, 0.25, -1e-6], np.float32), fallback.eigvec, 1)
  np.testing.assert_allclose(small.lighting_scale, fallback.eigvec * [2.0, 0.5, 0.0], rtol=1e-6)

def test_statistics_match_numpy_mean_and_covariance_eigenvectors():
  rng = np.random.default_rng(2)
  base = rng.normal(size=(3, 3))
  pixels = rng.normal(size=(50 * 6 * 6, 3)) @ base * 30 + 120
  images = np.clip(pixels, 0, 255).astype(np.uint8).reshape(50, 6, 6, 3)
  stats = compute([images[:17], images[17:40], images[40:]])
  np.testing.assert_allclose(stats.mean, images.astype(np.float64).mean(0), rtol=1e-5)
  cov = np.cov(images.reshape(-1, 3).astype(np.float64), rowvar=False, bias=True)
  eigval, eigvec = np.linalg.eigh(cov)
  np.testing.assert_allclose(stats.eigval, eigval[::-1], rtol=1e-4)
  for i in range(3):  # eigenvectors up to sign
    assert abs(abs(float(stats.eigvec[:, i] @ eigvec[:, 2 - i])) - 1) < 1e-4
  assert stats.count == 50
  grey = compute([np.repeat(images[..., :1], 3, axis=-1)])  # one axis of variance; two of none
  assert grey.eigval[0] > 100 and np.all(grey.eigval[1:] >= 0) and np.all(grey.eigval[1:] < 1e-6)


def test_the_first_images_of_an_in_memory_split_in_batches():
  from types import SimpleNamespace

  from alexnet_jax.data.stats import stored_images

  split = SimpleNamespace(encoded=False, images=np.arange(10 * 2 * 2 * 3).reshape(10, 2, 2, 3))
  batches = list(stored_images(split, 2, 3, limit=7, batch=3))
  assert [len(b) for b in batches] == [3, 3, 1]
  np.testing.assert_array_equal(np.concatenate(batches), split.images[:7])


def test_the_channel_mean_is_the_mean_images_average_per_channel():
  mean = np.random.default_rng(2).uniform(0, 255, (6, 5, 3)).astype(np.float32)
  stats = Stats(mean, np.ones(3, np.float32), np.eye(3, dtype=np.float32), 10)
  flat = stats.channel_mean()
  assert flat.mean.shape == (6, 5, 3) and flat.count == 10
  np.testing.assert_allclose(flat.mean, np.broadcast_to(
      [[[mean[..., c].mean() for c in range(3)]]], (6, 5, 3)), rtol=1e-6)


def test_statistics_command_writes_a_file_that_training_loads(tmp_path, capsys):
  from alexnet_jax.data import stats

  image_folder_tree(tmp_path)
  config = folder_config(tmp_path)
  stats.write_statistics(config.data, 3, 3)
  out = capsys.readouterr().out
  assert "eigenvalues:" in out and "images: 12" in out
  written = tmp_path / "alexnet_jax_stats" / "image_folder-36.npz"  # next to the data
  assert f"written: {written}" in out
  inp = build_input(config)
  assert inp.stats.count == 12 and inp.stats.mean.shape == (36, 36, 3)
  with open(written, "r+b") as f:
    f.truncate(100)
  with pytest.raises(UserError, match="cannot read the dataset statistics"):
    build_input(config)


def test_statistics_that_are_not_finite_are_refused(tmp_path):
  """Mutation: the finiteness check in Stats.load dropped -> red."""
  import numpy as np
  import pytest

  from alexnet_jax.data.stats import Stats
  from alexnet_jax.errors import UserError

  good = Stats.imagenet_defaults(4)
  bad = Stats(np.full_like(good.mean, np.nan), good.eigval, good.eigvec, 0)
  bad.save(str(tmp_path / "s.npz"))
  with pytest.raises(UserError, match="not finite"):
    Stats.load(str(tmp_path / "s.npz"))


def test_a_statistics_file_set_in_the_config_is_read_for_in_memory_data_too(tmp_path):
  """Mutation: dataset_stats computing in-memory data's statistics before looking at
  data.stats_file (as it did: the file was passed over without a word) -> red."""
  from conftest import synthetic_config

  config = synthetic_config()
  computed = build_input(config).stats
  assert computed.count > 0
  mine = Stats(np.full_like(computed.mean, 7.0), computed.eigval, computed.eigvec, 3)
  mine.save(str(tmp_path / "mine.npz"))
  config.data.stats_file = str(tmp_path / "mine.npz")
  inp = build_input(config)
  assert inp.stats.count == 3 and float(inp.stats.mean.max()) == 7.0
  config.data.stats_file = str(tmp_path / "missing.npz")
  with pytest.raises(UserError, match="cannot read the dataset statistics"):
    build_input(config)


def test_a_large_training_set_without_statistics_takes_the_published_ones_or_says_to_compute(
    tmp_path, monkeypatch):
  """More image files than are computed at the start and no statistics file: ImageNet's
  published values for RGB, one line naming the command for greyscale (no published values).
  Mutation: the two cases swapped -> red."""
  from alexnet_jax.data import stats

  image_folder_tree(tmp_path)
  monkeypatch.setattr(stats, "COMPUTED_AT_START", 5)  # the tree has 12 training images
  config = folder_config(tmp_path)
  published = build_input(config).stats
  assert published.count == 0
  np.testing.assert_array_equal(published.mean, Stats.imagenet_defaults(36).mean)
  assert not os.path.exists(stats.default_path(config.data))  # nothing computed or written
  config.model.in_channels, config.data.pca_lighting = 1, 0.0
  with pytest.raises(UserError, match="no dataset statistics at .*python -m "
                                      "alexnet_jax.data.stats --config=..."):
    build_input(config)


def test_statistics_of_other_shapes_or_another_image_size_are_refused(tmp_path):
  """A file whose arrays do not fit together, or the statistics of another stored size: one
  line each before anything trains. Mutations: the shape check in Stats.load dropped, or
  the size check in dataset_stats -> red."""
  from conftest import synthetic_config

  good = Stats.imagenet_defaults(8)
  Stats(good.mean, good.eigval[:2], good.eigvec, 0).save(str(tmp_path / "odd.npz"))
  with pytest.raises(UserError, match=f"^{tmp_path}/odd.npz holds statistics of unexpected "
                                      "shapes$"):
    Stats.load(str(tmp_path / "odd.npz"))
  good.save(str(tmp_path / "8.npz"))
  config = synthetic_config()
  config.data.stats_file = str(tmp_path / "8.npz")
  with pytest.raises(UserError, match=r"^the statistics in .*/8.npz are for images of shape "
                                      r"\(8, 8, 3\), not 36x36x3$"):
    build_input(config)


def test_a_training_split_with_no_readable_image_has_no_statistics(tmp_path):
  """Mutation: the empty count let through (a mean of NaN from 0/0) -> red."""
  image_folder_tree(tmp_path)
  for root, _, files in os.walk(tmp_path / "train"):
    for name in files:
      with open(os.path.join(root, name), "wb") as f:
        f.write(b"not an image")
  with pytest.raises(UserError, match="^no readable training images to compute statistics "
                                      "from$"):
    build_input(folder_config(tmp_path))


def test_statistics_that_cannot_be_written_say_where_else_to_put_them(tmp_path):
  """Beside read-only data the command names its --output and the config's stats_file.
  Mutation: the save's error let through without the advice -> red."""
  from alexnet_jax.data import stats

  image_folder_tree(tmp_path)
  (tmp_path / "file").write_text("")
  with pytest.raises(UserError, match=r"^cannot write .*/file/s.npz \(File exists\): pass "
                                      r"--output=PATH and set --config.data.stats_file=PATH when "
                                      r"training$"):
    stats.write_statistics(folder_config(tmp_path).data, 3, 3, output=str(tmp_path / "file" /
                                                                            "s.npz"))
