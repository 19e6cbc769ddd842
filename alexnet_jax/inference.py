"""A trained network restored from a workdir for inference (§4.1 test time, §6).

`load(workdir)` reads the newest checkpoint that restores (a damaged newest one is reported and
the previous step used), `best=True` the best one, `step=N` that step, onto whatever devices
exist (CPU included): the model config, class names and the dataset statistics come from the
workdir. Only the parameters are read (Orbax partial restore): the optimizer state stays on disk.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Iterable

import grain
import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from alexnet_jax import models
from alexnet_jax.cli import UserError
from alexnet_jax.data import images as image_files
from alexnet_jax.data import pipeline
from alexnet_jax.data.stats import Stats
from alexnet_jax.sharding import DATA, mesh_for
from alexnet_jax.steps import make_predict_step


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

  def __post_init__(self):
    replicated = NamedSharding(self.mesh, P())
    self._mean = jax.device_put(self.stats.mean, replicated)
    self._batch_sharding = NamedSharding(self.mesh, P(DATA))
    self._predict = jax.jit(make_predict_step(self.graphdef,
                                              pixel_scale=float(self.config.data.pixel_scale)))
    self._decode = pipeline.file_decoder(self.config)

  @property
  def stored_size(self) -> int:
    return int(self.config.data.image_size)

  def predict(self, stored: np.ndarray, *, ten_crop: bool = False,
              batch_size: int = 0) -> dict[str, np.ndarray]:
    """uint8 images at the stored size [n, S, S, c] -> {'probs': [n, C], 'fc7': [n, F]}: the
    centre crop, or the softmax averaged over the ten §4.1 crops."""
    crops = pipeline.EvalCrops(int(self.config.model.input_size), ten_crop)
    data_axis = self.mesh.shape[DATA]
    batch_size = batch_size or int(self.config.data.eval_batch_size)
    batch_size = max(data_axis, batch_size // data_axis * data_axis)
    outputs = []
    for start in range(0, len(stored), batch_size):
      chunk = [crops.map({"image": im, "label": 0}) for im in stored[start:start + batch_size]]
      n = len(chunk)
      padded = -(-n // data_axis) * data_axis
      batch = {k: np.stack([c[k] for c in chunk] + [chunk[-1][k]] * (padded - n))
               for k in ("image", "crop")}
      batch = jax.device_put(batch, self._batch_sharding)
      out = jax.device_get(self._predict(self.params, batch, self._mean))
      outputs.append({k: v[:n] for k, v in out.items()})
    if not outputs:
      return {"probs": np.zeros((0, len(self.class_names)), np.float32),
              "fc7": np.zeros((0, int(self.config.model.fc_features[-1])), np.float32)}
    return {k: np.concatenate([o[k] for o in outputs]) for k in outputs[0]}

  def read_image(self, path: str) -> np.ndarray:
    """An image file in the stored form of the training data (uint8 [S, S, c]); raises
    OSError or `UnreadableImage`."""
    with open(path, "rb") as f:
      return self._decode(f.read())

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


def checkpoint_dirs(workdir: str, *, step: int | None = None, best: bool = False) -> list[str]:
  """Step directories to try, newest first: `best/<step>`, `checkpoints/<step>`, or all of
  `checkpoints/` (the newest first, older ones as fallbacks)."""
  root = os.path.join(os.path.abspath(workdir), "best" if best else "checkpoints")
  if not os.path.isdir(root):
    raise UserError(f"no checkpoints in {workdir} (missing {root})")
  steps = sorted((int(n) for n in os.listdir(root) if n.isdigit()), reverse=True)
  if step is not None:
    if step not in steps:
      raise UserError(f"no checkpoint for step {step} in {root} (have {sorted(steps)})")
    steps = [step]
  if not steps:
    raise UserError(f"no checkpoints in {root}")
  return [os.path.join(root, str(s)) for s in steps]


def read_meta(step_dir: str) -> dict:
  return ocp.Checkpointer(ocp.JsonCheckpointHandler()).restore(os.path.join(step_dir, "meta"))


def restore_params(step_dir: str, abstract_params) -> dict:
  """The 'params' subtree of a checkpoint's state, placed as `abstract_params` says."""
  restored = ocp.PyTreeCheckpointer().restore(
      os.path.join(step_dir, "state"),
      args=ocp.args.PyTreeRestore(
          item={"params": abstract_params},
          restore_args={"params": ocp.checkpoint_utils.construct_restore_args(abstract_params)},
          partial_restore=True))
  return restored["params"]


# Model fields added after checkpoints were first written, with the value every checkpoint
# without them was trained with (before the field existed, dropout was the inverted form).
_ADDED_MODEL_FIELDS = {"dropout_form": "inverted", "response_norm": False,
                       "response_norm_size": 5, "response_norm_alpha": 1e-3,
                       "response_norm_beta": 0.75}


def saved_config(meta: dict, step_dir: str) -> ml_collections.ConfigDict:
  """The config a checkpoint was trained with, completed for this version's model fields."""
  config = ml_collections.ConfigDict(meta["config"])
  model = config.model
  if model.get("contrast_norm"):
    raise UserError(f"{step_dir} was trained with the mean-subtracting contrast norm of earlier "
                    "versions, which this version replaced by the 2012 code's response norm "
                    "(docs/fidelity.md): it cannot be rebuilt; retrain it")
  for name in [n for n in model if n.startswith("contrast_norm")]:
    del model[name]
  missing = {k: v for k, v in _ADDED_MODEL_FIELDS.items() if k not in model}
  if "dropout_form" in missing and model.dropout > 0:
    logging.info("%s predates model.dropout_form: restored with the inverted dropout it was "
                 "trained with", step_dir)
  model.update(missing)
  return config


