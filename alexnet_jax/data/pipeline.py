"""grain pipelines: the paper's training augmentation (§4.1) and exact evaluation batches.

Training: subtract the training set's mean image (§2), take a random crop (§4.1: 224 of 256)
and mirror it with probability 1/2. Every random choice comes from grain's per-record RNG, so
a seed fixes the batches and a restored iterator continues exactly. Evaluation: the centre
crop, or the ten crops of §4.1 (four corners, centre, and their mirrors); the last batch is
padded and masked so that every example counts once.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Iterator

import grain
import numpy as np

from alexnet_jax.cli import UserError
from alexnet_jax.data import sources


@dataclasses.dataclass
class Input:
  train: grain.DatasetIterator  # local batches {'image': float32 [b,h,w,c], 'label': int32 [b]}
  eval_batches: Callable[[bool], Iterator[dict]]  # ten_crop -> padded batches with a 'mask'
  num_train: int
  num_eval: int
  num_classes: int
  image_shape: tuple[int, int, int]
  class_names: tuple[str, ...]


def crop_boxes(size: int, crop: int) -> list[tuple[int, int]]:
  """Top-left corners of the five §4.1 test patches: four corners, then the centre."""
  far, mid = size - crop, (size - crop) // 2
  return [(0, 0), (0, far), (far, 0), (far, far), (mid, mid)]


class TrainAugment(grain.transforms.RandomMap):
  """Mean subtraction, random crop, random horizontal flip (§2, §4.1)."""

  def __init__(self, mean: np.ndarray, crop: int, flip: bool, pixel_scale: float):
    self.mean, self.crop, self.flip, self.pixel_scale = mean, crop, flip, pixel_scale

  def random_map(self, record, rng: np.random.Generator):
    image = record["image"].astype(np.float32) - self.mean
    top, left = rng.integers(0, image.shape[0] - self.crop + 1), rng.integers(
        0, image.shape[1] - self.crop + 1)
    image = image[top:top + self.crop, left:left + self.crop]
    if self.flip and rng.random() < 0.5:
      image = image[:, ::-1]
    return {"image": np.ascontiguousarray(image * self.pixel_scale), "label": record["label"]}


class EvalCrops(grain.transforms.Map):
  """The centre crop [h,w,c], or the ten §4.1 crops [10,h,w,c]."""

  def __init__(self, mean: np.ndarray, crop: int, ten_crop: bool, pixel_scale: float):
    self.mean, self.crop, self.ten_crop, self.pixel_scale = mean, crop, ten_crop, pixel_scale

  def map(self, record):
    image = (record["image"].astype(np.float32) - self.mean) * self.pixel_scale
    boxes = crop_boxes(image.shape[0], self.crop)
    patches = [image[t:t + self.crop, l:l + self.crop] for t, l in boxes]
    if not self.ten_crop:
      return {"image": patches[4], "label": record["label"]}
    patches += [p[:, ::-1] for p in patches]
    return {"image": np.stack(patches), "label": record["label"]}


def _splits(config) -> tuple[sources.Split, sources.Split, tuple[str, ...]]:
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
  raise UserError(f"unknown dataset {data.name!r}; this version reads 'fashion_mnist' and "
                  "'synthetic'")


def build_input(config, *, process_index: int = 0, process_count: int = 1) -> Input:
  """The training iterator and evaluation batches for `config.data`, this process's shard."""
  data, model = config.data, config.model
  train, test, class_names = _splits(config)
  if len(train) == 0 or len(test) == 0:
    raise UserError(f"dataset {data.name!r} has an empty split ({len(train)} train, "
                    f"{len(test)} eval examples)")
  crop = model.input_size
  if crop > train.images.shape[1]:
    raise UserError(f"model.input_size {crop} is larger than the stored images "
                    f"({train.images.shape[1]})")
  if train.images.shape[-1] != model.in_channels:
    raise UserError(f"model.in_channels is {model.in_channels} but {data.name} images have "
                    f"{train.images.shape[-1]} channels")
  num_labels = int(max(train.labels.max(), test.labels.max())) + 1
  if num_labels > model.num_classes or len(class_names) != model.num_classes:
    raise UserError(f"model.num_classes is {model.num_classes} but {data.name} has "
                    f"{len(class_names)} classes")
  if data.batch_size % process_count or data.eval_batch_size % process_count:
    raise UserError(f"batch sizes ({data.batch_size}, {data.eval_batch_size}) must divide "
                    f"evenly over {process_count} processes")
  local_batch, local_eval_batch = (data.batch_size // process_count,
                                   data.eval_batch_size // process_count)

  mean = train.images.mean(axis=0, dtype=np.float64)
  if data.mean == "channel":
    mean = mean.mean(axis=(0, 1), keepdims=True)
  elif data.mean != "pixel":
    raise UserError(f"data.mean must be 'pixel' or 'channel', got {data.mean!r}")
  mean = mean.astype(np.float32)

  read = grain.ReadOptions(num_threads=data.read_threads,
                          prefetch_buffer_size=max(data.prefetch, data.read_threads))
  train_ds = (grain.MapDataset.source(train)[process_index::process_count]
              .seed(config.seed).shuffle().repeat()
              .random_map(TrainAugment(mean, crop, data.flip, data.pixel_scale))
              .batch(local_batch, drop_remainder=True)
              .to_iter_dataset(read))
  if data.workers > 0:
    train_ds = train_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=data.workers))

  local_test = grain.MapDataset.source(test)[process_index::process_count]
  # Every process runs the same number of eval steps (padding batches where it has no data).
  eval_steps = math.ceil(math.ceil(len(test) / process_count) / local_eval_batch)

  def eval_batches(ten_crop: bool) -> Iterator[dict]:
    batches = iter(local_test.map(EvalCrops(mean, crop, ten_crop, data.pixel_scale))
               .batch(local_eval_batch, drop_remainder=False).to_iter_dataset(read))
    shape = (local_eval_batch,) + ((10,) if ten_crop else ()) + (crop, crop, model.in_channels)
    for _ in range(eval_steps):
      batch = next(batches, None)
      n = 0 if batch is None else len(batch["label"])
      padded = {"image": np.zeros(shape, np.float32), "label": np.zeros(local_eval_batch, np.int32),
                "mask": np.zeros(local_eval_batch, bool)}
      if n:
        padded["image"][:n], padded["label"][:n], padded["mask"][:n] = (
            batch["image"], batch["label"], True)
      yield padded

  return Input(train=iter(train_ds), eval_batches=eval_batches, num_train=len(train),
               num_eval=len(test), num_classes=model.num_classes,
               image_shape=(crop, crop, model.in_channels), class_names=class_names)
