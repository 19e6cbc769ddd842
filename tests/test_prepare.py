"""§2's stored form prepared once (`python -m alexnet_jax.data.prepare`): the store against the
originals, a killed prepare resumed, and training on the store."""

import glob
import json
import os
import shutil
import signal

import numpy as np
import pytest
from absl import logging as absl_logging

from alexnet_jax import train
from alexnet_jax.data import images, prepare, readers, sources, store_format
from alexnet_jax.data.stats import compute
from alexnet_jax.errors import UserError
from conftest import build_input, folder_config, image_folder_tree, save_image


def _originals(root, split):
  """(label, §2 stored image) of every readable original of `split`, in listing order."""
  files, _, _ = readers.image_folder(str(root), split, class_names=("n01", "n02", "n03"))
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
  config.data.prepared_chroma = "444"
  manifest = prepare.prepare(config.data, channels=3, num_classes=3, shard_size=4, workers=2,
                             progress=False)
  assert manifest["class_names"] == ["n01", "n02", "n03"] and manifest["form"]["quality"] == 90
  assert manifest["records"] == {"train": 12, "val": 6}
  assert manifest["unreadable"] == {"train": 3, "val": 1}
  report = json.loads((tmp_path / "store" / "report.json").read_text())
  assert sorted(os.path.basename(f["name"]) for f in report["files"]) == [
      "broken.jpg", "empty.jpg", "text.JPEG", "truncated.JPEG"]
  loaded = sources.load(config.data, channels=3, num_classes=3)
  train_split, val_split, names = loaded.train, loaded.val, loaded.class_names
  assert isinstance(train_split, store_format.PreparedSplit) and names == ("n01", "n02", "n03")
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
  config.data.update(prepared_dir=str(tmp_path / "store420"), prepared_chroma="420")
  prepare.prepare(config.data, channels=3, num_classes=3, shard_size=4, workers=1,
                  progress=False)
  store420 = sources.load(config.data, channels=3, num_classes=3).train
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


def _killed_on_the_third_shard(data, monkeypatch) -> list:
  """A prepare of `data` in shards of 4 killed while it writes its third shard, a temporary
  file of it left behind: the tasks of the two shards written."""
  written, real = [], prepare._write_shard

  def killed(task):
    if len(written) == 2:
      open(store_format.shard_path(task[-1], task[0], task[1], task[2]) + ".tmp-1", "w").close()
      raise KeyboardInterrupt
    written.append(task)
    return real(task)

  monkeypatch.setattr(prepare, "_write_shard", killed)
  with pytest.raises(KeyboardInterrupt):
    prepare.prepare(data, channels=3, num_classes=3, shard_size=4, workers=1, progress=False)
  monkeypatch.setattr(prepare, "_write_shard", real)
  return written


def test_a_killed_prepare_continues_to_the_same_store_and_a_done_one_is_left_alone(
    tmp_path, monkeypatch):
  image_folder_tree(tmp_path / "src")
  config = folder_config(tmp_path / "src")
  config.data.prepared_dir = str(tmp_path / "whole")
  prepare.prepare(config.data, channels=3, num_classes=3, shard_size=4, workers=1,
                  progress=False)
  whole = _store_files(tmp_path / "whole")

  config.data.prepared_dir = str(tmp_path / "killed")
  written = _killed_on_the_third_shard(config.data, monkeypatch)
  assert store_format.read_manifest(str(tmp_path / "killed")) is None  # never read as complete
  done = [store_format.shard_path(t[-1], t[0], t[1], t[2]) for t in written]
  before = {path: os.stat(path).st_mtime_ns for path in done}
  prepare.prepare(config.data, channels=3, num_classes=3, shard_size=4, workers=1,
                  progress=False)
  assert _store_files(tmp_path / "killed") == whole
  assert before == {path: os.stat(path).st_mtime_ns for path in done}  # kept, not rewritten
  assert not [n for n in os.listdir(tmp_path / "killed") if ".tmp" in n]
  times = {n: os.path.getmtime(tmp_path / "killed" / n) for n in whole}
  prepare.prepare(config.data, channels=3, num_classes=3, shard_size=4, workers=1,
                  progress=False)  # nothing to do
  assert times == {n: os.path.getmtime(tmp_path / "killed" / n) for n in whole}


