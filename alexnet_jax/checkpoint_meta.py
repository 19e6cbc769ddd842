"""What a checkpoint holds besides its arrays: the `meta` JSON of each step directory.

This module is its one owner: it writes it (`build`), reads every earlier version's as this
version writes it (`upgrade`, the one place that knows how they differ) and checks it against
the run about to resume (`check_resume`, `report_resume`). Its fields:

* `step`, `epoch`; `schedule`: the ε schedule's state (`schedule.LearningRateSchedule`);
* `config`: the run's whole config (its paths absolute), what inference and fine-tuning
  rebuild the network from;
* `data`: the identity of the data the run was trained on (`data.identity`: dataset, the
  originals' fingerprint, sizes, class names, stored form, the statistics' fingerprint), and
  `class_names`, the same names for readers of the plain JSON;
* `processes`: how many processes wrote the input position;
* `environment`: the software and devices that wrote it (`environment.describe`: versions,
  devices, XLA flags; earlier versions did not record it);
* `evaluation`: the figures of the evaluation at this step, when it was evaluated (the last
  checkpoint of a run and every `best/` one);
* `converted_from`: the weights' origin, in a workdir written by `convert`.
"""

from __future__ import annotations

import os

import ml_collections
from absl import logging

from alexnet_jax import configuration, environment
from alexnet_jax.data import identity as identity_lib
from alexnet_jax.data.identity import Identity
from alexnet_jax.errors import UserError

# Config fields added after checkpoints were first written, with the value every checkpoint
# without them was trained with (before `model.dropout_form` existed, dropout was inverted).
_ADDED = {
    "model": {"dropout_form": "inverted", "response_norm": False, "response_norm_size": 5,
              "response_norm_alpha": 1e-3, "response_norm_beta": 0.75,
              "lrn_across_columns": False, "conv6_across_columns": False,
              "column_maps": "joined", "removed_conv": ""},
    "data": {"resize": "shorter_side", "lighting_shrink": False, "crop_chunk": 1,
             "prepared_quality": 90, "prepared_chroma": "420", "mean_patch": "crop",
             "decoder": "simplejpeg", "transfer": "pageable", "decode_on": "auto",
             "reshuffle_each_epoch": True},
    "init_from": {"accept_input_change": False, "required": False, "freeze_copied": False},
    "schedule": {"events": ()},
    "profile": {"steps": 0, "skip_steps": 5, "python": False},
}
_ADDED_TOP = {"num_steps": 0}
# Config fields earlier versions wrote that this one no longer has.
_REMOVED = {"model": ("name",)}
# Paths of the config, stored absolute: inference from another directory reads the same files.
_PATHS = ("data.data_dir", "data.stats_file", "data.prepared_dir", "init_from.workdir")


def build(step: int, *, epoch: float, config, processes: int, schedule_state: dict | None = None,
          data: Identity | None = None, class_names=None, evaluation: dict | None = None,
          converted_from: str = "") -> dict:
  """The meta of the checkpoint of `step`: a run's (`data`: the identity of what it trained on,
  `evaluation`: the figures of an evaluation at it) or, `converted_from` a weights file, the
  one of weights made elsewhere (no schedule, no data: only their `class_names`)."""
  config = config.to_dict()
  for path in _PATHS:
    section, name = path.split(".")
    if config[section][name]:
      config[section][name] = os.path.abspath(config[section][name])
  meta = {"step": step, "epoch": epoch, "config": config, "processes": processes,
          "class_names": list(data.class_names if data is not None else class_names),
          "environment": environment.describe()}
  if schedule_state is not None:
    meta["schedule"] = schedule_state
  if data is not None:
    meta["data"] = data.to_dict()
  if evaluation is not None:
    meta["evaluation"] = evaluation
  if converted_from:
    meta["converted_from"] = os.path.abspath(converted_from)
  return meta


