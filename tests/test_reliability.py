"""Never lose a run: the workdir failures of docs/reliability.md, each reproduced first.

The small synthetic run of conftest (8 steps of 16, evaluations at 4 and 8, checkpoints every
2 steps) stands in for a real one; `straight_run` is that run uninterrupted.
"""

import glob
import io
import json
import os
import shutil
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from absl import logging as absl_logging
from PIL import Image

from alexnet_jax import checkpoint, metrics, train, workdir as workdir_lib
from alexnet_jax.data import images, sources
from alexnet_jax.errors import UserError
from conftest import saved_state, small_config


def assert_same(workdir, straight_workdir, step=8):
  jax.tree.map(np.testing.assert_array_equal, saved_state(workdir, step)["params"],
               saved_state(straight_workdir, step)["params"])


def _copy(straight_run, tmp_path, name="copy"):
  workdir = str(tmp_path / name)
  shutil.copytree(straight_run[0], workdir)
  return workdir


def _warnings(caplog):
  return [r.getMessage() for r in caplog.records if r.levelname in ("WARNING", "INFO")]


class _Killed(BaseException):
  """Stands for kill -9: nothing after it runs but the writes already handed to Orbax."""


# ----------------------------------------------------------------------------- 1: kill -9

@pytest.mark.parametrize("point", ["before best/4", "between best/4 and checkpoints/4",
                                   "after checkpoints/4"])
def test_a_kill_at_any_point_of_the_save_sequence_resumes_to_the_straight_run(
    straight_run, tmp_path, monkeypatch, point):
  """Step 4 is an evaluation that improves: best/4, then checkpoints/4. A run killed between
  the two used to leave best/4 in the way of every rerun (StepAlreadyExistsError at step 4)."""
  workdir = str(tmp_path / "run")
  save, save_best = checkpoint.Checkpoints.save, checkpoint.Checkpoints.save_best

  def killing_save(self, step, *args, **kwargs):
    if step == 4 and point == "between best/4 and checkpoints/4":
      raise _Killed
    save(self, step, *args, **kwargs)
    if step == 4 and point == "after checkpoints/4":
      self.wait()
      raise _Killed

  def killing_save_best(self, step, *args, **kwargs):
    if step == 4 and point == "before best/4":
      raise _Killed
    save_best(self, step, *args, **kwargs)

  monkeypatch.setattr(checkpoint.Checkpoints, "save", killing_save)
  monkeypatch.setattr(checkpoint.Checkpoints, "save_best", killing_save_best)
  with pytest.raises(_Killed):
    train.train_and_evaluate(small_config(), workdir)
  monkeypatch.undo()
  best = sorted(int(s) for s in os.listdir(os.path.join(workdir, "best")) if s.isdigit())
  assert (4 in best) == (point != "before best/4")
  for _ in range(2):  # the rerun completes, and so does any rerun after it
    train.train_and_evaluate(small_config(), workdir)
  assert_same(workdir, straight_run[0])
  steps = lambda run: sorted(s for s in os.listdir(os.path.join(run, "best")) if s.isdigit())
  assert steps(workdir) == steps(straight_run[0])


# ----------------------------------------------------------------------------- 2, 5, 8: misfits

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
    ({"synthetic_train_size": 48}, "were trained on synthetic \\(64 training images"),
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


# ----------------------------------------------------------------------------- 3: the lock

def test_a_second_run_on_a_locked_workdir_is_refused_and_a_stale_lock_taken_over(
    tmp_path, caplog):
  workdir = workdir_lib.prepare(str(tmp_path / "run"))
  holder = workdir_lib.Lock(workdir)
  holder.acquire()
  with pytest.raises(UserError, match=rf"in use by pid {os.getpid()} on host \S+ \(since"):
    train.train_and_evaluate(small_config(epochs=0.5), workdir)
  holder.release()
  # A holder that died (kill -9 leaves its lock file, the kernel drops the lock itself).
  with open(os.path.join(workdir, workdir_lib.LOCK), "w") as f:
    json.dump({"pid": 999999, "host": "gone-host", "since": "yesterday"}, f)
  with caplog.at_level("WARNING"):
    absl_logging.use_python_logging()
    train.train_and_evaluate(small_config(epochs=0.5), workdir)
  assert any("taking over the workdir lock left by pid 999999 on host gone-host" in m
             for m in _warnings(caplog))
  with open(os.path.join(workdir, workdir_lib.LOCK)) as f:
    assert f.read() == ""  # released at the end


