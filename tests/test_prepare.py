"""§2's stored form prepared once (`python -m alexnet_jax.data.prepare`): the store against the
originals, a killed prepare resumed, and training on the store."""

import json
import os

import numpy as np
import pytest
from absl import logging as absl_logging

from alexnet_jax import train
from alexnet_jax.data import images, prepare, sources
from alexnet_jax.data.stats import compute
from conftest import build_input, folder_config, image_folder_tree


def _originals(root, split):
  """(label, §2 stored image) of every readable original of `split`, in listing order."""
  files, _ = sources.image_folder(str(root), split, class_names=("n01", "n02", "n03"))
  out = []
  for i in range(len(files)):
    record = files[i]
    try:
      out.append((int(record["label"]), images.decode(record["encoded"], 36, 3)))
    except images.UnreadableImage:
      pass
  return out


def _store_files(store):
  return {name: open(os.path.join(store, name), "rb").read() for name in sorted(os.listdir(store))
          if name.endswith((".array_record", ".npz")) or name == "manifest.json"}


def test_the_store_holds_the_section_2_form_labels_statistics_and_a_report(tmp_path):
  image_folder_tree(tmp_path / "src")
  config = folder_config(tmp_path / "src")
  config.data.prepared_dir = str(tmp_path / "store")
  manifest = prepare.prepare(config.data, channels=3, num_classes=3, shard_size=4, workers=2,
                             chroma="444", progress=False)
  assert manifest["class_names"] == ["n01", "n02", "n03"] and manifest["quality"] == 90
  assert manifest["records"] == {"train": 12, "val": 6}
  assert manifest["unreadable"] == {"train": 3, "val": 1}
  report = json.loads((tmp_path / "store" / "report.json").read_text())
  assert sorted(os.path.basename(f["name"]) for f in report["files"]) == [
      "broken.jpg", "empty.jpg", "text.JPEG", "truncated.JPEG"]
  train_split, val_split, names = sources.load_splits(config.data, channels=3, num_classes=3)
  assert isinstance(train_split, sources.PreparedSplit) and names == ("n01", "n02", "n03")
  for split, originals in ((train_split, _originals(tmp_path / "src", "train")),
                           (val_split, _originals(tmp_path / "src", "val"))):
    assert len(split) == len(originals)
    for i, (label, stored) in enumerate(originals):
      record = split[i]
      assert int(record["label"]) == label
      again = images.decode(record["encoded"], 36, 3)
      # JPEG quality 90, 4:4:4, of random-noise images: the worst case for JPEG.
      assert np.abs(again.astype(int) - stored).mean() < 8, i
  # The default, 4:2:0 chroma: each stored image is still nearest its own original.
  config.data.prepared_dir = str(tmp_path / "store420")
  prepare.prepare(config.data, channels=3, num_classes=3, shard_size=4, workers=1,
                  progress=False)
  store420 = sources.load_splits(config.data, channels=3, num_classes=3)[0]
  originals = np.stack([s for _, s in _originals(tmp_path / "src", "train")]).astype(int)
  for i in range(len(store420)):
    again = images.decode(store420[i]["encoded"], 36, 3).astype(int)
    assert np.abs(originals - again).mean(axis=(1, 2, 3)).argmin() == i
  # The statistics are the originals' §2 form's (computed before re-encoding).
  want = compute([np.stack([s for _, s in _originals(tmp_path / "src", "train")])])
  got = build_input(config).stats
  np.testing.assert_allclose(got.mean, want.mean, rtol=1e-5)
  np.testing.assert_allclose(got.eigval, want.eigval, rtol=1e-4)
  assert got.count == 12


def test_a_killed_prepare_continues_to_the_same_store_and_a_done_one_is_left_alone(
    tmp_path, monkeypatch):
  image_folder_tree(tmp_path / "src")
  config = folder_config(tmp_path / "src")
  config.data.prepared_dir = str(tmp_path / "whole")
  prepare.prepare(config.data, channels=3, num_classes=3, shard_size=4, workers=1,
                  progress=False)
  whole = _store_files(tmp_path / "whole")

  config.data.prepared_dir = str(tmp_path / "killed")
  written, real = [], prepare._write_shard

  def killed_on_the_third_shard(task):
    if len(written) == 2:  # mid-shard: a temporary file is left behind
      open(sources.shard_path(task[-1], task[0], task[1], task[2]) + ".tmp-1", "w").close()
      raise KeyboardInterrupt
    written.append(task)
    return real(task)

  monkeypatch.setattr(prepare, "_write_shard", killed_on_the_third_shard)
  with pytest.raises(KeyboardInterrupt):
    prepare.prepare(config.data, channels=3, num_classes=3, shard_size=4, workers=1,
                    progress=False)
  assert sources.read_manifest(str(tmp_path / "killed")) is None  # never read as complete
  monkeypatch.setattr(prepare, "_write_shard", real)
  prepare.prepare(config.data, channels=3, num_classes=3, shard_size=4, workers=1,
                  progress=False)
  assert _store_files(tmp_path / "killed") == whole
  assert not [n for n in os.listdir(tmp_path / "killed") if ".tmp" in n]
  times = {n: os.path.getmtime(tmp_path / "killed" / n) for n in whole}
  prepare.prepare(config.data, channels=3, num_classes=3, shard_size=4, workers=1,
                  progress=False)  # nothing to do
  assert times == {n: os.path.getmtime(tmp_path / "killed" / n) for n in whole}


def test_training_reads_the_store_when_it_exists_and_says_which_form(tmp_path, caplog):
  image_folder_tree(tmp_path / "src")
  config = folder_config(tmp_path / "src")
  config.data.prepared_dir = str(tmp_path / "store")
  config.num_epochs = 1.0
  config.checkpoint.every_steps = 2
  with caplog.at_level("INFO"):
    absl_logging.use_python_logging()
    build_input(config)
    prepare.prepare(config.data, channels=3, num_classes=3, workers=1, progress=False)
    result = train.train_and_evaluate(config, str(tmp_path / "run"))
  said = [r.getMessage() for r in caplog.records]
  assert any("reading the original images of image_folder" in m for m in said)
  assert any("reading the prepared §2 form of image_folder" in m for m in said)
  assert 0.0 <= result["eval"]["top1_error"] <= 1.0
  config.data.use_prepared = False
  assert not isinstance(sources.load_splits(config.data, channels=3, num_classes=3)[0],
                        sources.PreparedSplit)