def _restore_newest(candidates: list[str], mesh=None):
  """(step dir, meta, config, graphdef, params) of the first candidate that restores; a damaged
  one is reported and the next (older) tried."""
  for i, step_dir in enumerate(candidates):
    try:
      meta = read_meta(step_dir)
      config = saved_config(meta, step_dir)
      graphdef, abstract = models.abstract_model(config.model, mesh=mesh or mesh_for(config))
      return step_dir, meta, config, graphdef, restore_params(step_dir, abstract)
    except UserError:
      raise
    except Exception as e:  # noqa: BLE001 -- any failure to read means this step is damaged
      if i + 1 == len(candidates):
        raise UserError(f"checkpoint {step_dir} cannot be restored ({type(e).__name__}: "
                        f"{_first_line(e)})") from None
      logging.warning("checkpoint %s cannot be restored (%s: %s); using the previous one",
                      step_dir, type(e).__name__, _first_line(e))
  raise AssertionError("unreachable")


def load(workdir: str, *, step: int | None = None, best: bool = False) -> Trained:
  """The trained network of `workdir` on this process's devices."""
  candidates = checkpoint_dirs(workdir, step=step, best=best)
  stats_path = os.path.join(workdir, "data_stats.npz")
  if not os.path.exists(stats_path):
    raise UserError(f"{stats_path} is missing: the workdir was not written by alexnet_jax.train")
  stats = Stats.load(stats_path)
  step_dir, meta, config, graphdef, params = _restore_newest(candidates)
  mesh = jax.tree.leaves(params)[0].sharding.mesh
  names = tuple(meta.get("class_names") or (str(i) for i in range(config.model.num_classes)))
  return Trained(config, graphdef, params, mesh, int(meta["step"]), stats, names, step_dir)


def transfer(params: dict, init_from, mesh: jax.sharding.Mesh) -> dict:
  """Fine-tuning (Table 2, "*"): `params` (a fresh model's) with each layer of the
  `init_from.workdir` checkpoint copied in, except the layers in `init_from.new_layers` (fc8: a
  head for the new classes; conv6 in configs/finetune.py:new_conv6). A layer that only one of
  the two networks has, or of another shape, is a one-line error: the backbone must be the
  source's (Table 2's conv6 route: the source was trained with conv6, configs/paper.py:conv6)."""
  candidates = checkpoint_dirs(init_from.workdir, step=int(init_from.step) or None,
                               best=bool(init_from.best))
  step_dir, _, _, _, source = _restore_newest(candidates, mesh)
  new_layers = tuple(init_from.new_layers)
  for name in source:
    if name not in params:
      raise UserError(
          f"cannot fine-tune from {step_dir}: it has a {name} layer and this config does not"
          + ("; set --config.model.extra_conv6=True (configs/finetune.py:conv6)"
             if name == models.CONV6 else ""))
  out = {}
  for name, layer in params.items():
    if name in new_layers:
      logging.info("fine-tuning: %s initialised afresh (a new layer)", name)
      out[name] = layer
      continue
    if name not in source:
      raise UserError(
          f"cannot fine-tune from {step_dir}: it has no {name} layer to copy; train the source "
          f"with it (configs/paper.py:conv6, the paper's route) or add {name} to "
          "init_from.new_layers (configs/finetune.py:new_conv6)")
    for key in layer:
      if source[name][key].shape != layer[key].shape:
        raise UserError(
            f"cannot fine-tune from {step_dir}: {name}.{key} has shape "
            f"{tuple(source[name][key].shape)} there and {tuple(layer[key].shape)} in this "
            f"config; use the source's model config or add {name} to init_from.new_layers")
    out[name] = jax.tree.map(lambda s, t: jax.device_put(s.astype(t.dtype), t.sharding),
                             source[name], layer)
  logging.info("fine-tuning from %s", step_dir)
  return out


def _first_line(e: Exception) -> str:
  return str(e).splitlines()[0] if str(e) else ""


def split_images(trained: Trained, which: str):
  """(the 'train' or 'eval' split of the workdir's dataset, index -> uint8 stored image or
  None when unreadable)."""
  train, test, _ = pipeline.load_splits(trained.config)
  split = train if which == "train" else test
  if not split.encoded:
    return split, lambda i: split.images[i]
  decode = image_files.Decode(trained.config.data.image_size, trained.config.model.in_channels)

  def image_at(i):
    record = decode.map(split[i])
    return None if record is None else record["image"]

  return split, image_at


def predict_all(trained: Trained, count: int, image_at, *, ten_crop: bool = False,
                batch: int = 256) -> dict[str, np.ndarray]:
  """`Trained.predict` over image_at(0..count-1), read in threads: {'probs', 'fc7'} with NaN
  rows and `valid` False where image_at returned None (an unreadable image)."""
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

  for image in records:
    pending.append(image)
    if len(pending) == batch:
      flush()
  if pending:
    flush()
  if not parts:
    raise UserError("no images to predict")
  return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
