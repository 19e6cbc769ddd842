"""grain pipelines: the paper's preprocessing and augmentation (§2, §4.1), exact evaluation.

Records become uint8 images at the stored size (decoded in the input workers when the source
holds files). Training takes a random crop (§4.1: 224 of 256), mirrors it with probability 1/2
and draws the PCA lighting coefficients α ~ N(0, σ) once per image each time it is used. The
batches stay uint8 up to the device: `crop` (top, left, mirrored) and `lighting` travel with
them, and `data.normalize` subtracts the matching patch of the mean image (§2) and adds the
lighting inside the jitted step. Unreadable images are dropped and counted (`skipped`). Evaluation: the centre crop, or the ten crops of §4.1
(four corners, centre, and their mirrors); the last batch is padded and masked so that every
example counts once. Every random choice comes from grain's per-record RNG, so a seed fixes
the batches and a restored iterator continues exactly.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Callable, Iterator

import grain
import numpy as np
from absl import logging

from alexnet_jax.cli import UserError
from alexnet_jax.data import images, sources
from alexnet_jax.data.stats import Stats, compute, default_path


@dataclasses.dataclass
class Input:
  # local batches {'image': uint8 [b,h,w,c], 'label': int32 [b], 'crop': int32 [b,3],
  # 'lighting': float32 [b,c], 'skipped': int32 [b] (unreadable images dropped before each)}
  train: grain.DatasetIterator
  eval_batches: Callable[[bool], Iterator[dict]]  # ten_crop -> padded batches with a 'mask'
  num_train: int
  num_eval: int
  num_classes: int
  image_shape: tuple[int, int, int]
  class_names: tuple[str, ...]
  stats: Stats
  train_position: Callable[[int], dict]  # step -> `train` iterator state after that many steps


def crop_boxes(size: int, crop: int) -> list[tuple[int, int]]:
  """Top-left corners of the five §4.1 test patches: four corners, then the centre."""
  far, mid = size - crop, (size - crop) // 2
  return [(0, 0), (0, far), (far, 0), (far, far), (mid, mid)]


class TrainCrop(grain.transforms.RandomMap):
  """Random crop, random horizontal flip and PCA lighting coefficients (§4.1)."""

  def __init__(self, crop: int, flip: bool, lighting_std: float, lighting_scale: np.ndarray):
    self.crop, self.flip = crop, flip
    self.lighting_std, self.lighting_scale = lighting_std, lighting_scale

  def random_map(self, record, rng: np.random.Generator):
    image = record["image"]
    top = rng.integers(0, image.shape[0] - self.crop + 1)
    left = rng.integers(0, image.shape[1] - self.crop + 1)
    image = image[top:top + self.crop, left:left + self.crop]
    mirrored = bool(self.flip and rng.random() < 0.5)
    if mirrored:
      image = image[:, ::-1]
    channels = image.shape[-1]
    lighting = np.zeros(channels, np.float32)
    if self.lighting_std > 0:
      alpha = rng.normal(0.0, self.lighting_std, channels)
      lighting = (self.lighting_scale @ alpha).astype(np.float32)
    return {"image": np.ascontiguousarray(image), "label": np.int32(record["label"]),
            "crop": np.array([top, left, mirrored], np.int32), "lighting": lighting,
            "skipped": np.int32(0)}


class EvalCrops(grain.transforms.Map):
  """The centre crop [h,w,c], or the ten §4.1 crops [10,h,w,c], with their `crop` boxes."""

  def __init__(self, crop: int, ten_crop: bool):
    self.crop, self.ten_crop = crop, ten_crop

  def map(self, record):
    image, c = record["image"], self.crop
    boxes = crop_boxes(image.shape[0], c)
    if not self.ten_crop:
      top, left = boxes[4]
      return {"image": np.ascontiguousarray(image[top:top + c, left:left + c]),
              "label": np.int32(record["label"]), "crop": np.array([top, left, 0], np.int32),
              "skipped": np.int32(0)}
    patches = [image[t:t + c, l:l + c] for t, l in boxes]
    patches += [p[:, ::-1] for p in patches]
    crops = [(t, l, 0) for t, l in boxes] + [(t, l, 1) for t, l in boxes]
    return {"image": np.stack(patches), "label": np.int32(record["label"]),
            "crop": np.asarray(crops, np.int32), "skipped": np.int32(0)}


class _ProcessShare(grain.MapDataset):
  """Process p's records of each global batch: element i is the parent's element
  (i // local) * (local * processes) + p * local + i % local. Applied to the globally shuffled
  and augmented sequence, so any number of processes sees the same global batches (and the
  same random crops) as one process does."""

  def __init__(self, parent: grain.MapDataset, local: int, index: int, count: int):
    super().__init__(parent)
    self._local, self._index, self._count = local, index, count

  def __len__(self) -> int:
    return len(self._parent) // self._count

  def __str__(self) -> str:
    return f"_ProcessShare({self._index} of {self._count})"

  def __getitem__(self, index):
    if isinstance(index, slice):
      return self.slice(index)
    batch, offset = divmod(index, self._local)
    return self._parent[(batch * self._count + self._index) * self._local + offset]


class _CountSkipped(grain.IterDataset):
  """Drops the None records of unreadable images and writes how many were dropped before each
  kept record into its 'skipped' field: batches stay full and carry the count (also across
  `mp_prefetch` worker processes) to the training loop's metrics."""

  def __iter__(self):
    return _CountSkippedIterator(self._parent.__iter__())


class _CountSkippedIterator(grain.DatasetIterator):

  def __next__(self):
    skipped = 0
    while (record := next(self._parent)) is None:
      skipped += 1
    return {**record, "skipped": np.int32(skipped)}

  def get_state(self):
    return self._parent.get_state()

  def set_state(self, state):
    self._parent.set_state(state)


# ----------------------------------------------------------------------------- sources

def load_splits(config):
  """(train, eval, class names) of `config.data`."""
  data = config.data
  if data.name == "fashion_mnist":
    size = data.image_size
    return (sources.fashion_mnist(data.data_dir, "train", size=size),
            sources.fashion_mnist(data.data_dir, "test", size=size),
            sources.FASHION_MNIST_CLASSES)
  if data.name == "synthetic":
    m = config.model
    make = lambda n, seed: sources.synthetic(n, data.image_size, m.in_channels, m.num_classes, seed)
    return (make(data.synthetic_train_size, 0), make(data.synthetic_eval_size, 1),
            tuple(str(i) for i in range(m.num_classes)))
  if data.name == "image_folder":
    if not data.data_dir:
      raise UserError("data.name=image_folder needs --config.data.data_dir=ROOT "
                      "(ROOT/train/<class>/*, ROOT/val/<class>/*)")
    train, names = sources.image_folder(data.data_dir, "train")
    val, _ = sources.image_folder(data.data_dir, "val", class_names=names)
    return train, val, names
  if data.name == "imagenet2012":
    return sources.tfds_imagenet(data.name, data.data_dir)
  raise UserError(f"unknown dataset {data.name!r}; known: imagenet2012 (TFDS), image_folder, "
                  "fashion_mnist, synthetic")


def file_decoder(config):
  """bytes of an image file -> uint8 [S, S, c] in the stored form of `config.data` (what
  training cropped from): §2's rescale + centre crop, or Fashion-MNIST's 28x28 grey form."""
  size, channels = config.data.image_size, config.model.in_channels
  if config.data.name == "fashion_mnist":
    return lambda data: sources.fashion_mnist_stored(images.decode(data, 28, 1)[None, ..., 0],
                                                     size)[0]
  return lambda data: images.decode(data, size, channels)


def _records(config, split, process_index: int = 0, process_count: int = 1) -> grain.MapDataset:
  """This process's shard of `split` as records {'image': uint8 [s,s,c], 'label'} (or None)."""
  dataset = grain.MapDataset.source(split)[process_index::process_count]
  if split.encoded:
    dataset = dataset.map(images.Decode(config.data.image_size, config.model.in_channels))
  return dataset


def _read_options(data) -> grain.ReadOptions:
  return grain.ReadOptions(num_threads=data.read_threads,
                           prefetch_buffer_size=max(data.prefetch, data.read_threads))


def stored_images(config, split, limit: int, batch: int = 256) -> Iterator[np.ndarray]:
  """The first `limit` readable images of `split` at the stored size, as uint8 batches."""
  if not split.encoded:
    for start in range(0, limit, batch):
      yield split.images[start:min(start + batch, limit)]
    return
  records = (_records(config, split)[:limit].to_iter_dataset(_read_options(config.data))
             .map(lambda r: r["image"]).batch(batch))
  yield from records


def dataset_stats(config, train) -> Stats:
  """The mean image and RGB PCA: computed for in-memory data, else read from the stats file
  (`python -m alexnet_jax.data.stats`), else ImageNet's published values with a warning."""
  data = config.data
  if not train.encoded:
    stats = compute(stored_images(config, train, len(train), batch=4096))
  else:
    path = default_path(data)
    if os.path.exists(path) or data.stats_file:
      stats = Stats.load(path)
    elif config.model.in_channels != 3:
      raise UserError(f"no dataset statistics at {path}: run `python -m alexnet_jax.data.stats "
                      "--config=...` first")
    else:
      logging.warning("no dataset statistics at %s: using ImageNet's published per-channel mean "
                      "and RGB eigenvectors until `python -m alexnet_jax.data.stats --config=...` "
                      "has computed this training set's", path)
      stats = Stats.imagenet_defaults(data.image_size)
    if stats.mean.shape != (data.image_size, data.image_size, config.model.in_channels):
      raise UserError(f"the statistics in {path} are for images of shape {stats.mean.shape}, "
                      f"not {data.image_size}x{data.image_size}x{config.model.in_channels}")
  if data.mean == "channel":
    stats = stats.channel_mean()
  elif data.mean != "pixel":
    raise UserError(f"data.mean must be 'pixel' or 'channel', got {data.mean!r}")
  return stats


# ----------------------------------------------------------------------------- pipelines

def _batched(records: grain.MapDataset, batch: int, may_skip: bool, read: grain.ReadOptions, *,
             drop_remainder: bool) -> grain.IterDataset:
  """Batches of records. Records of image files may be None (unreadable): those are dropped
  after the reader threads and counted (`_CountSkipped`); in-memory records never are, and are
  batched before the reader threads (one task per batch, not per record: 5x less overhead)."""
  if may_skip:
    return _CountSkipped(records.to_iter_dataset(read, allow_nones=True)).batch(
        batch, drop_remainder=drop_remainder)
  return records.batch(batch, drop_remainder=drop_remainder).to_iter_dataset(read)


def train_position(split, local_batch: int, step: int) -> dict:
  """The training iterator's state after `step` batches (when no image was skipped)."""
  return {"next_index": step * local_batch if split.encoded else step}


def train_dataset(config, split, stats: Stats, local_batch: int, process_index: int = 0,
                  process_count: int = 1) -> grain.IterDataset:
  """Endless shuffled training batches, this process's share of each global batch (decoded and
  augmented in `data.workers` processes when > 0)."""
  data = config.data
  records = (_records(config, split)
             .seed(config.seed).shuffle().repeat()
             .random_map(TrainCrop(config.model.input_size, data.flip, data.pca_lighting,
                                   stats.lighting_scale)))
  if process_count > 1:
    records = _ProcessShare(records, local_batch, process_index, process_count)
  batches = _batched(records, local_batch, split.encoded, _read_options(data),
                     drop_remainder=True)
  if data.workers > 0:
    batches = batches.mp_prefetch(grain.MultiprocessingOptions(num_workers=data.workers))
  return batches


def build_input(config, *, process_index: int = 0, process_count: int = 1) -> Input:
  """The training iterator and evaluation batches for `config.data`, this process's shard."""
  data, model = config.data, config.model
  train, test, class_names = load_splits(config)
  if len(train) == 0 or len(test) == 0:
    raise UserError(f"dataset {data.name!r} has an empty split ({len(train)} train, "
                    f"{len(test)} eval examples)")
  stored = train.images.shape[1] if not train.encoded else data.image_size
  crop = model.input_size
  if crop > stored:
    raise UserError(f"model.input_size {crop} is larger than the stored images ({stored})")
  if not train.encoded and train.images.shape[-1] != model.in_channels:
    raise UserError(f"model.in_channels is {model.in_channels} but {data.name} images have "
                    f"{train.images.shape[-1]} channels")
  labels = [s.labels for s in (train, test) if hasattr(s, "labels") and len(s.labels)]
  num_labels = max([int(l.max()) + 1 for l in labels] + [len(class_names)])
  if num_labels > model.num_classes or len(class_names) != model.num_classes:
    raise UserError(f"model.num_classes is {model.num_classes} but {data.name} has "
                    f"{len(class_names)} classes")
  if data.batch_size % process_count or data.eval_batch_size % process_count:
    raise UserError(f"batch sizes ({data.batch_size}, {data.eval_batch_size}) must divide "
                    f"evenly over {process_count} processes")
  if data.pca_lighting < 0:
    raise UserError(f"data.pca_lighting is the std of α and must be >= 0, got {data.pca_lighting}")
  local_batch, local_eval_batch = (data.batch_size // process_count,
                                   data.eval_batch_size // process_count)
  stats = dataset_stats(config, train)
  read = _read_options(data)

  train_ds = train_dataset(config, train, stats, local_batch, process_index, process_count)

  local_test = _records(config, test, process_index, process_count)
  # Every process runs the same number of eval steps (padding batches where it has no data).
  eval_steps = math.ceil(math.ceil(len(test) / process_count) / local_eval_batch)

  def eval_batches(ten_crop: bool) -> Iterator[dict]:
    batches = iter(_batched(local_test.map(EvalCrops(crop, ten_crop)), local_eval_batch,
                            test.encoded, read, drop_remainder=False))
    views = (10,) if ten_crop else ()
    for _ in range(eval_steps):
      batch = next(batches, None)
      n = 0 if batch is None else len(batch["label"])
      padded = {"image": np.zeros((local_eval_batch, *views, crop, crop, model.in_channels),
                                  np.uint8),
                "label": np.zeros(local_eval_batch, np.int32),
                "crop": np.zeros((local_eval_batch, *views, 3), np.int32),
                "mask": np.zeros(local_eval_batch, bool),
                "skipped": np.zeros(local_eval_batch, np.int32)}
      if n:
        for key in ("image", "label", "crop", "skipped"):
          padded[key][:n] = batch[key]
        padded["mask"][:n] = True
      yield padded

  return Input(train=iter(train_ds), eval_batches=eval_batches, num_train=len(train),
               num_eval=len(test), num_classes=model.num_classes,
               image_shape=(crop, crop, model.in_channels), class_names=class_names, stats=stats,
               train_position=lambda step: train_position(train, local_batch, step))
