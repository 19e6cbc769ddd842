"""The datasets, behind one interface: a split is a random-access sequence of records.

In memory, uint8 images at the stored size: Fashion-MNIST (IDX files of the Debian package)
and synthetic images. Encoded image files, decoded in the input workers (`images.Decode`):
ImageNet from TFDS (array_record, read with `tfds.data_source`, no TensorFlow needed) and an
ImageFolder tree (`root/train/<class>/*`, `root/val/<class>/*`).
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import os
import struct

import numpy as np
from absl import logging

from alexnet_jax.data import images
from alexnet_jax.errors import UserError

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot")


@dataclasses.dataclass(frozen=True)
class Split:
  """uint8 images [N, H, W, C] at the stored size (crops are taken from these) and labels."""

  images: np.ndarray
  labels: np.ndarray
  encoded = False

  def __len__(self) -> int:
    return len(self.labels)

  def __getitem__(self, index: int) -> dict:
    return {"image": self.images[index], "label": self.labels[index]}


def _read_idx(path: str) -> np.ndarray:
  """An IDX file (gzip'd): big-endian magic 0x0000 08 NDIM, NDIM uint32 sizes, uint8 data."""
  with gzip.open(path, "rb") as f:
    raw = f.read()
  if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
    raise UserError(f"{path} is not an IDX file of unsigned bytes")
  ndim = raw[3]
  dims = np.frombuffer(raw, ">u4", count=ndim, offset=4).astype(int)
  data = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
  if data.size != int(np.prod(dims)):
    raise UserError(f"{path} is truncated: {data.size} bytes for shape {tuple(dims)}")
  return data.reshape(dims)


def fashion_mnist(data_dir: str, split: str, *, size: int) -> Split:
  """Fashion-MNIST `train` (60k) or `test` (10k) at `size` x `size` (`fashion_mnist_stored`)."""
  data_dir = data_dir or FASHION_MNIST_DIR
  prefix = {"train": "train", "test": "t10k"}[split]
  paths = [os.path.join(data_dir, f"{prefix}-{kind}-ubyte.gz") for kind in ("images-idx3", "labels-idx1")]
  missing = [p for p in paths if not os.path.isfile(p)]
  if missing:
    raise UserError(f"Fashion-MNIST not found ({missing[0]} is missing): install it with "
                    "`sudo apt-get install dataset-fashion-mnist` or set --config.data.data_dir")
  images, labels = (_read_idx(p) for p in paths)
  if len(images) != len(labels):
    raise UserError(f"Fashion-MNIST {split}: {len(images)} images but {len(labels)} labels")
  return Split(fashion_mnist_stored(images, size), labels.astype(np.int32))


def fashion_mnist_stored(images: np.ndarray, size: int) -> np.ndarray:
  """uint8 [N, 28, 28] -> [N, size, size, 1]: zero-padded (evenly) up to 32, bilinear upscales
  above (the full paper network's 256, from which it takes 224 crops)."""
  if size <= 32:
    pad = (size - 28) // 2
    if pad < 0 or 28 + 2 * pad != size:
      raise UserError(f"Fashion-MNIST image_size must be 28 + an even padding up to 32, or an "
                      f"upscale above 32; got {size}")
    return np.pad(images, ((0, 0), (pad, pad), (pad, pad)))[..., None]
  from PIL import Image

  return np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.BILINEAR))
                   for im in images])[..., None]


def synthetic(num_examples: int, size: int, channels: int, num_classes: int, seed: int) -> Split:
  """Random uint8 images with random labels (for benchmarks and tests: nothing to learn)."""
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 256, (num_examples, size, size, channels), dtype=np.uint8)
  return Split(images, rng.integers(0, num_classes, num_examples).astype(np.int32))


# ----------------------------------------------------------------------------- image files

IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp", ".gif", ".ppm", ".tif", ".tiff", ".webp")
PREPARE_IMAGENET = "bash launch/prepare_imagenet.sh MANUAL_DIR DATA_DIR"


