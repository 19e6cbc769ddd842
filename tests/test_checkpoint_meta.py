"""A checkpoint's metadata (`checkpoint_meta.py`): a resume that does not fit is refused before
anything is touched, what a resume takes from where is said, and what earlier versions wrote
is read as this version writes it."""

import glob
import os
import shutil

import ml_collections
import pytest
from absl import logging as absl_logging

from alexnet_jax import checkpoint_meta, metrics, model_spec, train
from alexnet_jax.data.identity import Identity
from alexnet_jax.errors import UserError
from conftest import load_config, small_config


def _copy(straight_run, tmp_path, name="copy"):
  workdir = str(tmp_path / name)
  shutil.copytree(straight_run[0], workdir)
  return workdir


def _said(caplog):
  return " ".join(r.getMessage() for r in caplog.records if r.levelname in ("WARNING", "INFO"))


def test_a_checkpoint_of_another_network_is_not_damaged_and_nothing_is_touched(
    straight_run, tmp_path):
  workdir = _copy(straight_run, tmp_path)
  before = sorted(os.listdir(os.path.join(workdir, "checkpoints")))
  stats = open(os.path.join(workdir, "data_stats.npz"), "rb").read()
  config = small_config(epochs=3)
  config.model.conv_features = (32, 64, 96, 96, 48)
  with pytest.raises(UserError, match=r"another network: params/conv5/bias is \(2, 32\) there "
                                      r"and \(2, 24\) in this config.*init_from"):
    train.train_and_evaluate(config, workdir)
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == before  # nothing renamed
  assert not glob.glob(os.path.join(workdir, "checkpoints", "*damaged*"))
  assert open(os.path.join(workdir, "data_stats.npz"), "rb").read() == stats
  train.train_and_evaluate(small_config(epochs=3), workdir)  # the original config resumes
  assert sorted(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints"))
                if s.isdigit())[-1] == 12


@pytest.mark.parametrize("change,message", [
    ({"synthetic_train_size": 48}, "trained on other data than this run reads \\(.*training "
                                   "images 64 → 48"),
    ({"name": "fashion_mnist", "data_dir": "/nonexistent"}, "Fashion-MNIST not found"),
    ({"batch_size": 32}, "trained with data.batch_size=16, this run has 32"),
])
def test_other_data_or_batch_size_on_resume_is_refused_before_anything_is_written(
    straight_run, tmp_path, change, message):
  workdir = _copy(straight_run, tmp_path)
  stats = open(os.path.join(workdir, "data_stats.npz"), "rb").read()
  config = small_config(epochs=3)
  config.data.update(change)
  with pytest.raises(UserError, match=message):
    train.train_and_evaluate(config, workdir)
  assert open(os.path.join(workdir, "data_stats.npz"), "rb").read() == stats
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["6", "8"]


def test_a_learning_rate_given_on_resume_is_honoured_and_said(straight_run, tmp_path, caplog):
  workdir = _copy(straight_run, tmp_path)
  config = small_config(epochs=3)
  config.optimizer.learning_rate = 0.002
  with caplog.at_level("INFO"):
    absl_logging.use_python_logging()
    train.train_and_evaluate(config, workdir)
  said = _said(caplog)
  assert "optimizer.learning_rate is 0.002, the checkpoint's was 0.01: honoured" in said
  assert "num_epochs: 2.0 → 3.0" in said and "come from the checkpoint" in said
  # Only what differs (mutation: every field listed -> red).
  assert [r.getMessage() for r in caplog.records if "differs from" in r.getMessage()] == [
      "resume: this run's config differs from the checkpoint's in eval.ten_crop_final: True → "
      "False; num_epochs: 2.0 → 3.0"]
  rows = [r for r in metrics.read_metrics(os.path.join(workdir, "metrics.jsonl"))
          if r["split"] == "train" and r["step"] > 8]
  assert rows and all(r["lr"] == pytest.approx(0.002) for r in rows)


