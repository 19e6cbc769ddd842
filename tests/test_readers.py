"""The datasets' readers (`data.readers`): Fashion-MNIST's IDX files, ImageFolder trees, ImageNet
through TFDS."""

import gzip
import io
import os
import tempfile

import numpy as np
import pytest
from PIL import Image
from absl import logging as absl_logging

from alexnet_jax.data import images, readers, sources, stats, store_format
from alexnet_jax.errors import UserError
from conftest import (FASHION, build_input, image_folder_tree, load_config, save_image,
                      write_idx)


def test_a_corrupt_idx_file_is_a_one_line_error(tmp_path):
  for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
    with gzip.open(tmp_path / name, "wb") as f:
      f.write(b"\x00\x00\x08\x03" + (5).to_bytes(4, "big") + b"\x00" * 20)
  with pytest.raises(UserError, match="truncated"):
    readers.fashion_mnist(str(tmp_path), "train", size=32)
  with pytest.raises(UserError, match="apt-get install dataset-fashion-mnist"):
    readers.fashion_mnist(str(tmp_path / "nope"), "train", size=32)
  # One wrong byte of the magic (int32 data, say) is not read as bytes. Mutation: the magic's
  # checks joined by `and` -> red.
  for magic in (b"\x01\x00\x08\x01", b"\x00\x01\x08\x01", b"\x00\x00\x0c\x01", b"\x00\x00"):
    with gzip.open(tmp_path / "odd.gz", "wb") as f:
      f.write(magic + (4).to_bytes(4, "big") + bytes(4))
    with pytest.raises(UserError, match="is not an IDX file of unsigned bytes"):
      readers._read_idx(str(tmp_path / "odd.gz"))
  # Not gzip'd at all, and a labels file of another length than the images'. Mutations: the
  # gzip error let through; the count check dropped -> red.
  (tmp_path / "plain.gz").write_bytes(b"\x00\x00\x08\x01 not gzip")
  with pytest.raises(UserError, match=r"plain.gz is not a readable gzip'd IDX file \(Not a "
                                      r"gzipped file"):
    readers._read_idx(str(tmp_path / "plain.gz"))
  write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((5, 28, 28), np.uint8))
  write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(3, np.uint8))
  with pytest.raises(UserError, match="^Fashion-MNIST train: 5 images but 3 labels$"):
    readers.fashion_mnist(str(tmp_path), "train", size=32)


@pytest.mark.skipif(not os.path.exists(FASHION), reason="needs Debian's dataset-fashion-mnist")
def test_fashion_mnist_from_the_debian_package():
  train = readers.fashion_mnist(FASHION, "train", size=32)
  test = readers.fashion_mnist(FASHION, "test", size=32)
  assert train.images.shape == (60000, 32, 32, 1) and test.images.shape == (10000, 32, 32, 1)
  assert train.images[:, :2].max() == 0 and train.images.max() == 255
  assert np.bincount(train.labels).tolist() == [6000] * 10
  with pytest.raises(UserError, match="even padding"):
    readers.fashion_mnist(FASHION, "test", size=31)


def test_the_stored_fashion_mnist_sizes_at_their_bounds():
  """28 is the images as they are, 32 a 2-pixel zero border, 33 the first bilinear upscale.
  Mutations: `pad < 0` -> `pad < 1` (28 refused) and `size <= 32` -> `<= 33` (33 refused as an
  odd padding) -> red."""
  digits = np.random.default_rng(0).integers(1, 256, (3, 28, 28), dtype=np.uint8)
  np.testing.assert_array_equal(readers.fashion_mnist_stored(digits, 28), digits[..., None])
  padded = readers.fashion_mnist_stored(digits, 32)
  np.testing.assert_array_equal(padded[:, 2:30, 2:30, 0], digits)
  assert padded.sum() == digits.astype(np.int64).sum()
  upscaled = readers.fashion_mnist_stored(digits, 33)
  expected = np.asarray(Image.fromarray(digits[1]).resize((33, 33), Image.BILINEAR))
  np.testing.assert_array_equal(upscaled[1, ..., 0], expected)