def test_a_prepare_left_with_other_settings_starts_afresh_and_what_cannot_be_prepared_is_one_line(
    tmp_path, monkeypatch, caplog):
  """A prepare killed with one shard size and run again with another: the shards already
  written are of the other layout, so it starts afresh, and says so. Mutations: the pending
  settings not compared (the old shards kept beside the new) -> red; each refusal dropped
  -> red."""
  image_folder_tree(tmp_path / "src")
  config = folder_config(tmp_path / "src")
  config.data.prepared_dir = str(tmp_path / "whole")
  prepare.prepare(config.data, channels=3, num_classes=3, shard_size=3, workers=1,
                  progress=False)
  config.data.prepared_dir = str(tmp_path / "store")
  _killed_on_the_third_shard(config.data, monkeypatch)
  with caplog.at_level("WARNING"):
    absl_logging.use_python_logging()
    prepare.prepare(config.data, channels=3, num_classes=3, shard_size=3, workers=1,
                    progress=False)
  assert [r.getMessage() for r in caplog.records if "in progress" in r.getMessage()] == [
      f"{tmp_path}/store: the prepare in progress there had other originals or settings: "
      "starting afresh"]
  assert _store_files(tmp_path / "store") == _store_files(tmp_path / "whole")
  config.data.name = "synthetic"
  with pytest.raises(UserError, match="^data.name='synthetic' is held in memory already: only "
                                      "imagenet2012 and image_folder are prepared$"):
    prepare.prepare(config.data, channels=3, num_classes=3, workers=1, progress=False)
  config.data.name = "image_folder"
  (tmp_path / "file").write_text("")
  config.data.prepared_dir = str(tmp_path / "file" / "store")
  with pytest.raises(UserError, match=f"^cannot create {tmp_path}/file/store: Not a directory$"):
    prepare.prepare(config.data, channels=3, num_classes=3, workers=1, progress=False)


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
  assert 0.0 <= result.evaluation["eval"]["top1_error"] <= 1.0 and result.complete
  config.data.use_prepared = False
  assert not isinstance(sources.load(config.data, channels=3, num_classes=3).train,
                        store_format.PreparedSplit)


# ----------------------------------------------------------------------------- the store's identity

def _prepared(root, store=None, **data):
  config = folder_config(root)
  config.data.update(data)
  if store:
    config.data.prepared_dir = str(store)
  prepare.prepare(config.data, channels=3, num_classes=3, shard_size=4, workers=1,
                  progress=False)
  return config


def test_a_store_whose_originals_are_gone_is_read_and_says_from_where(tmp_path, caplog):
  """The originals removed once prepared (to free their disk): the store alone is read, with
  its images and labels. Mutation: the listing's error let through (no training without the
  originals) -> red."""
  image_folder_tree(tmp_path / "src")
  config = _prepared(tmp_path / "src", tmp_path / "store")
  load = lambda: sources.load(config.data, channels=3, num_classes=3)
  want = load()
  shutil.rmtree(tmp_path / "src")
  with caplog.at_level("INFO"):
    absl_logging.use_python_logging()
    got = load()
  assert isinstance(got.train, store_format.PreparedSplit) and len(got.train) == len(want.train)
  assert [got.train[i]["label"] for i in range(len(got.train))] == [
      want.train[i]["label"] for i in range(len(want.train))]
  assert got.class_names == want.class_names
  assert any(m.startswith(f"the originals of the prepared store {tmp_path}/store cannot be "
                          "listed (image folder split not found") and
             m.endswith(f"reading the store prepared from {tmp_path}/src")
             for m in (r.getMessage() for r in caplog.records))


def test_a_store_of_changed_originals_is_refused_by_training_and_prepared_again(tmp_path,
                                                                                caplog):
  """Prepare a tree, swap two class folders and add files: training must not read the old
  images under the old labels, and prepare must not say 'nothing to do'."""
  image_folder_tree(tmp_path / "src")
  config = _prepared(tmp_path / "src", tmp_path / "store")
  for split in ("train", "val"):  # n01 <-> n02, then one more image in n03
    os.rename(tmp_path / "src" / split / "n01", tmp_path / "src" / split / "tmp")
    os.rename(tmp_path / "src" / split / "n02", tmp_path / "src" / split / "n01")
    os.rename(tmp_path / "src" / split / "tmp", tmp_path / "src" / split / "n02")
  save_image(str(tmp_path / "src" / "train" / "n03" / "new.png"),
             np.zeros((40, 40, 3), np.uint8), "PNG")
  with pytest.raises(UserError, match=r"store .* does not hold these originals: the original "
                                      r"files changed.*training images 15 → 16.*prepare"):
    build_input(config)
  with caplog.at_level("WARNING"):
    absl_logging.use_python_logging()
    manifest = prepare.prepare(config.data, channels=3, num_classes=3, shard_size=4, workers=1,
                               progress=False)
  assert any("was prepared from other originals" in r.getMessage() for r in caplog.records)
  assert manifest["records"]["train"] == 13
  inp = build_input(config)  # the new store: labels as the folders say now
  first = sources.load(config.data, channels=3, num_classes=3).train
  originals = _originals(tmp_path / "src", "train")
  assert [int(first[i]["label"]) for i in range(len(first))] == [l for l, _ in originals]
  assert inp.num_train == 13


