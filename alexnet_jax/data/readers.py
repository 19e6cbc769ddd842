"""The datasets' readers: a split is a random-access sequence of records. In memory, uint8
images at the stored size: Fashion-MNIST (IDX files of the Debian package) and synthetic images.
Encoded image files, decoded in the input workers (`images.Decode`): an ImageFolder tree
(`root/train/<class>/*`, `root/val/<class>/*`) and ImageNet from TFDS (array_record, read with
`tfds.data_source`, no TensorFlow needed).
"""

from __future__ import annotations

import dataclasses
import glob
import gzip
import hashlib
import json
import os

import numpy as np
from absl import logging

from alexnet_jax.data import images
from alexnet_jax.data.identity import files_fingerprint, fingerprint
from alexnet_jax.errors import UserError, first_line

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
  try:
    with gzip.open(path, "rb") as f:
      raw = f.read()
  except (OSError, EOFError) as e:
    raise UserError(f"{path} is not a readable gzip'd IDX file ({e})") from None
  if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
    raise UserError(f"{path} is not an IDX file of unsigned bytes")
  ndim = raw[3]
  dims = np.frombuffer(raw, ">u4", count=ndim, offset=4).astype(int)
  data = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
  if data.size != int(np.prod(dims)):
    raise UserError(f"{path} is truncated: {data.size} bytes for shape {tuple(dims)}")
  return data.reshape(dims)


def fashion_paths(data_dir: str, split: str) -> list[str]:
  prefix = {"train": "train", "test": "t10k"}[split]
  return [os.path.join(data_dir, f"{prefix}-{kind}-ubyte.gz")
          for kind in ("images-idx3", "labels-idx1")]


def fashion_mnist(data_dir: str, split: str, *, size: int, first: int = 0) -> Split:
  """Fashion-MNIST `train` (60k) or `test` (10k) at `size` x `size` (`fashion_mnist_stored`);
  its first `first` images only when > 0."""
  paths = fashion_paths(data_dir, split)
  missing = [p for p in paths if not os.path.isfile(p)]
  if missing:
    raise UserError(f"Fashion-MNIST not found ({missing[0]} is missing): install it with "
                    "`sudo apt-get install dataset-fashion-mnist` or set --config.data.data_dir")
  images_, labels = (_read_idx(p) for p in paths)
  if len(images_) != len(labels):
    raise UserError(f"Fashion-MNIST {split}: {len(images_)} images but {len(labels)} labels")
  if first > 0:
    images_, labels = images_[:first], labels[:first]
  return Split(fashion_mnist_stored(images_, size), labels.astype(np.int32))


def fashion_mnist_stored(images_: np.ndarray, size: int) -> np.ndarray:
  """uint8 [N, 28, 28] -> [N, size, size, 1]: zero-padded (evenly) up to 32, bilinear upscales
  above (the full paper network's 256, from which it takes 224 crops)."""
  if size <= 32:
    pad = (size - 28) // 2
    if pad < 0 or 28 + 2 * pad != size:
      raise UserError(f"Fashion-MNIST image_size must be 28 + an even padding up to 32, or an "
                      f"upscale above 32; got {size}")
    return np.pad(images_, ((0, 0), (pad, pad), (pad, pad)))[..., None]
  from PIL import Image

  return np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.BILINEAR))
                   for im in images_])[..., None]


def synthetic(num_examples: int, size: int, channels: int, num_classes: int, seed: int) -> Split:
  """Random uint8 images with random labels (for benchmarks and tests: nothing to learn)."""
  rng = np.random.default_rng(seed)
  images_ = rng.integers(0, 256, (num_examples, size, size, channels), dtype=np.uint8)
  return Split(images_, rng.integers(0, num_classes, num_examples).astype(np.int32))


# ----------------------------------------------------------------------------- image files

IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp", ".gif", ".ppm", ".tif", ".tiff", ".webp")
PREPARE_IMAGENET = "bash launch/prepare_imagenet.sh MANUAL_DIR DATA_DIR"