def test_a_lock_held_by_another_process_names_it(tmp_path):
  workdir = workdir_lib.prepare(str(tmp_path / "run"))
  code = ("import sys, time; from alexnet_jax import workdir as w; w.Lock(sys.argv[1]).acquire();"
          " print('held', flush=True); time.sleep(60)")
  proc = subprocess.Popen([sys.executable, "-c", code, workdir], stdout=subprocess.PIPE,
                          text=True)
  try:
    assert proc.stdout.readline().strip() == "held"
    with pytest.raises(UserError, match=rf"in use by pid {proc.pid} on host"):
      workdir_lib.Lock(workdir).acquire()
  finally:
    proc.kill()
    proc.wait()
  workdir_lib.Lock(workdir).acquire()  # its holder is gone: free again


# ----------------------------------------------------------------------------- 4, 10, 12: bad settings

@pytest.mark.parametrize("field,value,message", [
    ("checkpoint.keep", 0, "checkpoint.keep must be >= 1, got 0 .0 would delete every"),
    ("checkpoint.every_steps", 0, "checkpoint.every_steps must be >= 1"),
    ("log_every_steps", 0, "log_every_steps must be >= 1"),
    ("stats_every_steps", 0, "stats_every_steps must be >= 1"),
    ("optimizer.momentum", -0.9, "optimizer.momentum .-0.9. and optimizer.weight_decay"),
    ("optimizer.weight_decay", -5e-4, "must be >= 0"),
    ("eval_every_epochs", 0.0, "eval_every_epochs must be positive"),
    ("divergence.factor", 0.5, "divergence.factor must be 0 .off. or > 1"),
])
def test_settings_that_cannot_work_are_refused_before_anything_runs(tmp_path, field, value,
                                                                     message):
  config = small_config()
  section, _, name = field.rpartition(".")
  (config[section] if section else config)[name] = value
  with pytest.raises(UserError, match=message):
    train.train_and_evaluate(config, str(tmp_path / "run"))
  assert not os.path.exists(tmp_path / "run" / "checkpoints")


@pytest.mark.parametrize("blocker,message", [
    ("checkpoints", "checkpoints is in the way: training writes a directory there"),
    ("metrics.jsonl/", "metrics.jsonl is in the way: training writes a file there"),
])
def test_a_workdir_path_in_the_way_is_reported_before_compiling(tmp_path, blocker, message):
  workdir = tmp_path / "run"
  workdir.mkdir()
  if blocker.endswith("/"):
    (workdir / blocker).mkdir()
  else:
    (workdir / blocker).write_text("a file where a directory goes")
  start = time.monotonic()
  with pytest.raises(UserError, match=message):
    train.train_and_evaluate(small_config(), str(workdir))
  print(f"refused after {time.monotonic() - start:.1f} s")  # the old code hung 300 s at a save