@dataclasses.dataclass(frozen=True)
class FileSplit:
  """Image files and their labels; records carry the encoded bytes (`images.Decode` decodes)."""

  paths: tuple[str, ...]
  labels: np.ndarray
  encoded = True

  def __len__(self) -> int:
    return len(self.paths)

  def __getitem__(self, index: int) -> dict:
    path = self.paths[index]
    try:
      with open(path, "rb") as f:
        data = f.read()
    except OSError as e:  # counted as unreadable by the decoder
      data = b""
      logging.warning("cannot read %s: %s", path, e)
    return {"encoded": data, "label": self.labels[index], "name": path}


def _cache_dir() -> str:
  return os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                      "alexnet_jax")


def _entries(folder: str, want_dir: bool) -> list[str]:
  """Names of the folders (or files) in `folder`; an entry that cannot be followed (a symlink
  loop, a dangling link) is skipped with a warning."""
  names = []
  for entry in os.scandir(folder):
    try:
      if (entry.is_dir() if want_dir else entry.is_file()) and not entry.name.startswith("."):
        names.append(entry.name)
    except OSError as e:
      logging.warning("skipping %s: %s", entry.path, e.strerror or e)
  return sorted(names)


def _list_class_dirs(split_dir: str) -> list[str]:
  return _entries(split_dir, want_dir=True)


def image_folder(root: str, split: str, class_names: tuple[str, ...] | None = None
                 ) -> tuple[FileSplit, tuple[str, ...]]:
  """`root/<split>/<class>/<image>`: classes sorted by name (those of the training split when
  `class_names` is given). The file list is built once and cached as JSON under
  ~/.cache/alexnet_jax, keyed by the directory and checked against the class folders' mtimes."""
  split_dir = os.path.join(root, split)
  if not os.path.isdir(split_dir):
    raise UserError(f"image folder split not found: {split_dir} (expected "
                    f"{root}/train/<class>/*.JPEG and {root}/val/<class>/*)")
  found = _list_class_dirs(split_dir)
  names = tuple(class_names) if class_names is not None else tuple(found)
  unknown = sorted(set(found) - set(names))
  if unknown:
    raise UserError(f"{split_dir} has class folders not in the training split: "
                    f"{', '.join(unknown[:5])}")
  if not names:
    raise UserError(f"{split_dir} has no class folders")
  signature = [(n, os.stat(os.path.join(split_dir, n)).st_mtime_ns) for n in found]
  key = hashlib.sha256(json.dumps([os.path.abspath(split_dir), names, signature]).encode())
  cache = os.path.join(_cache_dir(), f"filelist-{key.hexdigest()[:20]}.json")
  try:
    with open(cache, encoding="utf-8") as f:
      listing = json.load(f)
  except (OSError, ValueError):
    listing = None
  if listing is None:
    listing = {"paths": [], "labels": []}
    for label, name in enumerate(names):
      folder = os.path.join(split_dir, name)
      if not os.path.isdir(folder):
        continue
      files = [f for f in _entries(folder, want_dir=False)
               if f.lower().endswith(IMAGE_EXTENSIONS)]
      listing["paths"] += [os.path.join(folder, f) for f in files]
      listing["labels"] += [label] * len(files)
    try:
      os.makedirs(os.path.dirname(cache), exist_ok=True)
      with open(cache + ".tmp", "w", encoding="utf-8") as f:
        json.dump(listing, f)
      os.replace(cache + ".tmp", cache)
    except OSError as e:
      logging.warning("could not cache the file list of %s: %s", split_dir, e)
  logging.info("%s: %d images in %d classes", split_dir, len(listing["paths"]), len(names))
  return FileSplit(tuple(listing["paths"]), np.asarray(listing["labels"], np.int32)), names