@dataclasses.dataclass(frozen=True)
class FileSplit:
  """Image files and their labels; records carry the encoded bytes (`images.Decode` decodes).
  At most `images.MAX_FILE_BYTES` + 1 bytes of a file are read: a larger one is unreadable."""

  paths: tuple[str, ...]
  labels: np.ndarray
  encoded = True

  def __len__(self) -> int:
    return len(self.paths)

  def __getitem__(self, index: int) -> dict:
    path = self.paths[index]
    try:
      with open(path, "rb") as f:
        data = f.read(images.MAX_FILE_BYTES + 1)
    except OSError as e:  # counted as unreadable by the decoder
      data = b""
      logging.warning("cannot read %s: %s", path, e)
    return {"encoded": data, "label": self.labels[index], "name": path}


def _cache_dir() -> str:
  return os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                      "alexnet_jax")


def _entries(folder: str) -> tuple[list[str], list[str]]:
  """(folders, files) in `folder`, sorted, hidden ones left out; an entry that cannot be
  followed (a symlink loop, a dangling link) is skipped with a warning."""
  dirs, files = [], []
  for entry in os.scandir(folder):
    if entry.name.startswith("."):
      continue
    try:
      if entry.is_dir():
        dirs.append(entry.name)
      elif entry.is_file():
        files.append(entry.name)
    except OSError as e:
      logging.warning("skipping %s: %s", entry.path, e.strerror or e)
  return sorted(dirs), sorted(files)


def _list_split(split_dir: str, names: tuple[str, ...]) -> dict:
  """The image files of each class folder and what training would silently miss: class folders
  without images, images in folders below a class folder."""
  listing = {"paths": [], "labels": [], "empty": [], "nested": 0}
  for label, name in enumerate(names):
    folder = os.path.join(split_dir, name)
    if not os.path.isdir(folder):
      listing["empty"].append(name)
      continue
    subfolders, files = _entries(folder)
    files = [f for f in files if f.lower().endswith(IMAGE_EXTENSIONS)]
    if not files:
      listing["empty"].append(name)
    for sub in subfolders:
      listing["nested"] += sum(f.lower().endswith(IMAGE_EXTENSIONS)
                               for _, _, fs in os.walk(os.path.join(folder, sub)) for f in fs)
    for f in files:
      listing["paths"].append(os.path.join(folder, f))
      listing["labels"].append(label)
  return listing


def _files_fingerprint(split_dir: str, paths, labels) -> str:
  """The fingerprint of a split's files as they are now: each one's path below the split,
  label, size and modification time (a file rewritten in place changes it, although its
  folder's time does not)."""
  entries = []
  for path, label in zip(paths, labels):
    try:
      st = os.stat(path)
      entries.append((os.path.relpath(path, split_dir), label, st.st_size, st.st_mtime_ns))
    except OSError:
      entries.append((os.path.relpath(path, split_dir), label, None, None))
  return fingerprint(entries)


def image_folder(root: str, split: str, class_names: tuple[str, ...] | None = None
                 ) -> tuple[FileSplit, tuple[str, ...], str]:
  """`root/<split>/<class>/<image>`: (files, classes sorted by name (`class_names` when given:
  those of the training split, or a model's), the listing's fingerprint). The file list is
  built once and cached as JSON under ~/.cache/alexnet_jax, keyed by the directory and the
  folders' modification times (a file added, removed or renamed changes them); the fingerprint
  is taken from the files themselves every time (`_files_fingerprint`)."""
  split_dir = os.path.join(root, split)
  if not os.path.isdir(split_dir):
    raise UserError(f"image folder split not found: {split_dir} (expected "
                    f"{root}/train/<class>/*.JPEG and {root}/val/<class>/*)")
  found = _entries(split_dir)[0]
  names = tuple(class_names) if class_names is not None else tuple(found)
  unknown = sorted(set(found) - set(names))
  if unknown:
    raise UserError(f"{split_dir} has class folders that are not among the classes it is read "
                    f"with (the training split's, or the model's): {', '.join(unknown[:5])}")
  if not names:
    raise UserError(f"{split_dir} has no class folders")
  signature = [(n, os.stat(os.path.join(split_dir, n)).st_mtime_ns) for n in found]
  key = hashlib.sha256(json.dumps([os.path.abspath(split_dir), names, signature,
                                   os.stat(split_dir).st_mtime_ns]).encode())
  cache = os.path.join(_cache_dir(), f"filelist-{key.hexdigest()[:20]}.json")
  try:
    with open(cache, encoding="utf-8") as f:
      listing = json.load(f)
    listing["paths"], listing["labels"], listing["empty"], listing["nested"]
  except (OSError, ValueError, KeyError, TypeError):
    listing = _list_split(split_dir, names)
    try:
      os.makedirs(os.path.dirname(cache), exist_ok=True)
      with open(cache + ".tmp", "w", encoding="utf-8") as f:
        json.dump(listing, f)
      os.replace(cache + ".tmp", cache)
    except OSError as e:
      logging.warning("could not cache the file list of %s: %s", split_dir, e)
  listing["fingerprint"] = _files_fingerprint(split_dir, listing["paths"], listing["labels"])
  logging.info("%s: %d images in %d classes", split_dir, len(listing["paths"]), len(names))
  if listing["empty"]:
    logging.warning("%s: %d class folder(s) without images (%s): they count as classes with no "
                    "examples", split_dir, len(listing["empty"]),
                    ", ".join(listing["empty"][:5]))
  if listing["nested"]:
    logging.warning("%s: %d image(s) in folders below the class folders are not read (only "
                    "<class>/<image> is)", split_dir, listing["nested"])
  return (FileSplit(tuple(listing["paths"]), np.asarray(listing["labels"], np.int32)), names,
          listing["fingerprint"])