def test_an_empty_workdir_is_refused(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  for empty in ("", "  "):
    with pytest.raises(UserError, match="--workdir is empty"):
      train.train_and_evaluate(small_config(), empty)
  assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------- 6, 14: resume reports

def test_a_learning_rate_given_on_resume_is_honoured_and_said(straight_run, tmp_path, caplog):
  workdir = _copy(straight_run, tmp_path)
  config = small_config(epochs=3)
  config.optimizer.learning_rate = 0.002
  with caplog.at_level("INFO"):
    absl_logging.use_python_logging()
    train.train_and_evaluate(config, workdir)
  said = " ".join(_warnings(caplog))
  assert "optimizer.learning_rate is 0.002, the checkpoint's was 0.01: honoured" in said
  assert "num_epochs: 2.0 → 3.0" in said and "come from the checkpoint" in said
  rows = [r for r in metrics.read_metrics(os.path.join(workdir, "metrics.jsonl"))
          if r["split"] == "train" and r["step"] > 8]
  assert rows and all(r["lr"] == pytest.approx(0.002) for r in rows)


def test_resuming_a_finished_run_says_so(straight_run, tmp_path, caplog):
  workdir = _copy(straight_run, tmp_path)
  with caplog.at_level("WARNING"):
    absl_logging.use_python_logging()
    assert train.train_and_evaluate(small_config(), workdir) == {}
    train.train_and_evaluate(small_config(epochs=1), workdir)  # fewer epochs
  said = [m for m in _warnings(caplog) if "is complete" in m]
  assert len(said) == 2 and "step 8" in said[0] and "ends at step 8" in said[0]
  assert "ends at step 4" in said[1] and "metrics.jsonl" in said[1]


# ----------------------------------------------------------------------------- 7: divergence

def test_an_exploding_parameter_norm_stops_the_run_before_it_is_saved():
  watch = train.StepMetrics(divergence_factor=100.0)
  for step in range(1, 5):
    watch.add(step, {"loss": 2.3, "param_norm": 10.0 + step})
  watch.fetch(last_saved=None)
  watch.add(5, {"loss": 2.2, "param_norm": 1e32})
  with pytest.raises(UserError, match=r"parameter norm exploded at step 5 \(1e\+32, more than "
                                      r"100 x its running mean .*the last checkpoint \(step 4\) "
                                      "was written before it"):
    watch.fetch(last_saved=4)
  nan = train.StepMetrics(divergence_factor=0.0)
  nan.add(1, {"loss": float("nan"), "param_norm": 1.0})
  with pytest.raises(UserError, match="loss became nan at step 1: .*no checkpoint was written"):
    nan.fetch(last_saved=None)
  calm = train.StepMetrics(divergence_factor=0.0)  # 0: finiteness only
  calm.add(1, {"loss": 1.0, "param_norm": 1.0})
  calm.add(2, {"loss": 1e9, "param_norm": 1e9})
  calm.fetch(last_saved=None)


def test_a_diverging_run_leaves_only_sane_checkpoints(tmp_path):
  config = small_config()
  config.optimizer.learning_rate = 1e6  # the probe's ε
  workdir = str(tmp_path / "run")
  with pytest.raises(UserError, match="(exploded|became) .*stopping without saving"):
    train.train_and_evaluate(config, workdir)
  for step_dir in glob.glob(os.path.join(workdir, "checkpoints", "[0-9]*")):
    params = saved_state(workdir, int(os.path.basename(step_dir)))["params"]
    assert max(float(np.abs(np.asarray(x)).max()) for x in jax.tree.leaves(params)) < 1e3


# ----------------------------------------------------------------------------- 9: images

def test_16_bit_greyscale_pngs_scale_to_8_bits():
  ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
  buf = io.BytesIO()
  Image.fromarray(ramp).save(buf, "PNG")
  grey = images.decode(buf.getvalue(), 64, 1)[..., 0]
  np.testing.assert_allclose(grey, np.round(ramp / 257.0), atol=1)  # 0..65535 -> 0..255
  assert grey.min() == 0 and grey.max() == 255 and abs(grey.mean() - 127.5) < 1
  rgb = images.decode(buf.getvalue(), 64, 3)
  assert abs(float(rgb.mean()) - 127.5) < 1  # was 251 with Pillow's clipping


def test_every_decoder_applies_the_decompression_bomb_limit(monkeypatch):
  buf = io.BytesIO()
  Image.fromarray(np.full((300, 300, 3), 128, np.uint8)).save(buf, "JPEG", progressive=True)
  jpeg = buf.getvalue()
  assert images.decode(jpeg, 256).shape == (256, 256, 3)  # under the limit: simplejpeg decodes
  monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20_000)  # 2 x 20,000 < 300 x 300
  with pytest.raises(images.UnreadableImage, match="decompression-bomb limit of 40000"):
    images.decode(jpeg, 256)
  png = io.BytesIO()
  Image.fromarray(np.zeros((300, 300, 3), np.uint8)).save(png, "PNG")
  with pytest.raises(images.UnreadableImage, match="DecompressionBomb"):
    images.decode(png.getvalue(), 256)


