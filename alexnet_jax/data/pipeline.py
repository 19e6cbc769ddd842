"""grain pipelines: the paper's preprocessing and augmentation (§2, §4.1), exact evaluation.

Records become uint8 images at the stored size (decoded in the input workers when the source
holds files). Training batches are §4.1's random crops, mirrors and lighting draws
(`augment.TrainBatch`), a whole batch read, decoded and cropped per task; they stay uint8 up
to the device, where `data.normalize` subtracts the matching patch of the mean image (§2),
mirrors and adds the lighting inside the jitted step. Unreadable images are counted
(`skipped`) and replaced in training, dropped in evaluation. Evaluation: the centre crop, or
the ten crops of §4.1, in padded and masked batches (`evaluation_batches`). The shuffle is
grain's (seeded) and every augmentation draw a hash of the seed and the record's position in
the training sequence, so a seed fixes the batches and a restored iterator continues
exactly.
"""

from __future__ import annotations

import dataclasses
import math
import os

import grain
import jax
from absl import logging

from alexnet_jax.data import augment, images, nvdecode, sources
from alexnet_jax.data import batch as batch_lib
from alexnet_jax.data import workers as workers_lib
from alexnet_jax import events as events_lib
from alexnet_jax import sharding
from alexnet_jax.data.evaluation_batches import EvaluationBatches
from alexnet_jax.data.identity import Identity
from alexnet_jax.data.normalize import MEAN_PATCHES
from alexnet_jax.data.stats import MEANS, Stats, dataset_stats
from alexnet_jax.errors import UserError


@dataclasses.dataclass
class Input:
  # local batches {'image': uint8 [b,h,w,c], 'label': int32 [b], 'crop': int32 [b,3],
  # 'lighting': float32 [b,c], 'skipped': int32 [b] (unreadable images dropped before each)}
  train: grain.DatasetIterator
  eval_batches: EvaluationBatches  # (ten_crop, keep) -> padded batches with a 'mask'
  eval_steps: int  # the batches a pass of `eval_batches` yields
  num_train: int
  num_eval: int
  num_classes: int
  class_names: tuple[str, ...]
  stats: Stats  # what the run subtracts and shifts by
  dataset_stats: Stats  # the dataset's (the same unless a resumed run keeps its own)
  identity: Identity  # of the data read, `stats` included

  def close(self) -> None:
    """Stops the input's worker processes (or reader threads), training's and those an
    evaluation kept."""
    self.train.close()
    self.eval_batches.close()


CHROMAS = ("444", "422", "420")  # JPEG chroma subsampling of a prepared store


def validate(data) -> None:
  """One-line errors for `data` settings that cannot work (the dataset itself is checked when
  it is read)."""
  if data.name not in sources.DATASETS:
    raise UserError(f"unknown dataset {data.name!r}; known: {', '.join(sources.DATASETS)}")
  for name in ("image_size", "batch_size", "eval_batch_size", "synthetic_train_size",
               "synthetic_eval_size"):
    if data[name] < 1:
      raise UserError(f"data.{name} must be >= 1, got {data[name]}")
  if not (math.isfinite(data.pixel_scale) and data.pixel_scale > 0):
    raise UserError(f"data.pixel_scale must be a positive number, got {data.pixel_scale}")
  if not (math.isfinite(data.pca_lighting) and data.pca_lighting >= 0):
    raise UserError(f"data.pca_lighting is the std of α and must be >= 0, got {data.pca_lighting}")
  if data.mean not in MEANS:
    raise UserError(f"data.mean must be one of {', '.join(MEANS)}, got {data.mean!r}")
  if data.resize not in images.RESIZES:
    raise UserError(f"data.resize must be one of {', '.join(images.RESIZES)}, got "
                    f"{data.resize!r}")
  if data.crop_chunk < 1 or data.batch_size % data.crop_chunk:
    raise UserError(f"data.crop_chunk ({data.crop_chunk}) must be >= 1 and divide "
                    f"data.batch_size ({data.batch_size}): chunks are cut from each batch")
  for name in ("read_threads", "prefetch"):
    if data[name] < 0:
      raise UserError(f"data.{name} must be >= 0, got {data[name]}")
  nvdecode.check_available(data.decoder)
  nvdecode.check_decode_on(data)
  if data.transfer not in sharding.TRANSFERS:
    raise UserError(f"data.transfer must be one of {', '.join(sharding.TRANSFERS)}, got "
                    f"{data.transfer!r}")
  if data.workers < -1:
    raise UserError(f"data.workers must be >= 0, or -1 (one per core), got {data.workers}")
  if not 1 <= data.prepared_quality <= 100:
    raise UserError(f"data.prepared_quality must be in 1..100, got {data.prepared_quality}")
  if data.mean_patch not in MEAN_PATCHES:
    raise UserError(f"data.mean_patch must be one of {', '.join(MEAN_PATCHES)}, got "
                    f"{data.mean_patch!r}")
  if data.prepared_chroma not in CHROMAS:
    raise UserError(f"data.prepared_chroma must be one of {', '.join(CHROMAS)}, got "
                    f"{data.prepared_chroma!r}")


