"""`python -m alexnet_jax.features`: fc7 descriptors and nearest neighbours (§6.1, Figure 4
right)."""


import numpy as np
import pytest
from PIL import Image

from alexnet_jax import inference
from alexnet_jax.data import sources
from alexnet_jax.errors import UserError
from conftest import sample_images


def test_nearest_neighbours_match_a_brute_force_search():
  from alexnet_jax.features import nearest

  rng = np.random.default_rng(5)
  database = rng.normal(size=(1000, 16)).astype(np.float32)
  database[7] = np.nan  # an unreadable image's row never matches
  queries = rng.normal(size=(6, 16)).astype(np.float32)
  queries[0] = database[123]
  dist, index = nearest(queries, database, k=5, chunk=256)
  brute = ((queries[:, None] - database[None]) ** 2).sum(-1)
  brute[np.isnan(brute)] = np.inf
  np.testing.assert_array_equal(np.asarray(index), np.argsort(brute, axis=1)[:, :5])
  np.testing.assert_allclose(np.asarray(dist), np.sort(brute, axis=1)[:, :5], rtol=1e-4, atol=1e-4)
  assert int(index[0, 0]) == 123


def test_features_writes_fc7_and_a_neighbour_grid(straight_run, tmp_path, capsys):
  from alexnet_jax import features

  workdir, _ = straight_run
  feats = tmp_path / "train_fc7.npy"
  grid = tmp_path / "nn.png"
  features.extract_and_search(workdir, split="train", output=str(feats), neighbors=4,
                              num_queries=3, grid=str(grid))
  array = np.load(feats, allow_pickle=False)
  assert array.shape == (64, 256) and array.dtype == np.float32 and (array >= 0).all()
  assert capsys.readouterr().out.count("validation #") == 3
  with Image.open(grid) as png:
    assert png.size == (800, 480)  # 5 columns x 3 rows of 1.6 in at 100 dpi
  trained = inference.load(workdir)
  np.testing.assert_allclose(array[:4], trained.predict(_train_images(trained)[:4])["fc7"],
                             rtol=1e-4, atol=1e-5)
  folder = tmp_path / "folder"
  sample_images(str(folder), n=2)
  (folder / "x" / "broken.png").write_bytes(b"nope")
  features.extract_and_search(workdir, folder=str(folder), output=str(tmp_path / "folder.npy"))
  rows = np.load(tmp_path / "folder.npy")
  assert rows.shape == (3, 256)
  assert np.isnan(rows).all(axis=1).tolist() == [False, True, False]  # sorted: 3/, x/broken, x/


def _train_images(trained):
  m = trained.config.model
  return sources.load(trained.config.data, channels=m.in_channels,
                      num_classes=m.num_classes).train.images


def test_features_paths_that_cannot_work_are_one_line(straight_run, tmp_path):
  from alexnet_jax import features

  workdir, _ = straight_run
  with pytest.raises(UserError, match="the directory .*nowhere does not exist"):
    features.extract_and_search(workdir, split="train", output=str(tmp_path / "nowhere" / "f.npy"))
  (tmp_path / "bad.npy").write_bytes(b"not numpy")
  with pytest.raises(UserError, match="cannot read --database"):
    features.extract_and_search(workdir, neighbors=2, database=str(tmp_path / "bad.npy"),
                                grid=str(tmp_path / "g.png"))
  np.save(tmp_path / "vector.npy", np.zeros(5))
  with pytest.raises(UserError, match="is not a feature matrix"):
    features.extract_and_search(workdir, neighbors=2, database=str(tmp_path / "vector.npy"),
                                grid=str(tmp_path / "g.png"))


def test_more_neighbours_than_readable_training_images_is_one_line(straight_run, tmp_path):
  """It drew fake 'inf' neighbours."""
  from alexnet_jax import features

  with pytest.raises(UserError, match="--neighbors=65 is more than the 64 readable training"):
    features.extract_and_search(straight_run[0], neighbors=65, grid=str(tmp_path / "g.png"))