class _RandomAccessFiles:
  """A split read through a random-access reader of record files (array_record), opened when
  first needed and again in each input worker process (a reader does not cross processes).
  Subclasses say how to open it (`_make_source`) and what a record becomes (`__getitem__`)."""

  encoded = True

  def __post_init__(self):
    self._source = None
    self._length = len(self._open())

  def _make_source(self):
    raise NotImplementedError

  def _open(self):
    if self._source is None:
      self._source = self._make_source()
    return self._source

  def __getstate__(self):
    return {k: v for k, v in self.__dict__.items() if k != "_source"} | {"_source": None}

  def __len__(self) -> int:
    return self._length


@dataclasses.dataclass
class TfdsSplit(_RandomAccessFiles):
  """A TFDS split read through `tfds.data_source` with the images left encoded."""

  name: str
  split: str
  data_dir: str

  def _make_source(self):
    import tensorflow_datasets as tfds

    return tfds.data_source(self.name, split=self.split, data_dir=self.data_dir or None,
                            download=False, decoders={"image": tfds.decode.SkipDecoding()})

  def __getitem__(self, index: int) -> dict:
    record = self._open()[index]
    name = record.get("file_name", index)
    return {"encoded": record["image"], "label": np.int32(record["label"]),
            "name": name.decode() if isinstance(name, bytes) else str(name)}


def tfds_imagenet(name: str, data_dir: str) -> tuple[TfdsSplit, TfdsSplit, tuple[str, ...]]:
  """ImageNet (or another TFDS image classification set) prepared as array_record."""
  import tensorflow_datasets as tfds

  try:
    builder = tfds.builder(name, data_dir=data_dir or None)
    names = tuple(builder.info.features["label"].names)
    splits = TfdsSplit(name, "train", data_dir), TfdsSplit(name, "validation", data_dir)
  except Exception as e:  # tfds raises several types for "not prepared"
    where = data_dir or "~/tensorflow_datasets"
    raise UserError(
        f"{name} is not prepared as array_record in {where} ({type(e).__name__}): run "
        f"`{PREPARE_IMAGENET}` with ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar in "
        "MANUAL_DIR, or use --config.data.name=image_folder") from None
  return splits[0], splits[1], names


# ----------------------------------------------------------------------------- the §2 store

PREPARED_FORMAT = 1
SPLIT_NAMES = ("train", "val")


def store_dir(data) -> str:
  """Where the prepared §2 form of the dataset `data` names lives (`python -m
  alexnet_jax.data.prepare`): `data.prepared_dir`, or next to the data."""
  if data.get("prepared_dir"):
    return data.prepared_dir
  root = data.data_dir or os.path.expanduser("~/tensorflow_datasets")
  return os.path.join(root, "alexnet_jax_prepared", f"{data.name}-{data.image_size}")


def shard_path(store: str, split: str, index: int, count: int) -> str:
  return os.path.join(store, f"{split}-{index:05d}-of-{count:05d}.array_record")


def read_manifest(store: str) -> dict | None:
  """The manifest of a complete store, or None (no store, or one still being written)."""
  try:
    with open(os.path.join(store, "manifest.json"), encoding="utf-8") as f:
      manifest = json.load(f)
  except (OSError, ValueError):
    return None
  if not isinstance(manifest, dict) or manifest.get("format") != PREPARED_FORMAT:
    return None
  for split in SPLIT_NAMES:
    count = manifest["shards"][split]
    if not all(os.path.exists(shard_path(store, split, i, count)) for i in range(count)):
      return None
  return manifest


def encode_record(label: int, jpeg: bytes) -> bytes:
  """A prepared record: the label as 4 little-endian bytes, then the 256x256 JPEG."""
  return struct.pack("<i", int(label)) + jpeg


@dataclasses.dataclass
class PreparedSplit(_RandomAccessFiles):
  """One split of a prepared store: 256x256 JPEGs and labels in array_record shards, read with
  grain's `ArrayRecordDataSource` (random access, no TensorFlow)."""

  paths: tuple[str, ...]
  split: str
  stats_path: str = ""  # the statistics computed while preparing

  def _make_source(self):
    import grain

    return grain.sources.ArrayRecordDataSource(list(self.paths))

  def __getitem__(self, index: int) -> dict:
    record = self._open()[index]
    return {"encoded": record[4:], "label": np.int32(struct.unpack_from("<i", record)[0]),
            "name": f"{self.split}#{index}"}


