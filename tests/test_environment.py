"""The software and devices behind a checkpoint: recorded in its meta, said on a resume where
they differ, written in a model card."""

import json
import os
import shutil

import jax
from absl import logging as absl_logging

from alexnet_jax import environment, inference, model_card, train
from conftest import small_config


def test_differences_name_each_entry_that_changed_or_is_new_or_gone():
  saved = {"python": "3.11.7", "jax": "0.10.2", "devices": "8 x cpu", "simplejpeg": "1.8.0"}
  now = {"python": "3.11.7", "jax": "0.11.2", "devices": "8 x cpu", "pillow": "13.0.0"}
  assert environment.differences(saved, now) == [
      "jax: 0.10.2 → 0.11.2", "simplejpeg: 1.8.0 → none", "pillow: none → 13.0.0"]
  assert environment.differences(now, dict(now)) == []


def _resume_said(workdir, caplog) -> list[str]:
  caplog.clear()
  with caplog.at_level("WARNING"):
    absl_logging.use_python_logging()
    train.train_and_evaluate(small_config(epochs=2.5), workdir)
  return [r.getMessage() for r in caplog.records if "software or devices" in r.getMessage()]


def _edit_metas(workdir, edit) -> None:
  for kind in ("checkpoints", "best"):
    for step in os.listdir(os.path.join(workdir, kind)):
      path = os.path.join(workdir, kind, step, "meta", "metadata")
      meta = json.load(open(path))
      edit(meta)
      json.dump(meta, open(path, "w"))


def test_a_resume_says_which_software_or_devices_differ_from_the_checkpoints(
    straight_run, tmp_path, caplog):
  """Written by jax 0.0.1 on 2 x gpu: both said; by this software: nothing said; by an
  earlier version (no record): nothing said. Mutations: the comparison dropped; every entry
  called different; the record left out of the meta -> red."""
  other = str(tmp_path / "other")
  shutil.copytree(straight_run[0], other)
  _edit_metas(other, lambda m: m["environment"].update(jax="0.0.1", devices="2 x gpu"))
  assert _resume_said(other, caplog) == [
      "resume: the software or devices differ from those that wrote the checkpoint (jax: "
      f"0.0.1 → {jax.__version__}; devices: 2 x gpu → 8 x cpu): the run goes on from it, but "
      "may not be bitwise what it would have been"]
  same = str(tmp_path / "same")
  shutil.copytree(straight_run[0], same)
  assert _resume_said(same, caplog) == []
  earlier = str(tmp_path / "earlier")
  shutil.copytree(straight_run[0], earlier)
  _edit_metas(earlier, lambda m: m.pop("environment"))
  assert _resume_said(earlier, caplog) == []


def test_a_model_card_says_what_its_checkpoint_was_written_with(straight_run):
  card = model_card.model_card(inference.load(straight_run[0], best=True), "onnx",
                               "alexnet.onnx", straight_run[0])
  line = next(line for line in card.splitlines() if line.startswith("* Checkpoint: "))
  assert f", jax {jax.__version__}, " in line and line.endswith("; 8 x cpu; XLA_FLAGS="
                                                                + os.environ["XLA_FLAGS"] + ".")
