"""In-memory datasets: Fashion-MNIST (IDX files of the Debian package) and synthetic images."""

from __future__ import annotations

import dataclasses
import gzip
import os

import numpy as np

from alexnet_jax.cli import UserError

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot")


@dataclasses.dataclass(frozen=True)
class Split:
  """uint8 images [N, H, W, C] at the stored size (crops are taken from these) and labels."""

  images: np.ndarray
  labels: np.ndarray

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
  """Fashion-MNIST `train` (60k) or `test` (10k) at `size` x `size`.

  Up to 32 the 28x28 images are zero-padded (evenly); larger sizes are bilinear upscales
  (the full paper network's 256, from which it takes 224 crops).
  """
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
  if size <= 32:
    pad = (size - 28) // 2
    if pad < 0 or 28 + 2 * pad != size:
      raise UserError(f"Fashion-MNIST image_size must be 28 + an even padding up to 32, or an "
                      f"upscale above 32; got {size}")
    images = np.pad(images, ((0, 0), (pad, pad), (pad, pad)))
  else:
    from PIL import Image

    images = np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.BILINEAR))
                       for im in images])
  return Split(images[..., None], labels.astype(np.int32))


def synthetic(num_examples: int, size: int, channels: int, num_classes: int, seed: int) -> Split:
  """Random uint8 images with random labels (for benchmarks and tests: nothing to learn)."""
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 256, (num_examples, size, size, channels), dtype=np.uint8)
  return Split(images, rng.integers(0, num_classes, num_examples).astype(np.int32))
