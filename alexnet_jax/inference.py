"""A trained network restored from a workdir for inference (§4.1 test time, §6).

`load(workdir)` reads the newest checkpoint that restores (a damaged newest one is reported and
the previous step used), `best=True` the best one, `step=N` that step, onto whatever devices
exist (CPU included), through `checkpoint_params.restore`: the model config, class names and
the dataset statistics come from the workdir; only the parameters are read.
"""

from __future__ import annotations

import dataclasses
import os
import stat
from typing import Iterable

import grain
import jax
import ml_collections
import numpy as np
from absl import logging
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from alexnet_jax import checkpoint_meta, checkpoint_params, evaluation
from alexnet_jax import workdir as workdir_lib
from alexnet_jax.data import batch as batch_lib
from alexnet_jax.data import identity as identity_lib
from alexnet_jax.data import images as image_files
from alexnet_jax.data import augment, readers, sources
from alexnet_jax.data.identity import Identity
from alexnet_jax.data.stats import Stats
from alexnet_jax.errors import UserError
from alexnet_jax.progress import track
from alexnet_jax.sharding import DATA, mesh_for
from alexnet_jax.steps import make_eval_step, make_predict_step


@dataclasses.dataclass
class Trained:
  config: ml_collections.ConfigDict
  graphdef: nnx.GraphDef
  params: dict
  mesh: jax.sharding.Mesh
  step: int
  stats: Stats
  class_names: tuple[str, ...]
  path: str  # the checkpoint step directory
  identity: Identity  # of the data it was trained on (`data.identity`)
  environment: dict  # the software and devices that wrote it ({}: not recorded)

  def __post_init__(self):
    replicated = NamedSharding(self.mesh, P())
    self._mean = jax.device_put(self.stats.mean, replicated)
    self._batch_sharding = NamedSharding(self.mesh, P(DATA))
    self._predict = jax.jit(make_predict_step(
        self.graphdef, pixel_scale=float(self.config.data.pixel_scale),
        centre_mean=self.config.data.mean_patch == "centre"))
    self._decode = sources.stored_decoder(self.config.data, int(self.config.model.in_channels))

  @property
  def stored_size(self) -> int:
    return int(self.config.data.image_size)

  def warn_if_other_data(self, identity: Identity) -> None:
    """Says how the data `identity` names differs from the data this model was trained on."""
    differ = identity_lib.same_data(self.identity, identity, "inference")
    if differ:
      logging.warning("%s is read on other data than it was trained on: %s", self.path,
                      "; ".join(differ))

  def evaluate(self, input_, split: str) -> tuple[dict, dict]:
    """The run's own evaluation (`evaluation.evaluate`) over `input_`'s evaluation batches
    (`data.pipeline.Input`; ten crops when `split` is 'eval_10crop'): (figures by split,
    {'probs', 'labels'} of `split` for the readable images)."""
    step = jax.jit(make_eval_step(self.graphdef, pixel_scale=float(self.config.data.pixel_scale),
                                  centre_mean=self.config.data.mean_patch == "centre",
                                  with_probs=True))
    return evaluation.evaluate(step, self.params, self._mean,
                               input_.eval_batches(split == "eval_10crop"), input_.eval_steps,
                               self._batch_sharding, what=f"evaluating {self.path}", keep=split,
                               transfer=str(self.config.data.transfer))

  def predict(self, stored: np.ndarray, *, ten_crop: bool = False,
              batch_size: int = 0) -> dict[str, np.ndarray]:
    """uint8 images at the stored size [n, S, S, c] -> {'probs': [n, C], 'fc7': [n, F]}: the
    centre crop, or the softmax averaged over the ten §4.1 crops."""
    crops = augment.EvalCrops(int(self.config.model.input_size), ten_crop)
    data_axis = self.mesh.shape[DATA]
    batch_size = batch_size or int(self.config.data.eval_batch_size)
    batch_size = max(data_axis, batch_size // data_axis * data_axis)
    outputs = []
    for start in range(0, len(stored), batch_size):
      chunk = [crops.map({"image": im, "label": 0}) for im in stored[start:start + batch_size]]
      n = len(chunk)
      padded = -(-n // data_axis) * data_axis
      batch = batch_lib.views(*(np.stack([c[k] for c in chunk] + [chunk[-1][k]] * (padded - n))
                                for k in ("image", "crop")))
      batch = jax.device_put(batch, self._batch_sharding)
      out = jax.device_get(self._predict(self.params, batch, self._mean))
      outputs.append({k: v[:n] for k, v in out.items()})
    if not outputs:
      return {"probs": np.zeros((0, len(self.class_names)), np.float32),
              "fc7": np.zeros((0, int(self.config.model.fc_features[-1])), np.float32)}
    return {k: np.concatenate([o[k] for o in outputs]) for k in outputs[0]}

  def read_image(self, path: str) -> np.ndarray:
    """An image file in the stored form of the training data (uint8 [S, S, c]); raises
    OSError or `UnreadableImage`. Only a regular file is opened (a FIFO would block), and no
    more of it is read than training reads of one image (`images.MAX_FILE_BYTES`)."""
    if not stat.S_ISREG(os.stat(path).st_mode):
      raise image_files.UnreadableImage("not a regular file")
    with open(path, "rb") as f:
      return self._decode(f.read(image_files.MAX_FILE_BYTES + 1))

  def read_images(self, paths: Iterable[str]) -> tuple[list[str], np.ndarray, list[str]]:
    """(readable paths, their uint8 stored-size images, messages for the unreadable ones)."""
    good, arrays, bad = [], [], []
    for path in paths:
      try:
        arrays.append(self.read_image(path))
        good.append(path)
      except (OSError, image_files.UnreadableImage) as e:
        bad.append(f"{path}: unreadable ({e})")
    size, c = self.stored_size, int(self.config.model.in_channels)
    stacked = np.stack(arrays) if arrays else np.zeros((0, size, size, c), np.uint8)
    return good, stacked, bad


def load(workdir: str, *, step: int | None = None, best: bool = False) -> Trained:
  """The trained network of `workdir` on this process's devices, with the statistics it was
  trained with (`data_stats.npz`, checked against the checkpoint's record of them)."""
  stats_path = workdir_lib.RunDir(workdir).stats
  checkpoint_params.step_dirs(workdir, step=step, best=best)  # no checkpoints: that error first
  if not os.path.exists(stats_path):
    raise UserError(f"{stats_path} is missing: the workdir was not written by alexnet_jax.train")
  stats = Stats.load(stats_path)
  step_dir, meta, config, graphdef, params = checkpoint_params.restore(
      workdir, step=step, best=best, mesh_for=mesh_for)
  identity = checkpoint_meta.identity_of(meta)
  if identity.stats and identity.stats != stats.fingerprint:
    raise UserError(f"{stats_path} holds other statistics than {step_dir} was trained with (the "
                    "file was written again since): its predictions would be centred wrongly; "
                    "put the run's own back")
  mesh = jax.tree.leaves(params)[0].sharding.mesh
  names = tuple(meta["class_names"] or (str(i) for i in range(config.model.num_classes)))
  return Trained(config, graphdef, params, mesh, int(meta["step"]), stats, names, step_dir,
                 identity, meta.get("environment", {}))


def split_images(trained: Trained, which: str, data=None):
  """(the 'train' or 'eval' split of the dataset `data` names (default: the one `trained` was
  trained on), index -> uint8 image in `trained`'s stored form, or None when unreadable).
  The labels are `trained`'s classes: a dataset with other classes, or in another order, is a
  one-line error; any other difference from the data it was trained on is said."""
  data = trained.config.data if data is None else data
  model = trained.config.model
  dataset = sources.load(data, channels=int(model.in_channels), num_classes=int(model.num_classes),
                         class_names=trained.class_names)
  trained.warn_if_other_data(dataset.identity)
  split = dataset.train if which == "train" else dataset.val
  if not split.encoded:
    return split, lambda i: split.images[i]
  decode = image_files.Decode(data.image_size, int(model.in_channels), data.resize)

  def image_at(i):
    record = decode.map(split[i])
    return None if record is None else record["image"]

  return split, image_at


def split_labels(split) -> np.ndarray:
  """The labels of a split `split_images` returned, in its order (a TFDS split's read from its
  records)."""
  if hasattr(split, "labels"):
    return np.asarray(split.labels, np.int64)
  return np.asarray([int(split[i]["label"]) for i in range(len(split))], np.int64)


def image_paths(args) -> list[str]:
  """The files given, and every image file below each folder given (sorted)."""
  paths = []
  for arg in args:
    if os.path.isdir(arg):
      paths += images_under(arg)
    else:
      paths.append(arg)
  return paths


def images_under(folder: str) -> list[str]:
  """Every image file below `folder`, sorted (a one-line error when there is none); entries
  with an image's name that are not regular files (FIFOs, devices, sockets) are skipped and
  counted in one warning."""
  named = [os.path.join(d, f) for d, _, files in os.walk(folder) for f in files
           if f.lower().endswith(readers.IMAGE_EXTENSIONS)]
  paths = [p for p in named if os.path.isfile(p)]
  if len(paths) < len(named):
    logging.warning("%s: skipped %d entries with an image's name that are not regular files "
                    "(FIFOs, devices, sockets, broken links)", folder, len(named) - len(paths))
  if not paths:
    raise UserError(f"no images under {folder}")
  return sorted(paths)


def folder_class(path: str, class_names) -> str | None:
  """The class an image file's folder is named after (an image tree's layout), or None."""
  folder = os.path.basename(os.path.dirname(os.path.abspath(path)))
  return folder if folder in class_names else None


def predict_all(trained: Trained, count: int, image_at, *, ten_crop: bool = False,
                batch: int = 256, what: str = "predicting") -> dict[str, np.ndarray]:
  """`Trained.predict` over image_at(0..count-1), read in threads: {'probs', 'fc7'} with NaN
  rows and `valid` False where image_at returned None (an unreadable image); progress shown as
  `what` (`progress.track`)."""
  size, c = trained.stored_size, int(trained.config.model.in_channels)
  records = (grain.MapDataset.range(count).map(image_at)
             .to_iter_dataset(grain.ReadOptions(num_threads=8, prefetch_buffer_size=16),
                              allow_nones=True))
  parts, pending = [], []

  def flush():
    stack = np.stack([im if im is not None else np.zeros((size, size, c), np.uint8)
                      for im in pending])
    out = trained.predict(stack, ten_crop=ten_crop)
    valid = np.array([im is not None for im in pending])
    for value in out.values():
      value[~valid] = np.nan
    parts.append(out | {"valid": valid})
    pending.clear()

  for image in track(records, count, what, unit="image"):
    pending.append(image)
    if len(pending) == batch:
      flush()
  if pending:
    flush()
  if not parts:
    raise UserError("no images to predict")
  return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