def _with_position(position: int, index: int) -> dict:
  """Tags a record index with its position in the training sequence."""
  return {"index": index, "position": position}


class _ProcessShare(grain.MapDataset):
  """Process p's records of each global batch: element i is the parent's element
  (i // local) * (local * processes) + p * local + i % local. Applied to the globally shuffled
  sequence whose records carry their global position (the key of their augmentation), so any
  number of processes sees the same global batches and crops as one process does."""

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


# ----------------------------------------------------------------------------- pipelines

def _records(split, size: int, channels: int, process_index: int = 0, process_count: int = 1,
             resize: str = "shorter_side") -> grain.MapDataset:
  """This process's shard of `split` as records {'image': uint8 [s,s,c], 'label'} (or None)."""
  dataset = grain.MapDataset.source(split)[process_index::process_count]
  if split.encoded:
    dataset = dataset.map(images.Decode(size, channels, resize))
  return dataset


def _read_options(data, workers: int = 0) -> grain.ReadOptions:
  """`data.read_threads` (0: one per CPU core; one per worker process when there are
  `workers`) and `data.prefetch` as grain's read options."""
  threads = data.read_threads or (1 if workers > 0 else os.cpu_count() or 1)
  return grain.ReadOptions(num_threads=threads, prefetch_buffer_size=max(data.prefetch, threads))


def position_train_iterator(iterator: grain.DatasetIterator, step: int) -> None:
  """Sets the training iterator (`train_dataset`'s, or a prefetcher of it) to where it is
  after `step` batches."""
  iterator.set_state({"step": int(step)})


def train_dataset(data, split, stats: Stats, *, crop: int, channels: int, seed: int,
                  local_batch: int, process_index: int = 0, process_count: int = 1,
                  events: tuple[str, ...] = ()) -> grain.DatasetIterator:
  """Endless shuffled training batches, this process's share of each global batch: grain
  shuffles record indices (anew each epoch, or the first epoch's order again:
  `data.reshuffle_each_epoch`), batches them, and `augment.TrainBatch` reads, decodes and crops
  a whole batch per task, in `data.read_threads` threads of this process or, with worker
  processes (`input_workers`), in those (one thread each unless `data.read_threads` says more).
  Positioned by the step (`workers.FromStep`). `events`: a recorded schedule's, whose
  `pca_lighting` changes σ from their step on."""
  changes = events_lib.input_changes(events, len(split), data.batch_size).get("pca_lighting", [])
  augmentation = augment.Augmentation(sources.stored_size(data, split), crop, bool(data.flip),
                              float(data.pca_lighting), stats.lighting_scale, int(seed),
                              int(data.crop_chunk), tuple(changes), int(data.batch_size),
                              bool(data.lighting_shrink))
  records = (grain.MapDataset.range(len(split)).seed(seed).shuffle()
             .repeat(reseed_each_epoch=bool(data.reshuffle_each_epoch))
             .map_with_index(_with_position))
  if process_count > 1:
    records = _ProcessShare(records, local_batch, process_index, process_count)
  on_device = nvdecode.decodes_on_device(data, getattr(split, "stored_form", False))
  capacity = local_batch * nvdecode.JPEG_BYTES_PER_IMAGE if on_device else 0
  cut = augment.TrainBatch(augmentation, split, channels, data.resize, data.decoder, capacity)
  batches = records.batch(local_batch, drop_remainder=True).map(cut)
  workers = workers_lib.input_workers(data, split.encoded)
  if workers:
    logging.info("input: %d worker processes (data.workers=%d)", workers, data.workers)
  layout, finish = batch_lib.train_layout(local_batch, crop, channels), None
  if on_device:
    logging.info("input: nvImageCodec decodes the training patches on %s",
                 jax.local_devices()[0].device_kind)
    layout = batch_lib.encoded_train_layout(local_batch, capacity, channels)
    finish = nvdecode.DeviceDecoder(cut.host_patch, crop, channels)
  return workers_lib.FromStep(batches, _read_options(data, workers), workers, layout, finish)