def test_an_image_file_for_a_fashion_mnist_model_is_read_in_its_stored_form():
  """What `predict` and `features` do with a user's file for a Fashion-MNIST model: grey, at
  28x28, then stored as training stored the dataset (32: a 2-pixel zero border). Mutations:
  decoded at 29, in 2 channels, or its second channel taken -> red."""
  digit = np.random.default_rng(2).integers(0, 256, (28, 28), dtype=np.uint8)
  buffer = io.BytesIO()
  Image.fromarray(digit).save(buffer, "PNG")
  data = load_config("fashion_mnist").data
  assert data.image_size == 32
  stored = sources.stored_decoder(data, 1)(buffer.getvalue())
  assert stored.shape == (32, 32, 1)
  np.testing.assert_array_equal(stored[..., 0], np.pad(digit, 2))


def test_the_first_images_of_fashion_mnist_only_when_asked(tmp_path):
  """`first=1` reads one image and its label, `first=0` all of them. Mutation: `first > 0` ->
  `first > 1` -> red (all three read)."""
  rng = np.random.default_rng(1)
  digits, labels = rng.integers(0, 256, (3, 28, 28), dtype=np.uint8), np.array([7, 2, 5])
  write_idx(tmp_path / "train-images-idx3-ubyte.gz", digits)
  write_idx(tmp_path / "train-labels-idx1-ubyte.gz", labels)
  one = readers.fashion_mnist(str(tmp_path), "train", size=28, first=1)
  assert one.images.shape == (1, 28, 28, 1) and one.labels.tolist() == [7]
  np.testing.assert_array_equal(one.images[0, ..., 0], digits[0])
  assert readers.fashion_mnist(str(tmp_path), "train", size=28).labels.tolist() == [7, 2, 5]


def test_synthetic_images_span_every_value_and_class_and_repeat_with_their_seed():
  """Mutations: labels drawn from 1 (class 0 never seen) and pixels from 1 -> red."""
  split = readers.synthetic(400, 8, 3, 10, seed=3)
  assert split.images.shape == (400, 8, 8, 3) and split.images.dtype == np.uint8
  assert split.images.min() == 0 and split.images.max() == 255
  assert sorted(set(split.labels.tolist())) == list(range(10))
  again = readers.synthetic(400, 8, 3, 10, seed=3)
  np.testing.assert_array_equal(again.images, split.images)
  assert not np.array_equal(readers.synthetic(400, 8, 3, 10, seed=4).labels, split.labels)
  # The synthetic dataset's evaluation images are not its training images (seed 1 for both
  # -> red).
  data = load_config("tiny").data
  data.update(dict(name="synthetic", synthetic_train_size=4, synthetic_eval_size=4))
  dataset = sources.load(data, channels=3, num_classes=10)
  assert not np.array_equal(dataset.train.images, dataset.val.images)


@pytest.mark.skipif(not os.path.exists(FASHION), reason="needs Debian's dataset-fashion-mnist")
def test_fashion_mnist_without_a_data_dir_is_the_debian_packages():
  """A config naming fashion_mnist without data.data_dir (paper.py's fields with
  --config.data.name=fashion_mnist) reads the Debian package's files, and its identity says so.
  Mutation: the default `data_dir or FASHION_MNIST_DIR` -> `and` -> red."""
  data = load_config("fashion_mnist").data
  data.data_dir = ""
  dataset = sources.load(data, channels=1, num_classes=10, first=4)
  assert dataset.identity.source == FASHION and len(dataset.train) == 4


def test_image_folder_decodes_every_format_and_counts_the_unreadable(tmp_path):
  listed, _ = image_folder_tree(tmp_path)
  train, names, _ = readers.image_folder(str(tmp_path), "train")
  assert names == ("n01", "n02", "n03") and len(train) == listed
  assert not any(p.endswith(".txt") for p in train.paths)
  decode = images.Decode(36)
  before = images.SKIPPED.count
  out = [decode.map(train[i]) for i in range(len(train))]
  assert images.SKIPPED.count - before == 3
  good = [o for o in out if o is not None]
  assert len(good) == listed - 3
  assert all(o["image"].shape == (36, 36, 3) and o["image"].dtype == np.uint8 for o in good)
  assert [int(o["label"]) for o in good] == sorted(int(o["label"]) for o in good)
  # The file list is cached: a second listing reads it back.
  again, _, _ = readers.image_folder(str(tmp_path), "train")
  assert again.paths == train.paths


