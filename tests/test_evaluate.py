"""`python -m alexnet_jax.evaluate`: a model's and an ensemble's errors (Table 2), on the
model's classes, each model in its own stored form."""

import json
import os

import numpy as np
import pytest

from alexnet_jax import evaluate
from alexnet_jax.errors import UserError


def test_an_ensemble_of_a_model_with_itself_equals_the_model(straight_run, tmp_path):
  workdir, result = straight_run
  out = evaluate.evaluate([workdir, workdir], output=str(tmp_path / "r.json"))
  one, two, average = *out["models"], out["ensemble"]
  assert one["top1_error"] == two["top1_error"] == average["top1_error"]
  assert average["top5_error"] == one["top5_error"] and out["examples"] == 40
  assert one["top1_error"] == pytest.approx(100 * result["eval"]["top1_error"], abs=0.01)
  assert one["top1_accuracy"] == pytest.approx(100 - one["top1_error"])
  # The confusion matrix's diagonal is the accuracy; each row is one class's images.
  confusion = np.asarray(out["confusion"])
  assert confusion.sum() == 40
  assert np.trace(confusion) / 40 == pytest.approx(one["top1_accuracy"] / 100, abs=1e-4)
  for row, per_class in zip(confusion, out["per_class"]):
    assert per_class["examples"] == row.sum()
  written = json.loads((tmp_path / "r.json").read_text())
  assert written["models"] == out["models"]
  assert (tmp_path / "r_confusion.png").stat().st_size > 1000
  assert (tmp_path / "r_per_class.csv").read_text().startswith("class,examples,accuracy")
  single = evaluate.evaluate([workdir])
  assert single["ensemble"] is None  # no "average of 1"


def _folder_run(root, workdir, **data):
  from alexnet_jax import train
  from conftest import folder_config

  config = folder_config(root)
  config.data.update(data)
  config.num_epochs = 1 / 3  # one step
  config.eval.ten_crop_final = False
  train.train_and_evaluate(config, str(workdir))
  return config


def test_evaluation_labels_are_the_models_classes_and_a_changed_val_tree_is_refused(tmp_path):
  """`evaluate` took its labels from today's folder listing: a class folder added to val after
  training shifted every label."""
  from conftest import image_folder_tree, save_image

  image_folder_tree(tmp_path / "src")
  _folder_run(tmp_path / "src", tmp_path / "run")
  before = evaluate.evaluate([str(tmp_path / "run")])["models"]
  save_image(str(tmp_path / "src" / "val" / "m00" / "a.png"), np.zeros((40, 40, 3), np.uint8),
             "PNG")  # sorts first: would have become label 0
  with pytest.raises(UserError, match=r"val has class folders that are not among the classes "
                                      r".*: m00"):
    evaluate.evaluate([str(tmp_path / "run")])
  os.remove(tmp_path / "src" / "val" / "m00" / "a.png")
  os.rmdir(tmp_path / "src" / "val" / "m00")
  assert evaluate.evaluate([str(tmp_path / "run")])["models"] == before


def test_each_model_of_an_ensemble_reads_the_images_in_its_own_stored_form(tmp_path):
  """Every model of an ensemble got the first model's stored size and resize mode."""
  from conftest import image_folder_tree

  image_folder_tree(tmp_path / "src")
  _folder_run(tmp_path / "src", tmp_path / "shorter")
  _folder_run(tmp_path / "src", tmp_path / "squash", resize="squash")
  alone = evaluate.evaluate([str(tmp_path / "squash")])["models"][0]
  together = evaluate.evaluate([str(tmp_path / "shorter"),
                                str(tmp_path / "squash")])["models"][1]
  assert together["top1_error"] == alone["top1_error"]
  assert together["top5_error"] == alone["top5_error"]


def test_a_relative_data_dir_is_stored_absolute(tmp_path, monkeypatch):
  """A relative data_dir was stored as written: inference from another directory read
  whatever tree that path reached there."""
  from conftest import image_folder_tree

  image_folder_tree(tmp_path / "a" / "src")
  image_folder_tree(tmp_path / "b" / "src", seed=1)  # the same path from another directory
  os.remove(next((tmp_path / "b" / "src" / "val" / "n01").iterdir()))
  monkeypatch.chdir(tmp_path / "a")
  _folder_run("src", tmp_path / "run")
  monkeypatch.chdir(tmp_path / "b")
  assert evaluate.evaluate([str(tmp_path / "run")])["examples"] == 5  # a's val: 6 files, one unreadable (b's has 4 readable)
