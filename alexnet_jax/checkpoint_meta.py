"""What a checkpoint holds besides its arrays: the `meta` JSON of each step directory.

This module is its one owner: it writes it (`build`), reads every earlier version's as this
version writes it (`upgrade`, the one place that knows how they differ) and checks it against
the run about to resume (`check_resume`, `report_resume`). Its fields:

* `step`, `epoch`; `schedule`: the ε schedule's state (`schedule.LearningRateSchedule`);
* `config`: the run's whole config, what inference and fine-tuning rebuild the network from;
* `class_names`; `data`: what the run was trained on (a resume on other data is refused);
* `processes`: how many processes wrote the input position;
* `evaluation`: the last evaluation's figures when the step was evaluated (best/ always);
* `converted_from`: the weights' origin, in a workdir written by `convert`.
"""

from __future__ import annotations

import ml_collections
from absl import logging

from alexnet_jax import configuration
from alexnet_jax.errors import UserError

# Config fields added after checkpoints were first written, with the value every checkpoint
# without them was trained with (before `model.dropout_form` existed, dropout was inverted).
_ADDED = {
    "model": {"dropout_form": "inverted", "response_norm": False, "response_norm_size": 5,
              "response_norm_alpha": 1e-3, "response_norm_beta": 0.75,
              "lrn_across_columns": False},
    "data": {"resize": "shorter_side", "lighting_shrink": False, "crop_chunk": 1},
}
# Config fields earlier versions wrote that this one no longer has.
_REMOVED = {"model": ("name",)}


def build(step: int, *, epoch: float, schedule_state: dict, config, class_names, data: dict,
          processes: int, evaluation: dict | None = None) -> dict:
  """The meta of the checkpoint of `step` (`evaluation`: the figures of an evaluation at it)."""
  meta = {"step": step, "epoch": epoch, "schedule": schedule_state, "config": config.to_dict(),
          "class_names": list(class_names), "processes": processes, "data": data}
  if evaluation is not None:
    meta["evaluation"] = evaluation
  return meta


def trained_on(config, input_) -> dict:
  """The `data` entry: the dataset a run reads, as a resume compares it."""
  data = config.data
  return {"name": data.name, "data_dir": data.data_dir, "num_train": input_.num_train,
          "image_size": int(data.image_size), "batch_size": int(data.batch_size)}


def upgrade(meta: dict, where: str) -> dict:
  """`meta` as this version writes it, whatever version wrote it (`where`: its step directory,
  for messages): config fields added since filled with the values the checkpoint was trained
  with, removed ones dropped, `data` derived from the config when the meta predates it. A
  checkpoint this version cannot rebuild is a one-line `UserError`."""
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
    config[section] = {**added, **config[section]}
  meta["config"] = config
  if not meta.get("data"):
    data = config["data"]
    meta["data"] = {"name": data["name"], "data_dir": data.get("data_dir", ""),
                    "image_size": data.get("image_size"), "batch_size": data.get("batch_size")}
  return meta


def config_of(meta: dict) -> ml_collections.ConfigDict:
  """The config of an upgraded meta."""
  return ml_collections.ConfigDict(meta["config"])


def check_resume(meta: dict, saved_shapes: dict, *, shapes: dict, config, input_,
                 workdir: str) -> None:
  """Raises `UserError` (one line, nothing touched) when a checkpoint does not fit this run:
  another network (`saved_shapes` against this run's state `shapes`, {path: shape}; the first
  array that differs is named), another dataset, another batch size."""
  differ = [p for p in sorted(set(shapes) | set(saved_shapes))
            if shapes.get(p) != saved_shapes.get(p)]
  if differ:
    first = next((p for p in differ if p.startswith("params/")), differ[0])
    shape = lambda d: "absent" if d.get(first) is None else str(d[first])
    raise UserError(
        f"the checkpoints in {workdir} are of another network: {first} is {shape(saved_shapes)} "
        f"there and {shape(shapes)} in this config ({len(differ)} arrays differ); run the config "
        f"they were trained with, or a new --workdir (--config.init_from.workdir={workdir} to "
        "fine-tune from them)")
  saved_data, now = meta["data"], trained_on(config, input_)
  names_now = list(input_.class_names)
  same = (saved_data["name"] == now["name"] and saved_data.get("image_size") == now["image_size"]
          and meta.get("class_names", names_now) == names_now
          and saved_data.get("num_train", now["num_train"]) == now["num_train"])
  if not same:
    describe = lambda d, n: (f"{d['name']} ({d.get('num_train', '?')} training images, {n} "
                             f"classes, stored at {d.get('image_size', '?')} px)")
    raise UserError(f"the checkpoints in {workdir} were trained on "
                    f"{describe(saved_data, len(meta.get('class_names', [])))}, this run reads "
                    f"{describe(now, len(names_now))}: use the data they were trained on, or a "
                    "new --workdir")
  if saved_data.get("batch_size", now["batch_size"]) != now["batch_size"]:
    raise UserError(f"the checkpoints in {workdir} were trained with data.batch_size="
                    f"{saved_data['batch_size']}, this run has {now['batch_size']}: the steps, "
                    "epochs and input position would not line up; resume with "
                    f"--config.data.batch_size={saved_data['batch_size']}, or use a new --workdir")
  if saved_data.get("data_dir", now["data_dir"]) != now["data_dir"]:
    logging.warning("data.data_dir is %s, the checkpoint's was %s: the same dataset (name, "
                    "classes and size agree), read from its new place", now["data_dir"],
                    saved_data["data_dir"])


def report_resume(meta: dict, config, schedule) -> None:
  """Says what the resumed run takes from the checkpoint and from this run's config. A
  learning rate given now that differs from the checkpoint's is honoured (`schedule.rebase`)."""
  saved, now = configuration.flat(meta["config"]), configuration.flat(config.to_dict())
  changed = {k: (saved.get(k), now.get(k)) for k in sorted(set(saved) | set(now))
             if saved.get(k) != now.get(k)}
  lr = changed.pop("optimizer.learning_rate", None)
  if lr is not None:
    schedule.rebase(float(config.optimizer.learning_rate))
    logging.warning("resume: optimizer.learning_rate is %g, the checkpoint's was %g: honoured, "
                    "ε is now %g (after %d drop(s))", lr[1], lr[0], schedule.learning_rate,
                    schedule.state.drops)
  logging.info("resumed from step %d (epoch %.2f): parameters, optimizer state, ε schedule "
               "(ε %g, %d drop(s), best error %s) and input position come from the checkpoint",
               int(meta["step"]), meta["epoch"], schedule.learning_rate, schedule.state.drops,
               meta["schedule"].get("best_error"))
  if changed:
    logging.info("resume: this run's config differs from the checkpoint's in %s",
                 "; ".join(f"{k}: {a!r} → {b!r}" for k, (a, b) in changed.items()))