class RandomAccessFiles:
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
class TfdsSplit(RandomAccessFiles):
  """A TFDS split read through `tfds.data_source` with the images left encoded."""

  name: str
  split: str
  data_dir: str  # the root (`data_root`)

  def _make_source(self):
    import tensorflow_datasets as tfds

    return tfds.data_source(self.name, split=self.split, data_dir=self.data_dir,
                            download=False, decoders={"image": tfds.decode.SkipDecoding()})

  def __getitem__(self, index: int) -> dict:
    record = self._open()[index]
    name = record.get("file_name", index)
    return {"encoded": record["image"], "label": np.int32(record["label"]),
            "name": name.decode() if isinstance(name, bytes) else str(name)}


def data_root(data_dir: str) -> str:
  """The folder a dataset is read from, with its statistics and prepared store beside it:
  `data.data_dir`, else TFDS's own default (`$TFDS_DATA_DIR`, else ~/tensorflow_datasets)."""
  return data_dir or os.path.expanduser(os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets")


def tfds_imagenet(name: str, data_dir: str
                  ) -> tuple[TfdsSplit, TfdsSplit, tuple[str, ...], str]:
  """ImageNet (or another TFDS image classification set) prepared as array_record: (train,
  validation, class names, the fingerprint of the build's files)."""
  root = data_root(data_dir)

  def not_prepared(why: str) -> UserError:
    return UserError(
        f"{name} is not prepared as array_record in {root} ({why}): run `{PREPARE_IMAGENET}` "
        "with ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar in MANUAL_DIR, or use "
        "--config.data.name=image_folder")

  # Looked for before TFDS is asked: for a dataset it cannot find, its builder leaves an empty
  # folder in the system's temporary directory each time.
  folder = os.path.join(root, name)
  if not glob.glob(os.path.join(glob.escape(folder), "**", "dataset_info.json"), recursive=True):
    raise not_prepared(f"no {folder}/<version>/dataset_info.json")
  import tensorflow_datasets as tfds

  builder = None
  try:
    builder = tfds.builder(name, data_dir=root)
    names = tuple(builder.info.features["label"].names)
    splits = TfdsSplit(name, "train", root), TfdsSplit(name, "validation", root)
  except Exception as e:  # tfds raises several types for "not prepared"
    info = os.path.join(str(builder.data_dir), "dataset_info.json") if builder else ""
    why = (f"no {info}" if info and not os.path.isfile(info)
           else f"{type(e).__name__}: {first_line(e)}")
    raise not_prepared(why) from None
  folder = str(builder.data_dir)
  files = [os.path.join(folder, f) for f in sorted(os.listdir(folder))] if os.path.isdir(
      folder) else []
  return splits[0], splits[1], names, files_fingerprint(files, folder)