def test_imagenet_through_tfds_data_source(tmp_path, monkeypatch):

  import tensorflow_datasets as tfds
  from PIL import Image

  rng = np.random.default_rng(4)

  def jpeg(h, w):
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()

  records = {split: [{"image": jpeg(280 + i, 300), "label": (7 * i) % 1000,
                      "file_name": f"{split}_{i}.JPEG"} for i in range(n)]
             for split, n in (("train", 10), ("validation", 5))}
  records["validation"][2]["image"] = b"\xff\xd8 broken"

  def as_data_source(builder, split, decoders=None, **kwargs):
    assert "image" in decoders  # read encoded: decoded in the input workers
    return records[split]

  config = load_config("tiny")
  config.model.update(dict(num_classes=1000, input_size=32))
  (tmp_path / "imagenet2012" / "5.1.0").mkdir(parents=True)  # where a build puts it
  (tmp_path / "imagenet2012" / "5.1.0" / "dataset_info.json").write_text("{}")
  (tmp_path / "tmp").mkdir()  # TFDS's builder leaves empty folders in the temporary directory
  monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
  config.data.update(dict(name="imagenet2012", data_dir=str(tmp_path), image_size=36,
                          batch_size=4, eval_batch_size=4, read_threads=2))
  with tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE,
                              as_data_source_fn=as_data_source):
    inp = build_input(config)
    assert inp.num_train == 10 and inp.num_eval == 5 and len(inp.class_names) == 1000
    assert inp.class_names[0] == "n01440764"  # WordNet ids, from the TFDS metadata
    batch = next(inp.train)
    assert batch["image"].shape == (4, 32, 32, 3) and batch["label"].dtype == np.int32
    evaluated = sum(int(b["mask"].sum()) for b in inp.eval_batches(False))
  assert evaluated == 4  # the broken validation image is skipped, the rest count once


def test_missing_imagenet_names_the_preparation_command(tmp_path, monkeypatch):
  scratch = tmp_path / "tmp"
  scratch.mkdir()
  monkeypatch.setattr(tempfile, "tempdir", str(scratch))
  config = load_config("paper")
  config.data.data_dir = str(tmp_path / "none")
  with pytest.raises(UserError, match=r"in \S+/none \(no \S+/none/imagenet2012/<version>/"
                                      r"dataset_info.json\): run `bash launch/prepare_imagenet.sh "
                                      "MANUAL_DIR DATA_DIR.*ILSVRC2012_img_train.tar"):
    build_input(config)
  assert not list(scratch.iterdir())  # TFDS not asked: its builder leaves an empty folder there
  # A build of a version this TFDS does not read: TFDS's reason.
  (tmp_path / "none" / "imagenet2012" / "0.0.1").mkdir(parents=True)
  (tmp_path / "none" / "imagenet2012" / "0.0.1" / "dataset_info.json").write_text("{}")
  with pytest.raises(UserError, match=r"\(no \S+/none/imagenet2012/[\d.]+/dataset_info.json\)"):
    build_input(config)


def test_without_a_data_dir_imagenet_and_what_is_derived_from_it_live_in_tfds_data_dir(
    tmp_path, monkeypatch):
  monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
  config = load_config("paper")
  assert config.data.data_dir == ""
  with pytest.raises(UserError, match=rf"in {tmp_path}/tfds \(no {tmp_path}/tfds/imagenet2012/"):
    build_input(config)
  assert store_format.store_dir(config.data).startswith(f"{tmp_path}/tfds/alexnet_jax_prepared/")
  assert stats.default_path(config.data).startswith(f"{tmp_path}/tfds/alexnet_jax_stats/")
  monkeypatch.delenv("TFDS_DATA_DIR")
  assert readers.data_root("") == os.path.expanduser("~/tensorflow_datasets")
  assert readers.data_root("/data") == "/data"