def build_input(data, *, crop: int, channels: int, num_classes: int, seed: int,
                process_index: int = 0, process_count: int = 1,
                stats: Stats | None = None, events: tuple[str, ...] = (),
                class_names: tuple[str, ...] | None = None,
                dataset_statistics: bool = True) -> Input:
  """The training iterator and evaluation batches of the config's `data` section, this
  process's shard, for crops of `crop` pixels with `channels` channels. `stats`: the mean image
  and RGB PCA to use (a resumed run's own, a trained model's), else the dataset's
  (`stats.dataset_stats`, computed unless `dataset_statistics` is False: `stats` then stands
  for them); `events`: a recorded schedule's, for its input changes (`train_dataset`);
  `class_names`: the label order to read an image tree with (a model's)."""
  dataset = sources.load(data, channels=channels, num_classes=num_classes,
                         class_names=class_names)
  train, test, class_names = dataset.train, dataset.val, dataset.class_names
  if len(train) == 0 or len(test) == 0:
    raise UserError(f"dataset {data.name!r} has an empty split ({len(train)} train, "
                    f"{len(test)} eval examples)")
  stored = sources.stored_size(data, train)
  if crop > stored:
    raise UserError(f"model.input_size {crop} is larger than the stored images ({stored})")
  if not train.encoded and train.images.shape[-1] != channels:
    have = train.images.shape[-1]
    raise UserError(f"model.in_channels is {channels} but {data.name} images have {have} "
                    f"channel{'s' if have != 1 else ''}")
  if len(class_names) != num_classes:
    raise UserError(f"model.num_classes is {num_classes} but {data.name} has "
                    f"{len(class_names)} classes")
  top = max((int(s.labels.max()) for s in (train, test)
             if hasattr(s, "labels") and len(s.labels)), default=0)
  if top >= num_classes:
    raise UserError(f"{data.name} has a label {top} but {num_classes} classes (0 to "
                    f"{num_classes - 1}): its label files are damaged")
  if data.batch_size % process_count or data.eval_batch_size % process_count:
    raise UserError(f"batch sizes ({data.batch_size}, {data.eval_batch_size}) must divide "
                    f"evenly over {process_count} processes")
  local_batch, local_eval_batch = (data.batch_size // process_count,
                                   data.eval_batch_size // process_count)
  data_stats = (dataset_stats(data, train, channels) if dataset_statistics or stats is None
                else stats)
  stats = data_stats if stats is None else stats
  if stats.mean.shape != (sources.stored_size(data, train),) * 2 + (channels,):
    raise UserError(f"the statistics are of images {stats.mean.shape}, not of the "
                    f"{sources.stored_size(data, train)}px, {channels}-channel images read")
  train_ds = train_dataset(data, train, stats, crop=crop, channels=channels, seed=seed,
                           local_batch=local_batch, process_index=process_index,
                           process_count=process_count, events=events)

  local_test = _records(test, data.image_size, channels, process_index, process_count,
                        data.resize)
  # Every process runs the same number of eval steps (padding batches where it has no data).
  eval_steps = math.ceil(math.ceil(len(test) / process_count) / local_eval_batch)

  eval_workers = workers_lib.input_workers(data, test.encoded)
  eval_batches = EvaluationBatches(local_test, eval_steps, local_eval_batch, crop, channels,
                                   _read_options(data, eval_workers), eval_workers)
  return Input(train=train_ds, eval_batches=eval_batches, eval_steps=eval_steps,
               num_train=len(train), num_eval=len(test), num_classes=num_classes,
               class_names=class_names, stats=stats, dataset_stats=data_stats,
               identity=dataset.identity.replace(stats=stats.fingerprint))
