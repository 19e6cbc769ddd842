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


def test_the_grid_frames_the_query_in_red_and_shows_grey_images_in_grey(tmp_path, drawn):
  """A grey row (Fashion-MNIST's one channel) is drawn as a grey-scale picture, an RGB row as
  it is; the query alone is framed in red with a red title; an empty cell is blank.
  Mutations: `shape[-1] == 1` -> `shape[-2]` or `== 2`, channel 1 drawn, the frame or the red
  title on another column -> red."""
  from matplotlib.colors import to_rgba

  from alexnet_jax import features

  rng = np.random.default_rng(0)
  grey = [rng.integers(0, 256, (8, 8, 1), dtype=np.uint8) for _ in range(3)]
  rgb = [rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) for _ in range(2)]
  features.draw_grid(str(tmp_path / "grid.png"), [grey, rgb],
                     [["query: a\nbag", "bag\n1.5", "coat\n2"], ["query: b", "cat\n3"]])
  axes = drawn[0].axes
  cell = lambda r, c: axes[r * 3 + c]
  np.testing.assert_array_equal(cell(0, 0).get_images()[0].get_array(), grey[0][..., 0])
  assert cell(0, 2).get_images()[0].get_cmap().name == "gray"
  np.testing.assert_array_equal(cell(1, 1).get_images()[0].get_array(), rgb[1])
  for r in (0, 1):
    query = cell(r, 0)
    assert query.axison and query.title.get_color() == "tab:red"
    assert all(spine.get_edgecolor() == to_rgba("tab:red") for spine in query.spines.values())
    assert not cell(r, 1).axison and cell(r, 1).title.get_color() == "black"
  assert cell(1, 1).title.get_text() == "cat\n3" and not cell(1, 2).get_images()
  assert (tmp_path / "grid.png").stat().st_size > 0


def test_features_writes_fc7_with_names_and_labels_and_a_labelled_neighbour_grid(
    straight_run, tmp_path, capsys):
  from alexnet_jax import features

  workdir, _ = straight_run
  feats = tmp_path / "train_fc7.npz"
  grid = tmp_path / "nn.png"
  features.extract_and_search(workdir, split="train", output=str(feats), neighbors=4,
                              num_queries=3, grid=str(grid))
  with np.load(feats, allow_pickle=False) as saved:
    array, names, labels = saved["features"], saved["names"], saved["labels"]
    assert list(saved["class_names"]) == [str(i) for i in range(10)]
  assert array.shape == (64, 256) and array.dtype == np.float32 and (array >= 0).all()
  assert list(names[:2]) == ["train#0", "train#1"]
  trained = inference.load(workdir)
  train = sources.load(trained.config.data, channels=3, num_classes=10).train
  np.testing.assert_array_equal(labels, train.labels)
  out = capsys.readouterr().out
  query_lines = [l for l in out.splitlines() if l.startswith("validation #")]
  assert len(query_lines) == 3
  # Each neighbour printed with its class: the class of the training image it names.
  first = query_lines[0].split(": ", 1)[1].split(", ")
  for entry in first:
    index, cls = entry.split()[:2]
    assert cls == str(train.labels[int(index[1:])])
  with Image.open(grid) as png:
    assert png.size == (800, 525)  # 5 columns x 3 rows of 1.6 x 1.75 in at 100 dpi
  np.testing.assert_allclose(array[:4], trained.predict(train.images[:4])["fc7"],
                             rtol=1e-4, atol=1e-5)
  features.extract_and_search(workdir, neighbors=2, num_queries=1, database=str(feats),
                              grid=str(grid))  # the saved features searched again
  # Another checkpoint's (or model's) database is refused: it used to be searched. Mutation:
  # the checkpoint comparison dropped -> red.
  from alexnet_jax.errors import UserError

  with pytest.raises(UserError, match=r"computed by .*checkpoints/8, not by .*checkpoints/6"):
    features.extract_and_search(workdir, step=6, neighbors=2, num_queries=1,
                                database=str(feats), grid=str(grid))
  folder = tmp_path / "folder"
  sample_images(str(folder), n=2)
  (folder / "x" / "broken.png").write_bytes(b"nope")
  features.extract_and_search(workdir, folder=str(folder), output=str(tmp_path / "folder.npz"))
  with np.load(tmp_path / "folder.npz") as saved:
    rows = saved["features"]
    assert [n.split("/")[-2:] for n in saved["names"]] == [["3", "im1.png"], ["x", "broken.png"],
                                                           ["x", "im0.png"]]
    assert saved["labels"].tolist() == [3, -1, -1]  # folder '3' is a class name
  assert rows.shape == (3, 256)
  assert np.isnan(rows).all(axis=1).tolist() == [False, True, False]  # sorted: 3/, x/broken, x/