def test_an_image_folder_without_its_root_is_one_line_before_any_store_is_looked_for(caplog):
  config = load_config("tiny")
  config.data.update(dict(name="image_folder", data_dir=""))
  with caplog.at_level("INFO"):
    absl_logging.use_python_logging()
    with pytest.raises(UserError, match=r"^data.name=image_folder needs "
                                        r"--config.data.data_dir=ROOT \(ROOT/train/<class>/\*"):
      build_input(config)
  assert not [r for r in caplog.records if "prepared store" in r.getMessage()]


def test_symlink_loops_in_an_image_folder_are_skipped(tmp_path, caplog):
  for split in ("train", "val"):
    (tmp_path / split / "a").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / split / "a" / "x.png")
  os.symlink("loop", tmp_path / "train" / "loop")  # a link to itself
  os.symlink("self.png", tmp_path / "train" / "a" / "self.png")
  with caplog.at_level("WARNING"):
    absl_logging.use_python_logging()
    split, names, _ = readers.image_folder(str(tmp_path), "train")
  assert names == ("a",) and len(split) == 1
  assert sum("skipping" in r.getMessage() for r in caplog.records) == 2


def test_empty_class_folders_and_images_below_the_class_folders_are_said(tmp_path, caplog):
  """They used to train silently: an empty class folder is a class without examples, and
  images one level down are never read."""
  for split in ("train", "val"):
    save_image(str(tmp_path / split / "a" / "x.png"), np.zeros((8, 8, 3), np.uint8), "PNG")
    (tmp_path / split / "b").mkdir()
  save_image(str(tmp_path / "train" / "a" / "more" / "y.png"), np.zeros((8, 8, 3), np.uint8),
             "PNG")
  with caplog.at_level("WARNING"):
    absl_logging.use_python_logging()
    split, names, _ = readers.image_folder(str(tmp_path), "train")
  said = " ".join(r.getMessage() for r in caplog.records)
  assert names == ("a", "b") and len(split) == 1
  assert "1 class folder(s) without images (b)" in said
  assert "1 image(s) in folders below the class folders are not read" in said


def test_an_image_folder_without_the_split_or_its_classes_is_one_line(tmp_path):
  """Mutations: either check dropped -> red (a traceback or an empty split trained on)."""
  (tmp_path / "train").mkdir()
  with pytest.raises(UserError, match=r"^image folder split not found: .*/val \(expected "
                                      r".*/train/<class>/\*.JPEG and .*/val/<class>/\*\)$"):
    readers.image_folder(str(tmp_path), "val")
  (tmp_path / "train" / ".hidden").mkdir()  # not a class
  with pytest.raises(UserError, match=r"^.*/train has no class folders$"):
    readers.image_folder(str(tmp_path), "train")


def test_a_class_the_split_lacks_is_said_and_hidden_files_are_not_read(tmp_path, caplog):
  """The validation split read with the training split's classes, one of which it lacks; a
  hidden file in a class folder is not an image of it. Mutations: the missing folder listed as
  a class with images (a traceback); hidden files read -> red."""
  save_image(str(tmp_path / "val" / "a" / "x.png"), np.zeros((8, 8, 3), np.uint8), "PNG")
  save_image(str(tmp_path / "val" / "a" / ".y.png"), np.zeros((8, 8, 3), np.uint8), "PNG")
  with caplog.at_level("WARNING"):
    absl_logging.use_python_logging()
    split, names, _ = readers.image_folder(str(tmp_path), "val", class_names=("a", "b"))
  assert names == ("a", "b") and split.paths == (str(tmp_path / "val" / "a" / "x.png"),)
  assert "1 class folder(s) without images (b)" in " ".join(r.getMessage()
                                                            for r in caplog.records)


def test_a_file_list_that_cannot_be_cached_is_a_warning(tmp_path, monkeypatch, caplog):
  """A cache directory that cannot be written (here a file stands where it would be) costs
  the listing's reuse, not the run. Mutation: the write's OSError let through -> red."""
  save_image(str(tmp_path / "train" / "a" / "x.png"), np.zeros((8, 8, 3), np.uint8), "PNG")
  (tmp_path / "cache").write_text("a file")
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
  with caplog.at_level("WARNING"):
    absl_logging.use_python_logging()
    split, _, _ = readers.image_folder(str(tmp_path), "train")
  assert len(split) == 1
  assert "could not cache the file list of" in " ".join(r.getMessage() for r in caplog.records)