def upgrade(meta: dict, where: str) -> dict:
  """`meta` as this version writes it, whatever version wrote it (`where`: its step directory,
  for messages): config fields added since filled with the values the checkpoint was trained
  with, removed ones dropped, `data` as an identity (one of an earlier version records what it
  knew: the dataset, its training-set size, class names and stored size). A checkpoint this
  version cannot rebuild, or a meta damaged or edited out of shape, is a one-line
  `UserError`."""
  _check_shape(meta, where)
  meta = dict(meta)
  config = {section: dict(values) if isinstance(values, dict) else values
            for section, values in meta["config"].items()}
  model = config["model"]
  if model.get("contrast_norm"):
    raise UserError(f"{where} was trained with the mean-subtracting contrast norm of earlier "
                    "versions, which this version replaced by the 2012 code's response norm "
                    "(docs/fidelity.md): it cannot be rebuilt; retrain it")
  for name in [n for n in model if n.startswith("contrast_norm")]:
    del model[name]
  for section, names in _REMOVED.items():
    for name in names:
      config[section].pop(name, None)
  if "dropout_form" not in model and model.get("dropout", 0) > 0:
    logging.info("%s predates model.dropout_form: restored with the inverted dropout it was "
                 "trained with", where)
  for section, added in _ADDED.items():
    config[section] = {**added, **config.get(section, {})}
  config = {**_ADDED_TOP, **config}
  meta["config"] = config
  data = meta.get("data") or {}
  if "listing" not in data:  # before identities: what the meta or its config said
    c = config["data"]
    meta["data"] = Identity.make(
        name=data.get("name", c["name"]), source=data.get("data_dir", c.get("data_dir", "")),
        listing="", num_train=data.get("num_train", -1), num_eval=-1,
        class_names=meta.get("class_names", ()),
        form={"image_size": data.get("image_size", c["image_size"])}).to_dict()
  meta.setdefault("class_names", meta["data"]["class_names"])
  meta.setdefault("processes", 1)  # before multi-process runs
  return meta


def _check_shape(meta, where: str) -> None:
  """The fields every reader relies on, of the types this module writes them with."""
  def damaged(what: str):
    raise UserError(f"the checkpoint meta of {where} is damaged or was edited ({what}): put "
                    "back the one training wrote, or use another checkpoint (--step)")
  whole = lambda v: isinstance(v, int) and not isinstance(v, bool)
  if not isinstance(meta, dict):
    damaged("not a JSON object")
  config = meta.get("config")
  if not isinstance(config, dict) or not all(isinstance(config.get(s), dict)
                                             for s in ("model", "data")):
    damaged("its config has no model and data sections")
  if "step" in meta and not whole(meta["step"]):
    damaged(f"step {meta['step']!r} is not a whole number")
  if "epoch" in meta and not (whole(meta["epoch"]) or isinstance(meta["epoch"], float)):
    damaged(f"epoch {meta['epoch']!r} is not a number")
  if "processes" in meta and not (whole(meta["processes"]) and meta["processes"] > 0):
    damaged(f"processes {meta['processes']!r} is not a positive whole number")
  names = meta.get("class_names")
  if names is not None and not (isinstance(names, list) and all(isinstance(n, str)
                                                                for n in names)):
    damaged("class_names is not a list of names")
  if meta.get("data") is not None and not isinstance(meta["data"], dict):
    damaged("data is not an object")
  env = meta.get("environment")
  if env is not None and not (isinstance(env, dict) and all(isinstance(v, str)
                                                            for v in env.values())):
    damaged("environment is not an object of names and versions")
  size = config["data"].get("image_size")
  if size is not None and not (whole(size) and size > 0):
    damaged(f"data.image_size {size!r} is not a positive whole number")


def config_of(meta: dict) -> ml_collections.ConfigDict:
  """The config of an upgraded meta."""
  return ml_collections.ConfigDict(meta["config"])


def identity_of(meta: dict) -> Identity:
  """The identity of the data an upgraded meta's run was trained on."""
  return Identity.from_dict(meta["data"])


