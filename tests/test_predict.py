"""`python -m alexnet_jax.predict`: the top classes per image and the checkpoint used, folders,
unreadable images reported, the predictions as JSON or CSV, Figure 4 (left)."""

import csv
import json

import numpy as np
import pytest
from absl import logging as absl_logging
from matplotlib.colors import to_rgba
from PIL import Image

from alexnet_jax import predict
from alexnet_jax.errors import UserError
from conftest import sample_images


def test_predict_prints_the_top_classes_reports_bad_images_and_writes_tables_and_figure4(
    straight_run, tmp_path, capsys):
  workdir, _ = straight_run
  paths = sorted(sample_images(str(tmp_path / "images"), n=3))  # a folder is read sorted
  broken = tmp_path / "images" / "broken.jpg"
  broken.write_bytes(b"not an image")
  out_png, out_json = tmp_path / "preds.png", tmp_path / "preds.json"
  status = predict.predict_files(workdir, [str(tmp_path / "images")], ten_crop=True,
                                 output=str(out_json), figure=str(out_png))
  out = capsys.readouterr()
  assert status == 0, out.err[-2000:]
  lines = out.out.splitlines()
  assert lines[0] == f"checkpoint: {workdir}/checkpoints/8 (step 8)"
  assert lines[1] == paths[0] and len([l for l in lines if l.startswith("  0.")]) == 15
  probs = [float(l.split()[0]) for l in lines[2:7]]
  assert probs == sorted(probs, reverse=True)
  assert f"{broken}: unreadable (not an image file Pillow can read)" in out.err
  assert "1 of 4 images unreadable" in out.err and "BytesIO" not in out.err
  table = json.loads(out_json.read_text())
  assert [r["image"] for r in table] == paths and table[0]["step"] == 8
  assert [p["probability"] for p in table[0]["predictions"]] == pytest.approx(probs, abs=1e-4)
  # To 6 decimals, as the CSV writes them (mutation: rounded to 7 -> red).
  assert all(p["probability"] == round(p["probability"], 6) for r in table
             for p in r["predictions"])
  assert any(p["probability"] != round(p["probability"], 5) for r in table
             for p in r["predictions"])
  with Image.open(out_png) as png:
    assert png.format == "PNG" and png.size == (900, 420)  # 3 columns x 1 block of 4.2 in
  assert predict.predict_files(workdir, [str(broken)]) == 1  # nothing readable: status 1
  out_csv = tmp_path / "preds.csv"
  predict.predict_files(workdir, paths[:1], topk=2, output=str(out_csv))
  rows = list(csv.DictReader(out_csv.open()))
  assert [r["rank"] for r in rows] == ["1", "2"] and rows[0]["image"] == paths[0]
  predict.predict_files(workdir, paths[:1], topk=1, output=str(out_csv))  # one is enough
  assert [r["rank"] for r in csv.DictReader(out_csv.open())] == ["1"]
  with pytest.raises(UserError, match="--topk must be >= 1"):
    predict.predict_files(workdir, paths, topk=0)
  # Nothing to predict, and a workdir whose statistics are gone: one line each. Mutations:
  # each check dropped -> red.
  with pytest.raises(UserError, match="^give one or more image files or folders after the "
                                      "flags$"):
    predict.predict_files(workdir, [])
  (tmp_path / "none").mkdir()
  with pytest.raises(UserError, match=f"^no images under {tmp_path}/none$"):
    predict.predict_files(workdir, [str(tmp_path / "none")])
  import shutil

  copy = tmp_path / "copy"
  shutil.copytree(workdir, copy)
  (copy / "data_stats.npz").unlink()
  with pytest.raises(UserError, match=f"^{copy}/data_stats.npz is missing: the workdir was not "
                                      "written by alexnet_jax.train$"):
    predict.predict_files(str(copy), paths[:1])


def test_figure4_draws_the_true_class_in_red_only_where_the_folder_names_one(straight_run,
                                                                              tmp_path):
  """Figure 4 (left): an image in a folder named after one of the model's classes has that
  class's bar in red (all ten classes drawn, so it is among them); elsewhere no bar is red.
  Mutation: the colour test inverted (every other bar red) -> red."""
  workdir, _ = straight_run

  in_x, in_3 = sample_images(str(tmp_path / "images"), n=2)  # pixels of at most 254

  def red_pixels(path):
    png = tmp_path / "figure.png"
    predict.predict_files(workdir, [path], topk=10, figure=str(png))
    with Image.open(png) as image:
      rgb = np.asarray(image.convert("RGB")).astype(int)
    return int(((rgb[..., 0] == 255) & (rgb[..., 1] == 0) & (rgb[..., 2] == 0)).sum())

  assert red_pixels(in_3) > 50  # '3' is one of the straight run's classes, 0 to 9
  assert red_pixels(in_x) == 0


def test_fewer_classes_than_bars_are_fewer_bars():
  probs = np.array([[0.2, 0.5, 0.3]])
  assert predict.top_k(probs, ("a", "b", "c")) == [[("b", 0.5), ("c", 0.3), ("a", 0.2)]]