def prepared_splits(data, channels: int):
  """(train, val, class names) of the prepared store of `data`, or None when there is none."""
  store = store_dir(data)
  manifest = read_manifest(store)
  if manifest is None:
    return None
  if manifest.get("resize", "shorter_side") != data.get("resize", "shorter_side"):
    raise UserError(f"the prepared store {store} was made with data.resize="
                    f"{manifest.get('resize', 'shorter_side')}, this config has {data.resize}")
  if manifest["image_size"] != data.image_size or manifest["channels"] != channels:
    raise UserError(f"the prepared store {store} holds {manifest['image_size']}px images with "
                    f"{manifest['channels']} channel(s), not {data.image_size}px with {channels}")
  splits = [PreparedSplit(tuple(shard_path(store, name, i, manifest["shards"][name])
                                for i in range(manifest["shards"][name])), name,
                          os.path.join(store, "stats.npz"))
            for name in SPLIT_NAMES]
  logging.info("reading the prepared §2 form of %s from %s (%d train / %d val images, JPEG "
               "quality %d)", data.name, store, len(splits[0]), len(splits[1]),
               manifest["quality"])
  return splits[0], splits[1], tuple(manifest["class_names"])


# ----------------------------------------------------------------------------- the registry

DATASETS = ("imagenet2012", "image_folder", "fashion_mnist", "synthetic")
PREPARABLE = ("imagenet2012", "image_folder")


def load_splits(data, *, channels: int, num_classes: int, prepared: bool = True):
  """(train, eval, class names) of the dataset that the config's `data` section names;
  `channels` and `num_classes` shape the synthetic one. ImageNet and ImageFolder trees are read
  from their prepared §2 store when it exists (`data.use_prepared`; one log line says which
  form is read), from the original files otherwise."""
  if data.name in PREPARABLE and prepared and data.get("use_prepared", True):
    found = prepared_splits(data, channels)
    if found is not None:
      return found
    logging.info("reading the original images of %s (no prepared store at %s: `python -m "
                 "alexnet_jax.data.prepare --config=...` makes one)", data.name, store_dir(data))
  if data.name == "fashion_mnist":
    size = data.image_size
    return (fashion_mnist(data.data_dir, "train", size=size),
            fashion_mnist(data.data_dir, "test", size=size), FASHION_MNIST_CLASSES)
  if data.name == "synthetic":
    make = lambda n, seed: synthetic(n, data.image_size, channels, num_classes, seed)
    return (make(data.synthetic_train_size, 0), make(data.synthetic_eval_size, 1),
            tuple(str(i) for i in range(num_classes)))
  if data.name == "image_folder":
    if not data.data_dir:
      raise UserError("data.name=image_folder needs --config.data.data_dir=ROOT "
                      "(ROOT/train/<class>/*, ROOT/val/<class>/*)")
    train, names = image_folder(data.data_dir, "train")
    val, _ = image_folder(data.data_dir, "val", class_names=names)
    return train, val, names
  if data.name == "imagenet2012":
    return tfds_imagenet(data.name, data.data_dir)
  raise UserError(f"unknown dataset {data.name!r}; known: {', '.join(DATASETS)}")


def stored_decoder(data, channels: int):
  """bytes of an image file -> uint8 [S, S, c] in the stored form of the dataset `data` names
  (what training cropped from): §2's rescale and centre crop, or Fashion-MNIST's grey form."""
  if data.name == "fashion_mnist":
    size = data.image_size
    return lambda encoded: fashion_mnist_stored(images.decode(encoded, 28, 1)[None, ..., 0],
                                                size)[0]
  resize = data.get("resize", "shorter_side")
  return lambda encoded: images.decode(encoded, data.image_size, channels, resize)


def stored_size(data, split) -> int:
  """The side of `split`'s stored images (what crops are cut from)."""
  return split.images.shape[1] if not split.encoded else data.image_size