# ----------------------------------------------------------------------------- 11: a full disk

def _tmpfs(path, size: str):
  os.makedirs(path, exist_ok=True)
  result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, text=True)
  if result.returncode:
    pytest.skip(f"a small tmpfs cannot be mounted here ({result.stderr.strip()[:80]}); "
                "tests/test_robustness.py covers the disk-full path with a mock")


@pytest.mark.slow
def test_a_really_full_disk_is_one_line_and_leaves_the_previous_checkpoint(tmp_path):
  disk = tmp_path / "disk"
  _tmpfs(disk, "3m")  # the first checkpoint (≈ 2.3 MB) fits, best/4 and checkpoints/4 do not
  try:
    with pytest.raises(UserError, match=r"cannot write the checkpoint .*disk is full.*previous "
                                        r"checkpoint \(step 2\) is intact") as error:
      train.train_and_evaluate(small_config(), str(disk / "run"))
    assert "\n" not in str(error.value)
    left = os.listdir(disk / "run" / "checkpoints") + os.listdir(disk / "run" / "best")
    assert not [n for n in left if "tmp" in n], left
    assert saved_state(str(disk / "run"), 2)["params"]["conv1"]["kernel"].shape == (2, 5, 5, 3, 16)
  finally:
    subprocess.run(["umount", str(disk)], check=False)


def test_a_disk_full_at_the_start_leaves_no_partial_file(tmp_path):
  disk = tmp_path / "disk"
  _tmpfs(disk, "8k")  # the lock fits; the 16 KB statistics file does not
  try:
    with pytest.raises(UserError, match=r"cannot write .*data_stats.npz \(No space left"):
      train.train_and_evaluate(small_config(), str(disk / "run"))
    assert not glob.glob(str(disk / "run" / "data_stats*"))
  finally:
    subprocess.run(["umount", str(disk)], check=False)


# ----------------------------------------------------------------------------- 13: tracebacks

def test_a_metrics_file_cut_mid_line_is_read_with_a_warning(tmp_path, caplog):
  path = tmp_path / "metrics.jsonl"
  path.write_text('{"step": 2, "split": "train", "loss": 1.0}\n{"step": 4, "split": "tr')
  with caplog.at_level("WARNING"):
    absl_logging.use_python_logging()
    rows = metrics.read_metrics(str(path))
  assert rows == [{"step": 2, "split": "train", "loss": 1.0}]
  assert any("skipped 1 unreadable line" in m for m in _warnings(caplog))
  metrics.plot_curves(str(path), str(tmp_path / "curves.png"))


def test_symlink_loops_in_an_image_folder_are_skipped(tmp_path, caplog):
  for split in ("train", "val"):
    (tmp_path / split / "a").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / split / "a" / "x.png")
  os.symlink("loop", tmp_path / "train" / "loop")  # a link to itself
  os.symlink("self.png", tmp_path / "train" / "a" / "self.png")
  with caplog.at_level("WARNING"):
    absl_logging.use_python_logging()
    split, names = sources.image_folder(str(tmp_path), "train")
  assert names == ("a",) and len(split) == 1
  assert sum("skipping" in m for m in _warnings(caplog)) == 2


def test_features_paths_that_cannot_work_are_one_line(straight_run, tmp_path):
  from alexnet_jax import features

  workdir, _ = straight_run
  with pytest.raises(UserError, match="the directory .*nowhere does not exist"):
    features.extract_and_search(workdir, split="train", output=str(tmp_path / "nowhere" / "f.npy"))
  (tmp_path / "bad.npy").write_bytes(b"not numpy")
  with pytest.raises(UserError, match="cannot read --database"):
    features.extract_and_search(workdir, neighbors=2, database=str(tmp_path / "bad.npy"),
                                grid=str(tmp_path / "g.png"))
  np.save(tmp_path / "vector.npy", np.zeros(5))
  with pytest.raises(UserError, match="is not a feature matrix"):
    features.extract_and_search(workdir, neighbors=2, database=str(tmp_path / "vector.npy"),
                                grid=str(tmp_path / "g.png"))
