"""The ablation study runner: table, plot, and resuming an interrupted study."""

import csv
import os

import pytest
from PIL import Image

from alexnet_jax import ablate, train

OVERRIDES = {  # the small synthetic set-up of conftest.small_config, one epoch
    "data.name": "synthetic", "data.image_size": 36, "data.batch_size": 16,
    "data.eval_batch_size": 16, "data.synthetic_train_size": 32, "data.synthetic_eval_size": 16,
    "data.pixel_scale": 1 / 64, "schedule.kind": "constant", "num_epochs": 1.0,
    "log_every_steps": 2, "checkpoint.every_steps": 2, "eval.ten_crop_final": False}


def test_two_ablations_one_seed_give_a_table_a_plot_and_resume_after_an_interruption(
    tmp_path, monkeypatch):
  workdir = str(tmp_path)
  trained = []
  real = train.train_and_evaluate

  def interrupted_on_the_third_run(config, run_dir):
    trained.append(run_dir)
    if len(trained) == 3:
      raise KeyboardInterrupt
    return real(config, run_dir)

  monkeypatch.setattr(train, "train_and_evaluate", interrupted_on_the_third_run)
  with pytest.raises(KeyboardInterrupt):
    ablate.study("configs/tiny.py", ["lrn", "pca_lighting"], 1, workdir, OVERRIDES)
  trained.clear()
  table = ablate.study("configs/tiny.py", ["lrn", "pca_lighting"], 1, workdir, OVERRIDES)
  assert [os.path.relpath(d, workdir) for d in trained] == [os.path.join("pca_lighting", "seed0")]
  lines = table.splitlines()
  assert lines[2].startswith("| variant |") and len(lines) == 7
  assert "| lrn | §3.3 | 1 |" in table and "+1.40" in table  # the paper's LRN delta
  with open(os.path.join(workdir, "ablations.csv"), newline="") as f:
    rows = list(csv.DictReader(f))
  assert [r["variant"] for r in rows] == ["baseline", "lrn", "pca_lighting"]
  assert float(rows[0]["delta_top1"]) == 0.0
  with Image.open(os.path.join(workdir, "ablations.png")) as png:
    assert png.format == "PNG" and png.size[0] > 300