def test_a_model_reads_a_store_or_a_dataset_only_with_its_own_classes_in_its_order(tmp_path):
  """evaluate, features and predict's split read a dataset with the model's classes: a store or
  a dataset labelling others, or the same in another order, is one line. Mutations: the
  store's class check `!=` -> `==` -> red; the originals' `!=` -> `==` -> red."""
  image_folder_tree(tmp_path / "src")
  config = _prepared(tmp_path / "src", tmp_path / "store")
  own = sources.load(config.data, channels=3, num_classes=3, class_names=("n01", "n02", "n03"))
  assert own.store == str(tmp_path / "store")
  with pytest.raises(UserError, match=r"the prepared store .* labels other classes than the ones "
                                      r"given: class order \(label 1 was 'n03', is 'n02'\)"):
    sources.load(config.data, channels=3, num_classes=3, class_names=("n01", "n03", "n02"))
  config.data.name = "synthetic"
  assert sources.load(config.data, channels=3, num_classes=3,
                      class_names=("0", "1", "2")).class_names == ("0", "1", "2")
  with pytest.raises(UserError, match=r"synthetic does not have the classes given: classes: 3 → "
                                      r"3 classes; added 0, 1, 2; removed n01, n02, n03"):
    sources.load(config.data, channels=3, num_classes=3, class_names=("n01", "n02", "n03"))


def test_each_stored_form_has_its_own_store_and_a_dir_shared_by_forms_or_trees_is_refused(
    tmp_path):
  image_folder_tree(tmp_path / "src")
  shorter = _prepared(tmp_path / "src")
  squash = _prepared(tmp_path / "src", resize="squash")
  assert store_format.store_dir(shorter.data) != store_format.store_dir(squash.data)
  stored = sources.load(squash.data, channels=3, num_classes=3)
  assert stored.store == store_format.store_dir(squash.data) and stored.identity.stored["resize"] \
      == "squash"
  other = folder_config(tmp_path / "src")  # quality 80 into the squash store's folder
  other.data.update(prepared_dir=store_format.store_dir(squash.data), prepared_quality=80,
                    resize="squash")
  with pytest.raises(UserError, match=r"holds a prepared store of another form \(quality 90 → 80"):
    prepare.prepare(other.data, channels=3, num_classes=3, workers=1, progress=False)
  with pytest.raises(UserError, match=r"holds another form \(quality 90 → 80"):
    build_input(other)
  image_folder_tree(tmp_path / "elsewhere", seed=1)  # another tree, the same store folder
  tree = folder_config(tmp_path / "elsewhere")
  tree.data.update(prepared_dir=store_format.store_dir(shorter.data))
  with pytest.raises(UserError, match=r"holds the prepared store of .*src, not of .*elsewhere"):
    prepare.prepare(tree.data, channels=3, num_classes=3, workers=1, progress=False)
  with pytest.raises(UserError, match=r"does not hold these originals: originals at .*src → "
                                      r".*elsewhere"):
    build_input(tree)