def test_checkpoints_of_earlier_versions_are_read_as_this_version_writes_them(caplog):
  """Checkpoints written before `model.dropout_form` existed were trained with inverted
  dropout and rebuild with it (said where they have dropout); fields added since take the
  values they were trained with; fields since removed are dropped; the data a checkpoint
  without `data` was trained on comes from its config; ones with the old contrast norm cannot
  be rebuilt: one line."""
  old = load_config("tiny").to_dict()
  for name in ("dropout_form", "response_norm", "response_norm_size", "response_norm_alpha",
               "response_norm_beta"):
    del old["model"][name]
  del old["data"]["resize"]
  for section, name in (("data", "decoder"), ("data", "transfer"), ("data", "decode_on"),
                        ("model", "column_maps")):
    del old[section][name]
  old["model"].update(contrast_norm=False, contrast_norm_size=5, contrast_norm_k=1.0,
                      name="alexnet")
  predates = "W/checkpoints/8 predates model.dropout_form: restored with the inverted dropout"
  with caplog.at_level("INFO"):
    absl_logging.use_python_logging()
    meta = checkpoint_meta.upgrade({"config": old, "step": 8}, "W/checkpoints/8")
    assert predates in _said(caplog)
    caplog.clear()
    checkpoint_meta.upgrade({"config": {**old, "model": {**old["model"], "dropout": 0.0}}},
                            "W/checkpoints/8")  # no dropout: nothing to say
    checkpoint_meta.upgrade({"config": load_config("tiny").to_dict()}, "W/checkpoints/8")
    assert "predates" not in _said(caplog)
  config = checkpoint_meta.config_of(meta)
  assert config.model.dropout_form == "inverted" and config.model.response_norm is False
  assert config.data.resize == "shorter_side"
  assert (config.data.decoder, config.data.transfer, config.data.decode_on,
          config.model.column_maps) == ("simplejpeg", "pageable", "auto", "joined")
  assert "contrast_norm" not in config.model and "name" not in config.model
  assert meta["data"]["name"] == old["data"]["name"]
  assert meta["processes"] == 1  # its input position written by one process
  model_spec.AlexNetSpec.from_config(config.model)
  current = checkpoint_meta.upgrade({"config": load_config("tiny").to_dict()}, "W")
  assert checkpoint_meta.config_of(current).model.dropout_form == "paper"
  old["model"]["contrast_norm"] = True
  with pytest.raises(UserError, match="contrast norm of earlier versions.*retrain"):
    checkpoint_meta.upgrade({"config": old}, "W/checkpoints/8")


def test_fields_added_since_take_the_paper_configs_value_but_the_dropout_was_inverted():
  """A checkpoint from before a field existed upgrades to what its version did: the paper
  config's value, except for the fields whose earlier behaviour was another (dropout was
  inverted, no response norm, one column's LRN and conv6, no default decoder but simplejpeg).
  Mutations: response_norm_alpha 1e-4 or beta 1.5, crop_chunk 2, prepared_quality 91,
  num_steps 1, profile steps 1 in `_ADDED` -> red."""
  paper = load_config("paper").to_dict()
  config = checkpoint_meta.config_of(checkpoint_meta.upgrade(
      {"config": {"model": {"dropout": 0.5}, "data": {"name": "imagenet", "image_size": 256}}},
      "W/checkpoints/8"))
  added = {"model": ("dropout_form", "response_norm", "response_norm_size", "response_norm_alpha",
                     "response_norm_beta", "lrn_across_columns", "conv6_across_columns",
                     "column_maps"),
           "data": ("resize", "lighting_shrink", "crop_chunk", "prepared_quality",
                    "prepared_chroma", "mean_patch", "decoder", "transfer", "decode_on",
                    "reshuffle_each_epoch"),
           "init_from": ("accept_input_change", "required", "freeze_copied"),
           "profile": ("steps", "skip_steps", "python")}
  differ = {f"{section}.{name}": (config[section][name], paper[section][name])
            for section, names in added.items() for name in names
            if config[section][name] != paper[section][name]}
  assert differ == {"model.dropout_form": ("inverted", "paper")}
  assert config.num_steps == paper["num_steps"] == 0  # the length came from num_epochs
  assert tuple(config.schedule.events) == ()