def test_an_image_the_model_sees_otherwise_than_it_looks_is_said(tmp_path):
  import types

  import ml_collections

  def model(channels, resize):
    config = ml_collections.ConfigDict({"model": {"in_channels": channels},
                                        "data": {"resize": resize}})
    return types.SimpleNamespace(config=config, stored_size=32)

  wide = tmp_path / "wide.png"
  Image.new("RGB", (90, 30)).save(wide)
  square = tmp_path / "square.png"
  Image.new("L", (40, 40)).save(square)
  assert "read in grey" in predict._how_it_is_seen(str(wide), model(1, "shorter_side"))
  assert "90x30 squashed to 32x32" in predict._how_it_is_seen(str(wide), model(3, "squash"))
  assert predict._how_it_is_seen(str(wide), model(3, "shorter_side")) is None
  assert predict._how_it_is_seen(str(square), model(1, "squash")) is None
  # Within 5 % of square a squash is not worth saying (mutation: 10 % -> red).
  for size, said in (((104, 100), False), ((100, 106), True)):
    Image.new("RGB", size).save(tmp_path / "near.png")
    assert (predict._how_it_is_seen(str(tmp_path / "near.png"), model(3, "squash"))
            is not None) == said, size


def test_images_seen_otherwise_than_they_look_are_said_in_one_warning(straight_run, tmp_path,
                                                                      monkeypatch, caplog):
  """One warning names the first such image and why, and says "..." when there are more.
  Mutations: the second image or its reason named; "..." from three images on -> red."""
  workdir, _ = straight_run
  paths = sorted(sample_images(str(tmp_path / "images"), n=2))
  monkeypatch.setattr(predict, "_how_it_is_seen", lambda path, trained: f"why {path[-7:]}")
  with caplog.at_level("WARNING"):
    absl_logging.use_python_logging()
    for given in (paths, paths[:1]):
      predict.predict_files(workdir, given)
  said = [r.getMessage() for r in caplog.records if "seen otherwise" in r.getMessage()]
  first = f"{paths[0]} (why {paths[0][-7:]})"
  assert said == [f"2 image(s) seen otherwise than they look: {first}, ...",
                  f"1 image(s) seen otherwise than they look: {first}"]


def test_figure4_puts_each_image_above_its_bars_four_to_a_row(tmp_path, drawn):
  """Five images, one grey: two rows of four columns, each image's bars in the axes under it
  (its true class red), the grey one drawn in grey, the cells left over blank. Mutations:
  five columns; an image or its bars in another row; the grey test on another axis or size,
  channel 1 drawn -> red."""
  rng = np.random.default_rng(0)
  stored = [rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) for _ in range(4)]
  stored.insert(2, rng.integers(0, 256, (8, 8, 1), dtype=np.uint8))
  names = [f"/data/{c}/im{i}.png" for i, c in enumerate(("cat", "x", "dog", "y", "cat"))]
  rows = [[("dog", 0.6), ("cat", 0.4)]] * 5
  predict.draw_figure4(str(tmp_path / "f.png"), stored, names, rows, ("cat", "dog"))
  axes = np.asarray(drawn[0].axes).reshape(4, 4)
  for i, image in enumerate(stored):
    top, bottom = axes[2 * (i // 4), i % 4], axes[2 * (i // 4) + 1, i % 4]
    shown = top.get_images()[0]
    np.testing.assert_array_equal(shown.get_array(), image[..., 0] if i == 2 else image,
                                  strict=True)
    assert (shown.get_cmap().name == "gray") == (i == 2)
    truth = names[i].split("/")[2]
    colours = [bar.get_facecolor() for bar in bottom.patches]
    assert colours == [to_rgba("red" if c == truth else "tab:blue") for c in ("cat", "dog")], i
  assert not axes[2, 1].get_images() and not axes[3, 1].patches and not axes[3, 1].axison


def test_a_fifo_or_an_oversized_file_never_blocks_or_is_read_whole(straight_run, tmp_path,
                                                                   capsys, caplog):
  """A FIFO named *.jpg in a folder blocked predict forever; a file beyond training's limit on
  one image was read whole. Mutations: the regular-file filter dropped from images_under -> red;
  read_image reading the whole file -> red; the skip warning given with nothing skipped -> red."""
  import logging
  import os

  from alexnet_jax import inference
  from alexnet_jax.data import images

  workdir, _ = straight_run
  folder = tmp_path / "images"
  paths = sample_images(str(folder), n=2)
  caplog.set_level(logging.WARNING, logger="absl")
  assert inference.images_under(str(folder)) == sorted(paths)
  assert not caplog.messages
  os.mkfifo(folder / "x" / "pipe.jpg")
  assert inference.images_under(str(folder)) == sorted(paths)
  assert caplog.messages == [f"{folder}: skipped 1 entries with an image's name that are not "
                             "regular files (FIFOs, devices, sockets, broken links)"]
  trained = inference.load(workdir)
  with pytest.raises(images.UnreadableImage, match="not a regular file"):
    trained.read_image(str(folder / "x" / "pipe.jpg"))
  big = tmp_path / "big.png"
  with open(big, "wb") as f:
    f.truncate(images.MAX_FILE_BYTES + 10)
  read = []
  real_open = open

  class Counting:
    def __init__(self, f):
      self.f = f

    def __enter__(self):
      return self

    def __exit__(self, *exc):
      self.f.close()

    def read(self, n=-1):
      data = self.f.read(n)
      read.append(len(data))
      return data

  import builtins

  builtins.open, previous = (lambda p, m="r", *a, **k: Counting(real_open(p, m, *a, **k))
                             if str(p) == str(big) else real_open(p, m, *a, **k)), builtins.open
  try:
    with pytest.raises(images.UnreadableImage, match="more than"):
      trained.read_image(str(big))
  finally:
    builtins.open = previous
  assert read == [images.MAX_FILE_BYTES + 1]
