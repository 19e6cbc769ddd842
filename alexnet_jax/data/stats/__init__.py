"""Training-set statistics for §2 and §4.1: the per-pixel mean image and the PCA of RGB values.

`python -m alexnet_jax.data.stats` (`__main__.py`) streams the training split (bounded memory:
running sums in float64) and writes them (`write_statistics`); training loads them. Files are
plain `.npz` arrays, loaded with `allow_pickle=False`.

PCA lighting (§4.1) adds Σ_i p_i α_i λ_i to every pixel. The eigenvalues of the covariance of
0-255 RGB values are in squared grey levels (ImageNet's largest is above ten thousand), so, as
the 2012 code does (`pca_stdevs`: `randn · pca_stdevs`, scaled by 0.1), the scale used is
√λ_i, the standard deviation of the pixels along p_i, in grey levels: with α ~ N(0, 0.1) the
shift along p_1 is about ten grey levels. Computed statistics and the published fallback below
hold the same quantity (`eigval` = λ_i in grey levels², `lighting_scale` = p_i √λ_i).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import zipfile
from typing import Iterator

import grain
import numpy as np
from absl import logging

from alexnet_jax.data import images, readers, sources
from alexnet_jax.data.identity import stats_fingerprint
from alexnet_jax.errors import UserError

# Defaults until `python -m alexnet_jax.data.stats` has run: the usual ImageNet per-channel mean
# and the RGB PCA published with fb.resnet.torch, whose eigenvalues λ (0.2175, 0.0188, 0.0045)
# are for 0-1 pixel values: √λ x 255 is the standard deviation along p_i in grey levels
# (docs/fidelity.md compares it with the statistics of a real photograph).
MEANS = ("pixel", "channel")  # data.mean: §2's mean image, or its per-channel mean
IMAGENET_CHANNEL_MEAN = (123.68, 116.78, 103.94)
IMAGENET_RGB_EIGVAL_UNIT = (0.2175, 0.0188, 0.0045)  # λ of 0-1 RGB values
# √λ, in grey levels
IMAGENET_RGB_STD = tuple(round(255 * v ** 0.5, 2) for v in IMAGENET_RGB_EIGVAL_UNIT)
IMAGENET_RGB_EIGVEC = ((-0.5675, 0.7192, 0.4009),
                       (-0.5808, -0.0045, -0.8140),
                       (-0.5836, -0.6948, 0.4203))  # columns are p_1, p_2, p_3


@dataclasses.dataclass(frozen=True)
class Stats:
  mean: np.ndarray  # float32 [size, size, channels]: the mean image
  eigval: np.ndarray  # float32 [channels]: covariance eigenvalues, descending (grey levels²)
  eigvec: np.ndarray  # float32 [channels, channels]: column i is p_i
  count: int  # images the statistics were computed from (0: published defaults)

  @property
  def lighting_scale(self) -> np.ndarray:
    """[channels, channels]: p_i √λ_i as columns; the lighting shift is this @ α."""
    return (self.eigvec * np.sqrt(np.maximum(self.eigval, 0.0))[None, :]).astype(np.float32)

  def save(self, path: str) -> None:
    """Writes the file whole or not at all (a temporary file renamed; removed on failure)."""
    tmp = path + ".tmp.npz"
    try:
      os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
      np.savez(tmp, mean=self.mean, eigval=self.eigval, eigvec=self.eigvec,
               count=np.int64(self.count))
      os.replace(tmp, path)
    except OSError as e:
      if os.path.exists(tmp):
        os.remove(tmp)
      raise UserError(f"cannot write {path} ({e.strerror or e})") from None

  @classmethod
  def load(cls, path: str) -> "Stats":
    try:
      with np.load(path, allow_pickle=False) as f:
        stats = cls(f["mean"].astype(np.float32), f["eigval"].astype(np.float32),
                    f["eigvec"].astype(np.float32), int(f["count"]))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
      raise UserError(f"cannot read the dataset statistics {path}: {e}") from None
    c = stats.mean.shape[-1]
    if stats.mean.ndim != 3 or stats.eigval.shape != (c,) or stats.eigvec.shape != (c, c):
      raise UserError(f"{path} holds statistics of unexpected shapes")
    if not all(np.isfinite(a).all() for a in (stats.mean, stats.eigval, stats.eigvec)):
      raise UserError(f"{path} holds statistics that are not finite (NaN or infinity): every "
                      "image would be centred to NaN")
    return stats

  @classmethod
  def imagenet_defaults(cls, size: int) -> "Stats":
    eigvec = np.asarray(IMAGENET_RGB_EIGVEC, np.float32)
    eigval = np.square(np.asarray(IMAGENET_RGB_STD, np.float32))
    mean = np.broadcast_to(np.asarray(IMAGENET_CHANNEL_MEAN, np.float32), (size, size, 3))
    return cls(np.array(mean), eigval, eigvec, 0)

  @property
  def fingerprint(self) -> str:
    """The statistics' fingerprint (`identity.stats`): what a run's input was centred with."""
    return stats_fingerprint(self.mean, self.eigval, self.eigvec)

  def channel_mean(self) -> "Stats":
    """The same statistics with the mean image replaced by its per-channel mean."""
    mean = np.broadcast_to(self.mean.mean(axis=(0, 1), keepdims=True), self.mean.shape)
    return dataclasses.replace(self, mean=np.array(mean, np.float32))


class Accumulator:
  """Running float64 sums of images, pixels and pixel outer products."""

  def __init__(self):
    self.count, self.pixels = 0, 0
    self.image_sum = self.pixel_sum = self.outer_sum = None

  def add(self, images: np.ndarray) -> None:
    """uint8 images [n, h, w, c]."""
    images = np.asarray(images)
    flat = images.reshape(-1, images.shape[-1]).astype(np.float64)
    if self.image_sum is None:
      self.image_sum = np.zeros(images.shape[1:], np.float64)
      self.pixel_sum = np.zeros(images.shape[-1], np.float64)
      self.outer_sum = np.zeros((images.shape[-1],) * 2, np.float64)
    self.image_sum += images.sum(axis=0, dtype=np.float64)
    self.pixel_sum += flat.sum(axis=0)
    self.outer_sum += flat.T @ flat
    self.count += len(images)
    self.pixels += len(flat)

  def result(self) -> Stats:
    if not self.count:
      raise UserError("no readable training images to compute statistics from")
    mean_pixel = self.pixel_sum / self.pixels
    cov = self.outer_sum / self.pixels - np.outer(mean_pixel, mean_pixel)
    eigval, eigvec = np.linalg.eigh(cov)
    order = np.argsort(eigval)[::-1]
    eigvec = eigvec[:, order] * np.sign(eigvec[:, order].sum(axis=0, keepdims=True) + 1e-30)
    return Stats((self.image_sum / self.count).astype(np.float32),
                 np.maximum(eigval[order], 0.0).astype(np.float32), eigvec.astype(np.float32),
                 self.count)


def compute(batches, total: int | None = None, progress: bool = False) -> Stats:
  """Statistics of an iterable of uint8 image batches [n, h, w, c]."""
  acc = Accumulator()
  bar = None
  if progress:
    from tqdm import tqdm

    bar = tqdm(total=total, unit="img", dynamic_ncols=True, disable=not sys.stderr.isatty())
  for batch in batches:
    acc.add(batch)
    if bar is not None:
      bar.update(len(batch))
  if bar is not None:
    bar.close()
  return acc.result()


def default_path(data_config) -> str:
  if data_config.stats_file:
    return data_config.stats_file
  root = readers.data_root(data_config.data_dir)
  return os.path.join(root, "alexnet_jax_stats", f"{data_config.name}-{data_config.image_size}.npz")


def stored_images(split, size: int, channels: int, limit: int, batch: int = 256,
                  resize: str = "shorter_side") -> Iterator[np.ndarray]:
  """The first `limit` readable images of `split` at the stored size, as uint8 batches (image
  files decoded in one thread per core; unreadable ones skipped, logged and counted)."""
  if not split.encoded:
    for start in range(0, limit, batch):
      yield split.images[start:min(start + batch, limit)]
    return
  read = grain.ReadOptions(num_threads=os.cpu_count() or 1,
                           prefetch_buffer_size=2 * (os.cpu_count() or 1))
  yield from (grain.MapDataset.source(split)[:limit].map(images.Decode(size, channels, resize))
              .to_iter_dataset(read).map(lambda r: r["image"]).batch(batch))


# A training set of at most this many image files without a statistics file has them computed
# when a run starts (seconds), as in-memory datasets do; a larger one needs `data.stats`.
COMPUTED_AT_START = 20_000


def dataset_stats(data, train, channels: int) -> Stats:
  """The mean image and RGB PCA of the config's `data` section: read from `data.stats_file`
  where it is set, else computed for in-memory data, else read from the stats file beside the
  data (`python -m alexnet_jax.data.stats`), else computed now and written there for a small
  training set (`COMPUTED_AT_START`), else ImageNet's published values with a warning (RGB
  only). `data.mean='channel'` replaces the mean image by its channel means."""
  path = data.stats_file or getattr(train, "stats_path", "") or default_path(data)
  if data.stats_file or (train.encoded and os.path.exists(path)):
    stats = Stats.load(path)
  elif not train.encoded:
    stats = compute(stored_images(train, data.image_size, channels, len(train), batch=4096))
  elif len(train) <= COMPUTED_AT_START:
    logging.info("no dataset statistics at %s: computing them from the %d training images "
                 "(written there for the next runs)", path, len(train))
    stats = compute(stored_images(train, data.image_size, channels, len(train),
                                  resize=data.resize), total=len(train))
    stats.save(path)
  elif channels != 3:
    raise UserError(f"no dataset statistics at {path}: run `python -m alexnet_jax.data.stats "
                    "--config=...` first")
  else:
    logging.warning("no dataset statistics at %s: using ImageNet's published per-channel mean "
                    "and RGB eigenvectors until `python -m alexnet_jax.data.stats --config=...` "
                    "has computed this training set's", path)
    stats = Stats.imagenet_defaults(data.image_size)
  if stats.mean.shape != (data.image_size, data.image_size, channels):
    raise UserError(f"the statistics in {path} are for images of shape {stats.mean.shape}, "
                    f"not {data.image_size}x{data.image_size}x{channels}")
  return stats.channel_mean() if data.mean == "channel" else stats


def write_statistics(data, channels: int, num_classes: int, *, output: str = "",
                     max_images: int = 0) -> Stats:
  """Computes the statistics of the training split of `data` (the first `max_images` when > 0),
  writes them to `output` (default: `default_path`) and prints a summary."""
  path = output or default_path(data)
  train = sources.load(data, channels=channels, num_classes=num_classes).train
  limit = len(train) if max_images <= 0 else min(max_images, len(train))
  logging.info("computing statistics of %d %s training images at %d x %d", limit, data.name,
               data.image_size, data.image_size)
  stats = compute(stored_images(train, data.image_size, channels, limit,
                                resize=data.resize), total=limit,
                  progress=True)
  try:
    stats.save(path)
  except UserError as e:
    raise UserError(f"{e}: pass --output=PATH and set --config.data.stats_file=PATH when "
                    "training") from None
  mean_rgb = stats.mean.mean(axis=(0, 1))
  print(f"images: {stats.count}")
  print("mean pixel: " + " ".join(f"{v:.3f}" for v in mean_rgb))
  print("eigenvalues: " + " ".join(f"{v:.3f}" for v in stats.eigval))
  print("eigenvectors (columns):")
  for row in stats.eigvec:
    print("  " + " ".join(f"{v:+.4f}" for v in row))
  print(f"written: {path}")
  return stats