def test_a_resume_from_data_moved_elsewhere_is_said_and_one_of_another_array_names_it(caplog):
  """The same data read from a new place resumes with a warning saying from where to where; a
  checkpoint whose arrays differ outside `params/` (and not only in the optimizer state) names
  the first of them. Mutations: `moved[1]`, `differ[1]` -> red (an IndexError, or the second
  array named)."""
  def identity(source):
    return Identity.make(name="synthetic", source=source, listing="abc", num_train=64,
                         num_eval=40, class_names=("a", "b"), form={"image_size": 36})

  meta = {"data": identity("/old/tree").to_dict(), "config": {"data": {"batch_size": 16}}}
  config = ml_collections.ConfigDict({"data": {"batch_size": 16}})
  shapes = {"params/conv1/kernel": (3, 3), "opt_state/mu": (3, 3), "rng/key": (2,)}
  with caplog.at_level("WARNING"):
    absl_logging.use_python_logging()
    checkpoint_meta.check_resume(meta, shapes, shapes=shapes, config=config,
                                 identity=identity("/new/tree"), workdir="W")
  assert [r.getMessage() for r in caplog.records] == [
      "originals at /old/tree → /new/tree: the same data (files, classes and form agree), read "
      "from its new place"]
  # A store prepared since the run read the originals: said (mutation: the loop dropped -> red);
  # the reverse is another form, refused.
  caplog.clear()
  stored = identity("/old/tree").replace(form={"image_size": 36, "quality": 90, "chroma": "420"})
  checkpoint_meta.check_resume(meta, shapes, shapes=shapes, config=config, identity=stored,
                               workdir="W")
  assert [r.getMessage() for r in caplog.records] == [
      "read from the original files → the prepared store (JPEG quality 90, chroma 420): the "
      "run goes on from its checkpoint with the same images re-encoded (not bitwise the run "
      "the originals would have given)"]
  # The reverse names the way back to the store. Mutation: the second case of `_way_back`
  # dropped -> red.
  with pytest.raises(UserError, match=r"\(read from the prepared store \(JPEG quality 90, chroma "
                                      r"420\) → the original files\): use the data they were "
                                      r"trained on \(their prepared store: `python -m "
                                      r"alexnet_jax.data.prepare` with this config writes it "
                                      r"again where it is gone, --config.data.use_prepared=True "
                                      r"reads it\), or a new --workdir"):
    checkpoint_meta.check_resume({**meta, "data": stored.to_dict()}, shapes, shapes=shapes,
                                 config=config, identity=identity("/old/tree"), workdir="W")
  # The store left out an unreadable original: the way back to the originals is named
  # (mutation: the hint's condition `and` -> `or`, said for the reverse too -> red).
  with pytest.raises(UserError, match=r"\(training images 64 → 63\): use the data they were "
                                      r"trained on \(--config.data.use_prepared=False reads the "
                                      r"original files they were trained on\), or a new"):
    checkpoint_meta.check_resume(meta, shapes, shapes=shapes, config=config,
                                 identity=stored.replace(num_train=63), workdir="W")
  saved = {**shapes, "opt_state/mu": (3, 4), "rng/key": (4,)}
  with pytest.raises(UserError, match=r"another network: opt_state/mu is \(3, 4\) there and "
                                      r"\(3, 3\) in this config \(2 arrays differ\)"):
    checkpoint_meta.check_resume(meta, saved, shapes=shapes, config=config,
                                 identity=identity("/old/tree"), workdir="W")
  # Only the optimizer state differs (an earlier version's): fine-tune from it, not resume.
  # Mutations: the optimizer-state case dropped (then "another network"), `differ[1]` -> red.
  saved = {**shapes, "opt_state/mu": (3, 4), "opt_state/nu": (1,)}
  with pytest.raises(UserError, match=r"^the checkpoints in W hold the optimizer state of an "
                                      r"earlier version \(opt_state/mu and 1 more\): they restore "
                                      r"for inference and fine-tuning \(--config.init_from.workdir"
                                      r"=W\), not for a resume"):
    checkpoint_meta.check_resume(meta, saved, shapes=shapes, config=config,
                                 identity=identity("/old/tree"), workdir="W")


@pytest.mark.parametrize("edit,what", [
    (lambda m: [m], "not a JSON object"),
    (lambda m: m.update(config="x"), "no model and data sections"),
    (lambda m: m.update(step="8"), "step '8' is not a whole number"),
    (lambda m: m.update(class_names=5), "class_names is not a list"),
    (lambda m: m["config"]["data"].update(image_size="big"), "image_size 'big'"),
    (lambda m: m["config"]["data"].update(image_size=0), "image_size 0 is not a positive"),
    (lambda m: m.update(step=True), "step True is not a whole number"),
    (lambda m: m.update(epoch="2.0"), "epoch '2.0' is not a number"),
    (lambda m: m.update(data=[1]), "data is not an object"),
    (lambda m: m.update(class_names=["n01", 2]), "class_names is not a list of names"),
    (lambda m: m.update(processes="2"), "processes '2' is not a positive whole number"),
    (lambda m: m.update(processes=0), "processes 0 is not a positive whole number"),
    (lambda m: m.update(environment=["jax"]), "environment is not an object of names and "),
    (lambda m: m["environment"].update(jax=11), "environment is not an object of names and "),
])
def test_a_meta_edited_out_of_shape_is_one_line(straight_run, tmp_path, edit, what):
  """Checkpoint metas edited to odd values ended in tracebacks in every tool. Mutations: the
  shape check in `upgrade` dropped; `image_size >= 0`; bools taken as whole numbers -> red."""
  import json
  import shutil

  from alexnet_jax import inference

  workdir = tmp_path / "copy"
  shutil.copytree(straight_run[0], workdir)
  for step_dir in list((workdir / "checkpoints").iterdir()) + list((workdir / "best").iterdir()):
    path = step_dir / "meta" / "metadata"
    meta = json.loads(path.read_text())
    path.write_text(json.dumps(edit(meta) or meta))
  with pytest.raises(UserError, match=f"is damaged or was edited .*{what}"):
    inference.load(str(workdir))