def test_a_damaged_store_is_one_line_at_the_start_and_prepare_writes_the_shard_again(tmp_path):
  image_folder_tree(tmp_path / "src")
  config = _prepared(tmp_path / "src", tmp_path / "store")
  shard = store_format.shard_path(str(tmp_path / "store"), "train", 1, 4)
  whole = open(shard, "rb").read()
  with open(shard, "r+b") as f:
    f.truncate(len(whole) // 2)
  with pytest.raises(UserError, match=r"the prepared store .* is damaged \(train-00001-of-00004"
                                      r".array_record.*run prepare again"):
    build_input(config)
  prepare.prepare(config.data, channels=3, num_classes=3, shard_size=4, workers=1,
                  progress=False)
  assert open(shard, "rb").read() == whole


def test_a_record_that_cannot_be_read_is_an_unreadable_image_skipped_and_counted(tmp_path):
  """A corrupt chunk in a val shard crashed the first evaluation (the evaluated step lost)."""
  image_folder_tree(tmp_path / "src")
  config = _prepared(tmp_path / "src", tmp_path / "store")
  config.num_epochs = 1.0
  shard = store_format.shard_path(str(tmp_path / "store"), "val", 0, 2)
  raw = bytearray(open(shard, "rb").read())
  raw[100:164] = bytes(64)  # in the first record's chunk; the footer (the count) stays whole
  open(shard, "wb").write(bytes(raw))
  result = train.train_and_evaluate(config, str(tmp_path / "run"))
  assert result.complete and result.evaluation["eval"]["skipped_images"] >= 1


@pytest.mark.parametrize("sidecar", ["with its digest", "written before shards had digests"])
def test_prepare_rewrites_a_shard_damaged_inside_a_chunk(tmp_path, sidecar):
  """Prepare said "nothing to do" over a corrupt chunk (the record count, which it checked, is
  in the footer); the whole shards are left as they are. Mutations: the digest compared with
  itself, or the records not read for a sidecar without one -> the shard is left damaged
  (red); a whole shard of such a sidecar read as not whole -> rewritten (red)."""
  image_folder_tree(tmp_path / "src")
  config = _prepared(tmp_path / "src", tmp_path / "store")
  shard = store_format.shard_path(str(tmp_path / "store"), "val", 0, 2)
  whole = open(shard, "rb").read()
  shards = glob.glob(os.path.join(tmp_path, "store", "*.array_record"))
  if sidecar != "with its digest":
    for path in shards:
      side = path.replace(".array_record", ".json")
      record = json.load(open(side))
      del record["sha256"]
      json.dump(record, open(side, "w"))
  raw = bytearray(whole)
  raw[100:164] = bytes(64)
  open(shard, "wb").write(bytes(raw))
  others = {path: os.stat(path).st_mtime_ns for path in shards if path != shard}
  prepare.prepare(config.data, channels=3, num_classes=3, shard_size=4, workers=1,
                  progress=False)
  assert open(shard, "rb").read() == whole
  assert others == {path: os.stat(path).st_mtime_ns for path in others}  # whole ones kept


def test_a_store_removed_mid_run_stops_in_one_line_with_the_evaluated_step_saved(tmp_path,
                                                                                monkeypatch):
  from alexnet_jax import progress

  image_folder_tree(tmp_path / "src")
  config = _prepared(tmp_path / "src", tmp_path / "store")
  config.num_epochs = 2.0  # 3 steps an epoch: an evaluation at step 3
  config.checkpoint.every_steps = 100
  update = progress.Progress.update

  def remove_the_store_at_step_2(self, step):
    update(self, step)
    if step == 2:
      shutil.rmtree(tmp_path / "store")

  monkeypatch.setattr(progress.Progress, "update", remove_the_store_at_step_2)
  with pytest.raises(UserError, match=r"no evaluation image could be read .*step 3 is saved"):
    train.train_and_evaluate(config, str(tmp_path / "run"))
  assert [s for s in os.listdir(tmp_path / "run" / "checkpoints") if s.isdigit()] == ["3"]


def test_prepare_starts_no_forked_worker_and_a_full_disk_is_one_line(tmp_path, monkeypatch,
                                                                      recwarn):
  image_folder_tree(tmp_path / "src")
  config = folder_config(tmp_path / "src")
  config.data.prepared_dir = str(tmp_path / "store")
  prepare.prepare(config.data, channels=3, num_classes=3, shard_size=4, workers=2,
                  progress=False)
  assert not [w for w in recwarn if "fork" in str(w.message)]
  import errno

  def full(task):
    raise OSError(errno.ENOSPC, "No space left on device")

  config.data.prepared_dir = str(tmp_path / "full")
  monkeypatch.setattr(prepare, "_write_shard", full)
  with pytest.raises(UserError, match=r"cannot write the prepared store .*No space left on "
                                      r"device.*run the same command again"):
    prepare.prepare(config.data, channels=3, num_classes=3, shard_size=4, workers=1,
                    progress=False)
  with pytest.raises(UserError, match=r"--shard_size must be >= 1 and --workers >= 0"):
    prepare.prepare(config.data, channels=3, num_classes=3, shard_size=0, progress=False)


_WRITE_SHARD = prepare._write_shard


def _dies_on_train_shard_2(task):
  """A worker's shard writer killed (SIGKILL, as by the out-of-memory killer) on train shard 2;
  pickled by name, so in a worker `_WRITE_SHARD` is prepare's own."""
  if task[:2] == ("train", 2):
    os.kill(os.getpid(), signal.SIGKILL)
  return _WRITE_SHARD(task)


def test_a_prepare_worker_killed_is_one_line_and_the_same_command_continues(tmp_path,
                                                                           monkeypatch):
  """2 worker processes, one killed while it writes a shard: one line within seconds naming
  the signal, no worker left; the same prepare then writes the rest, the store as one
  uninterrupted prepare writes it. Mutation: the shards
  written in `multiprocessing.Pool.imap_unordered` (as they were) -> red: the pool waits
  forever for the killed worker's shard (the thread is still running at the timeout)."""
  import multiprocessing
  import threading

  image_folder_tree(tmp_path / "src")
  config = folder_config(tmp_path / "src")
  config.data.prepared_dir = str(tmp_path / "store")
  monkeypatch.setattr(prepare, "_write_shard", _dies_on_train_shard_2)
  before = set(multiprocessing.active_children())
  raised = []

  def run():
    try:
      prepare.prepare(config.data, channels=3, num_classes=3, shard_size=2, workers=2,
                      progress=False)
    except UserError as e:
      raised.append(str(e))

  thread = threading.Thread(target=run, daemon=True)
  thread.start()
  thread.join(60)
  assert not thread.is_alive(), "prepare waits for a killed worker's shard"
  assert raised == ["a prepare worker process was killed by SIGKILL while it wrote a shard: the "
                    "kernel's out-of-memory killer sends it, if no one else did; the whole "
                    "shards are kept: the same command continues (with fewer --workers if "
                    "memory ran out)"]
  assert set(multiprocessing.active_children()) <= before
  monkeypatch.setattr(prepare, "_write_shard", _WRITE_SHARD)
  continued = prepare.prepare(config.data, channels=3, num_classes=3, shard_size=2, workers=2,
                              progress=False)
  config.data.prepared_dir = str(tmp_path / "whole")
  whole = prepare.prepare(config.data, channels=3, num_classes=3, shard_size=2, workers=1,
                          progress=False)
  assert continued["records"] == whole["records"] and continued["records"]["train"] > 0
  assert continued["unreadable"] == whole["unreadable"]


def test_originals_rewritten_in_place_are_seen(tmp_path):
  """Same names, new content (an in-place rewrite changes no folder's time): prepare used to
  say 'nothing to do' and training read the old pixels, the file list being cached by folder
  times. Mutation: the fingerprint kept from the cached listing -> red (no refusal)."""
  image_folder_tree(tmp_path / "src")
  config = _prepared(tmp_path / "src", tmp_path / "store")
  folder = tmp_path / "src" / "train" / "n01"
  target = sorted(folder.iterdir())[0]
  times = os.stat(folder)
  save_image(str(target), np.full((50, 70, 3), 255, np.uint8), "PNG")  # other size and time
  os.utime(folder, ns=(times.st_atime_ns, times.st_mtime_ns))  # the folder's time as it was
  with pytest.raises(UserError, match="does not hold these originals: the original files "
                                      "changed"):
    build_input(config)


def test_a_tree_reached_through_another_path_reads_its_store(tmp_path, caplog):
  """The same originals through a symlink (or a copy that keeps the files' times): training
  refused the store ('originals at A -> B') while prepare said to remove it. One rule of the
  same data (`identity.same_data`) compares their content. Mutation: the store rule with the
  originals' path in it again -> red."""
  image_folder_tree(tmp_path / "src")
  config = _prepared(tmp_path / "src")
  os.symlink(tmp_path / "src", tmp_path / "link")
  config.data.data_dir = str(tmp_path / "link")
  inp = build_input(config)
  assert inp.num_train == 12 and inp.identity.listing
  with caplog.at_level("INFO"):
    absl_logging.use_python_logging()
    prepare.prepare(config.data, channels=3, num_classes=3, shard_size=4, workers=1,
                    progress=False)
  assert any("nothing to do" in r.getMessage() for r in caplog.records)