def test_features_paths_that_cannot_work_are_one_line(straight_run, tmp_path):
  from alexnet_jax import features

  workdir, _ = straight_run
  with pytest.raises(UserError, match="the directory .*nowhere does not exist"):
    features.extract_and_search(workdir, split="train", output=str(tmp_path / "nowhere" / "f.npz"))
  with pytest.raises(UserError, match="give a file name ending in .npz"):
    features.extract_and_search(workdir, split="train", output=str(tmp_path / "feats"))
  (tmp_path / "bad.npz").write_bytes(b"not numpy")
  # One neighbour is a search too (mutations: `neighbors > 1` for the database's read or the
  # grid's check -> red).
  with pytest.raises(UserError, match="cannot read --database"):
    features.extract_and_search(workdir, neighbors=1, database=str(tmp_path / "bad.npz"),
                                grid=str(tmp_path / "g.png"))
  with pytest.raises(UserError, match="give a file name ending in .png"):
    features.extract_and_search(workdir, neighbors=1, grid=str(tmp_path / "g.txt"))
  np.savez(tmp_path / "vector.npz", features=np.zeros(5), names=np.array(["a"]))
  with pytest.raises(UserError, match="is not a feature matrix"):
    features.extract_and_search(workdir, neighbors=2, database=str(tmp_path / "vector.npz"),
                                grid=str(tmp_path / "g.png"))


def test_more_neighbours_than_readable_training_images_is_one_line(straight_run, tmp_path):
  """It drew fake 'inf' neighbours."""
  from alexnet_jax import features

  with pytest.raises(UserError, match="--neighbors=65 is more than the 64 readable training"):
    features.extract_and_search(straight_run[0], neighbors=65, grid=str(tmp_path / "g.png"))


def test_an_image_folders_split_is_named_by_its_files_and_labelled_by_their_folders(tmp_path):
  """`--split=train` of a run on an image folder: each row named by its file and labelled by
  its class folder, an unreadable file's row NaN. Mutations: the file names taken only when
  their count differs from the split's, or only for a TFDS split -> red."""
  from alexnet_jax import features
  from conftest import folder_run, image_folder_tree

  image_folder_tree(tmp_path / "src")
  workdir = str(tmp_path / "run")
  folder_run(tmp_path / "src", workdir)  # one step: the subject is what the rows are of
  output = tmp_path / "train.npz"
  features.extract_and_search(workdir, split="train", output=str(output))
  with np.load(output, allow_pickle=False) as saved:
    names, labels, rows = list(saved["names"]), saved["labels"].tolist(), saved["features"]
    assert list(saved["class_names"]) == ["n01", "n02", "n03"]
  train_dir = str(tmp_path / "src" / "train")
  assert names == sorted(names) and len(names) == 15  # 12 images and 3 unreadable files
  assert all(n.startswith(train_dir) for n in names)
  assert labels == [("n01", "n02", "n03").index(n.split("/")[-2]) for n in names]
  unreadable = [n.split("/")[-1] in ("truncated.JPEG", "text.JPEG", "empty.jpg") for n in names]
  assert np.isnan(rows).all(axis=1).tolist() == unreadable and sum(unreadable) == 3


def test_without_neighbours_features_only_extracts_and_asks_for_what_it_lacks(straight_run,
                                                                               tmp_path,
                                                                               monkeypatch,
                                                                               capsys):
  """Nothing asked, or a split without --output: one line each. Extracting alone neither
  searches nor looks at --grid or --database. Mutations: `neighbors >= 0` in the
  nothing-to-do check, in the grid's check, in the database's read, or as the search's
  condition; `split and folder` needing --output -> each red."""
  from alexnet_jax import features

  workdir, _ = straight_run
  with pytest.raises(UserError, match="^nothing to do: give --split or --folder"):
    features.extract_and_search(workdir)
  for given in ({"split": "train"}, {"folder": str(tmp_path)}):
    with pytest.raises(UserError, match=r"^--output=FILE\.npz is needed with --split or "):
      features.extract_and_search(workdir, **given)
  monkeypatch.chdir(tmp_path)
  (tmp_path / "bad.npz").write_bytes(b"not numpy")
  features.extract_and_search(workdir, split="eval", output=str(tmp_path / "eval.npz"),
                              grid="grid.txt", database=str(tmp_path / "bad.npz"))
  out = capsys.readouterr().out
  assert "validation #" not in out and out.count("written") == 1
  assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.npz", "eval.npz"]