def check_resume(meta: dict, saved_shapes: dict, *, shapes: dict, config, identity: Identity,
                 workdir: str) -> None:
  """Raises `UserError` (one line, nothing touched) when a checkpoint does not fit this run:
  another network (`saved_shapes` against this run's state `shapes`, {path: shape}; the first
  array that differs is named), other data (every difference of `identity` named, the
  statistics this run would use included), another batch size."""
  differ = [p for p in sorted(set(shapes) | set(saved_shapes))
            if shapes.get(p) != saved_shapes.get(p)]
  if differ and all(p.startswith("opt_state/") for p in differ):
    raise UserError(f"the checkpoints in {workdir} hold the optimizer state of an earlier version "
                    f"({differ[0]} and {len(differ) - 1} more): they restore for inference and "
                    f"fine-tuning (--config.init_from.workdir={workdir}), not for a resume; train "
                    "in a new --workdir")
  if differ:
    first = next((p for p in differ if p.startswith("params/")), differ[0])
    shape = lambda d: "absent" if d.get(first) is None else str(d[first])
    raise UserError(
        f"the checkpoints in {workdir} are of another network: {first} is {shape(saved_shapes)} "
        f"there and {shape(shapes)} in this config ({len(differ)} arrays differ); run the config "
        f"they were trained with, or a new --workdir (--config.init_from.workdir={workdir} to "
        "fine-tune from them)")
  saved = identity_of(meta)
  moved = identity_lib.same_data(saved, identity, "moved")
  other = identity_lib.same_data(saved, identity, "resume")
  switched = identity_lib.same_data(saved, identity, "switched")
  if other:
    raise UserError(f"the checkpoints in {workdir} were trained on other data than this run "
                    f"reads ({'; '.join(other)}): use the data they were trained on"
                    f"{_way_back(saved, identity)}, or a new --workdir")
  if identity_lib.same_data(saved, identity, "statistics"):
    raise UserError(f"the statistics this run would subtract and shift by ({workdir}/"
                    "data_stats.npz, or the dataset's where that file is missing) are not those "
                    "its checkpoints were trained with: put the run's data_stats.npz back, or "
                    "use a new --workdir")
  batch = meta["config"]["data"]["batch_size"]
  if batch != config.data.batch_size:
    raise UserError(f"the checkpoints in {workdir} were trained with data.batch_size={batch}, "
                    f"this run has {config.data.batch_size}: the steps, epochs and input "
                    f"position would not line up; resume with --config.data.batch_size={batch}, "
                    "or use a new --workdir")
  if moved:
    logging.warning("%s: the same data (files, classes and form agree), read from its new "
                    "place", moved[0])
  for said in switched:
    logging.warning("%s: the run goes on from its checkpoint with the same images re-encoded "
                    "(not bitwise the run the originals would have given)", said)


def _way_back(saved, now) -> str:
  """How to read again what a run read, where it read the originals and now a store, or the
  reverse."""
  if now.prepared and not saved.prepared:
    return " (--config.data.use_prepared=False reads the original files they were trained on)"
  if saved.prepared and not now.prepared:
    return (" (their prepared store: `python -m alexnet_jax.data.prepare` with this config "
            "writes it again where it is gone, --config.data.use_prepared=True reads it)")
  return ""


def report_resume(meta: dict, config, schedule) -> None:
  """Says what the resumed run takes from the checkpoint and from this run's config. A
  learning rate given now that differs from the checkpoint's is honoured (`schedule.rebase`)."""
  saved, now = configuration.flat(meta["config"]), configuration.flat(config.to_dict())
  changed = {k: (saved.get(k), now.get(k)) for k in sorted(set(saved) | set(now))
             if saved.get(k) != now.get(k) and k not in _PATHS}
  lr = changed.pop("optimizer.learning_rate", None)
  if lr is not None:
    schedule.rebase(float(config.optimizer.learning_rate))
    logging.warning("resume: optimizer.learning_rate is %g, the checkpoint's was %g: honoured, "
                    "ε is now %g (after %d drop(s))", lr[1], lr[0], schedule.learning_rate,
                    schedule.state.drops)
  logging.info("resumed from step %d (epoch %.2f): parameters, optimizer state, ε schedule "
               "(ε %g, %d drop(s), best error %s), input position and statistics come from the "
               "checkpoint", int(meta["step"]), meta["epoch"], schedule.learning_rate,
               schedule.state.drops, meta["schedule"].get("best_error"))
  if changed:
    logging.info("resume: this run's config differs from the checkpoint's in %s",
                 "; ".join(f"{k}: {a!r} → {b!r}" for k, (a, b) in changed.items()))
  moved = environment.differences(meta["environment"], environment.describe()) if (
      "environment" in meta) else []  # (earlier versions did not record it)
  if moved:
    logging.warning("resume: the software or devices differ from those that wrote the "
                    "checkpoint (%s): the run goes on from it, but may not be bitwise what "
                    "it would have been", "; ".join(moved))
