"""Never lose a run (docs/reliability.md): the run-level contracts of a training workdir, each
reproduced first: preemption and kill -9 resume bitwise, nothing diverged is saved, a disk full
at the start leaves nothing behind, a finished run says so, no pickle anywhere. The contracts
of one module are in its own file (test_checkpoint.py, test_checkpoint_meta.py,
test_workdir.py, test_configuration.py)."""

import glob
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from absl import logging as absl_logging

from alexnet_jax import steps, train, train_setup
from alexnet_jax.errors import UserError
from conftest import (ROOT, assert_same_params, image_folder_tree, process_state, ring_blocks,
                      saved_state, small_config, small_flags)


def _start_and_signal(command, env, log, sig, delay):
  """Runs `command`, sends `sig` `delay` seconds after its first step log line; its exit status."""
  with open(log, "w") as out:
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=out)
    deadline = time.time() + 300
    while "/8 epoch" not in log.read_text() and proc.poll() is None and time.time() < deadline:
      time.sleep(0.05)
    time.sleep(delay)
    proc.send_signal(sig)
    return proc.wait()


@pytest.mark.slow
def test_sigterm_then_kill_9_then_the_same_command_ends_as_an_uninterrupted_run(
    straight_run, tmp_path):
  workdir = str(tmp_path / "run")
  command = [sys.executable, "-m", "alexnet_jax.main", *small_flags(), f"--workdir={workdir}"]
  env = os.environ | {"JAX_PLATFORMS": "cpu"}  # the suite's 8 CPU devices (XLA_FLAGS)
  # Preemption: the step in flight completes, a checkpoint is written, exit status 0.
  status = _start_and_signal(command, env, tmp_path / "first.log", signal.SIGTERM, 0.0)
  assert status == 0, (tmp_path / "first.log").read_text()[-2000:]
  first = (tmp_path / "first.log").read_text()
  assert "stopping on SIGTERM: saving step" in first
  saved = max(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints")))
  assert 2 <= saved < 8
  assert (f"stopped by SIGTERM at step {saved} of 8; step {saved} is saved: run the same "
          "command to resume") in first
  # kill -9 at a random moment of the resumed run (any step, mid-checkpoint included); the
  # seed is printed (shown when the test fails) and ALEXNET_KILL_SEED replays it.
  seed = int(os.environ.get("ALEXNET_KILL_SEED", time.time_ns() % 2**32))
  delay = random.Random(seed).uniform(0.0, 2.0)
  print(f"kill -9 {delay:.2f} s after the first step line (ALEXNET_KILL_SEED={seed})")
  _start_and_signal(command, env, tmp_path / "second.log", signal.SIGKILL, delay)
  third = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert third.returncode == 0, third.stderr[-2000:]
  assert_same_params(workdir, straight_run[0])  # bitwise on CPU
  want = straight_run[1]["eval"]
  assert (f"validation accuracy, centre crop: top-1 {100 * (1 - want['top1_error']):.2f} %, "
          f"top-5 {100 * (1 - want['top5_error']):.2f} %") in third.stdout
  assert f" -m alexnet_jax.export --workdir={workdir} --best" in third.stdout


def test_a_sigterm_during_an_evaluation_saves_its_step_without_it_and_the_resume_runs_it_first(
    straight_run, tmp_path, monkeypatch, capsys):
  """SIGTERM as the final (ten-crop) evaluation reads its first batch: the evaluation is left,
  step 8 saved without it, the run not complete; the same command evaluates step 8 first and
  ends as the uninterrupted run. It used to wait for the evaluation to end. Mutations: the
  stop not asked in the evaluation; the step not saved; the run counted complete -> red."""
  from alexnet_jax import checkpoint, evaluation, metrics

  real_track = evaluation.track

  def track(batches, steps, what, **kwargs):
    for done, batch in enumerate(real_track(batches, steps, what, **kwargs)):
      if "ten crops" in what and done == 1:
        signal.raise_signal(signal.SIGTERM)
      yield batch

  monkeypatch.setattr(evaluation, "track", track)
  workdir = str(tmp_path / "run")
  first = train.train_and_evaluate(small_config(ten_crop=True), workdir)
  assert (first.step, first.complete) == (8, False)
  assert "eval_10crop" not in first.evaluation  # the last one is step 4's
  assert checkpoint.saved_steps(workdir) == [6, 8]
  assert "stopped by SIGTERM at step 8 of 8, during its evaluation; step 8 is saved without it: " \
         "run the same command to evaluate it and resume" in capsys.readouterr().out
  assert [r["step"] for r in metrics.run_rows(workdir) if r["split"] == "eval"] == [4]

  monkeypatch.setattr(evaluation, "track", real_track)
  second = train.train_and_evaluate(small_config(ten_crop=True), workdir)
  assert (second.step, second.complete) == (8, True)
  assert second.evaluation == straight_run[1]
  assert [r["step"] for r in metrics.run_rows(workdir) if r["split"] == "eval"] == [4, 8]
  assert_same_params(workdir, straight_run[0])


def test_a_nan_loss_stops_with_a_clear_message_and_keeps_the_last_checkpoint(tmp_path,
                                                                            monkeypatch, request):
  workdir = str(tmp_path)
  train.train_and_evaluate(small_config(epochs=0.5), workdir)  # steps 1-2, checkpoint at 2
  normalize = steps.normalize
  monkeypatch.setattr(steps, "normalize", lambda *a: normalize(*a) * np.nan)  # NaN images
  # The process's steps were traced with the real `normalize`; the NaN ones are not kept.
  train_setup._jitted.cache_clear()
  request.addfinalizer(train_setup._jitted.cache_clear)
  with pytest.raises(UserError, match=r"loss became nan at step 3.*checkpoint \(step 2\)"):
    train.train_and_evaluate(small_config(), workdir)
  state = saved_state(workdir, 2)
  assert int(state["step"]) == 2
  assert all(np.isfinite(np.asarray(v)).all() for v in jax.tree.leaves(state["params"]))
  assert sorted(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints"))) == [2]


def test_a_diverging_run_leaves_only_sane_checkpoints(tmp_path):
  config = small_config()
  config.optimizer.learning_rate = 1e6  # the probe's ε
  workdir = str(tmp_path / "run")
  with pytest.raises(UserError, match="(exploded|became) .*stopping without saving"):
    train.train_and_evaluate(config, workdir)
  for step_dir in glob.glob(os.path.join(workdir, "checkpoints", "[0-9]*")):
    params = saved_state(workdir, int(os.path.basename(step_dir)))["params"]
    assert max(float(np.abs(np.asarray(x)).max()) for x in jax.tree.leaves(params)) < 1e3


def test_a_disk_full_at_the_start_leaves_no_partial_file(tmp_path):
  disk = tmp_path / "disk"
  os.makedirs(disk)
  mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8k", "tmpfs", str(disk)],
                           capture_output=True, text=True)
  if mounted.returncode:
    pytest.skip(f"a small tmpfs cannot be mounted here ({mounted.stderr.strip()[:80]})")
  try:  # the lock fits; the 16 KB statistics file does not
    with pytest.raises(UserError, match=r"cannot write .*data_stats.npz \(No space left"):
      train.train_and_evaluate(small_config(), str(disk / "run"))
    assert not glob.glob(str(disk / "run" / "data_stats*"))
  finally:
    subprocess.run(["umount", str(disk)], check=False)


def _input_workers(pid: int) -> list[int]:
  """The input worker processes of process `pid` (its spawned children, not the tracker)."""
  found = []
  for entry in os.listdir("/proc"):
    try:
      with open(f"/proc/{entry}/stat", encoding="ascii") as f:
        ppid = int(f.read().rsplit(")", 1)[1].split()[1])
      with open(f"/proc/{entry}/cmdline", "rb") as f:
        spawned = b"spawn_main" in f.read()
    except (OSError, ValueError):
      continue
    if ppid == pid and spawned:
      found.append(int(entry))
  return found


def _run_with_workers(tmp_path, workdir: str) -> list[str]:
  """The command of a long run of the tiny network on an image folder made under `tmp_path`,
  read in 2 input worker processes, evaluating every epoch (4 steps)."""
  image_folder_tree(tmp_path / "images")
  return [sys.executable, "-m", "alexnet_jax.main", "--config=configs/tiny.py",
          f"--workdir={workdir}", "--config.model.num_classes=3",
          "--config.model.input_size=32", "--config.data.name=image_folder",
          f"--config.data.data_dir={tmp_path / 'images'}", "--config.data.image_size=36",
          "--config.data.batch_size=4", "--config.data.eval_batch_size=4",
          "--config.data.workers=2", "--config.num_epochs=400"]


def _ignored(pid: int) -> set[int]:
  """The signals process `pid` ignores."""
  with open(f"/proc/{pid}/status", encoding="ascii") as f:
    mask = int(next(line for line in f if line.startswith("SigIgn:")).split()[1], 16)
  return {sig for sig in range(1, 64) if mask >> (sig - 1) & 1}


@pytest.mark.slow
def test_ctrl_c_to_the_whole_process_group_stops_the_run_without_a_worker_traceback(tmp_path):
  """Ctrl-C in a terminal reaches every process of its group: SIGINT to the run's group once
  its evaluations keep their workers (training's and the evaluation's, 4 processes) stops it
  as a request, the step saved, exit 0, no traceback, no worker or shared memory left. The
  workers ignore SIGINT and SIGTERM, so a SLURM job's SIGTERM to all its processes is the
  training process's alone too. Mutation: the workers not ignoring them -> each printed a
  KeyboardInterrupt traceback (red)."""
  command = _run_with_workers(tmp_path, str(tmp_path / "run"))
  log = tmp_path / "run.log"
  with open(log, "w") as out:
    proc = subprocess.Popen(command, cwd=ROOT, env=os.environ | {"JAX_PLATFORMS": "cpu"},
                            stdout=out, stderr=out, start_new_session=True)
    try:
      deadline = time.time() + 300
      while ("validation at step 4 " not in log.read_text() or
             len(_input_workers(proc.pid)) < 4) and (proc.poll() is None and
                                                     time.time() < deadline):
        time.sleep(0.1)
      workers = _input_workers(proc.pid)
      assert len(workers) == 4, log.read_text()[-2000:]
      assert all({signal.SIGINT, signal.SIGTERM} <= _ignored(pid) for pid in workers)
      os.killpg(proc.pid, signal.SIGINT)
      status = proc.wait(timeout=120)
    finally:
      proc.kill()
  text = log.read_text()
  assert status == 0 and "stopped by SIGINT at step" in text, text[-2000:]
  assert "Traceback" not in text and "KeyboardInterrupt" not in text, text[-3000:]
  assert not any(map(_alive, workers)) and not ring_blocks(proc.pid)


@pytest.mark.slow
def test_an_input_worker_killed_ends_the_run_in_one_line_with_its_step_saved(tmp_path):
  """kill -9 of an input worker process (as the out-of-memory killer does): the run stops
  within seconds, one `error:` line naming the signal and the step saved, no traceback; the
  same command then continues from that step. Mutations: grain's RuntimeError passed on ->
  a traceback (red); the step whose batch failed saved in place of the one before -> red."""
  workdir = str(tmp_path / "run")
  command = _run_with_workers(tmp_path, workdir)
  env = os.environ | {"JAX_PLATFORMS": "cpu"}
  log = tmp_path / "run.log"
  with open(log, "w") as out:
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=out)
    try:
      deadline = time.time() + 300
      while ("validation at step 4 " not in log.read_text() or not _input_workers(proc.pid)) and (
          proc.poll() is None and time.time() < deadline):
        time.sleep(0.1)
      os.kill(_input_workers(proc.pid)[0], signal.SIGKILL)
      killed = time.time()
      status = proc.wait(timeout=60)
    finally:
      proc.kill()
  text = log.read_text()
  assert status == 2 and time.time() - killed < 30, text[-2000:]
  errors = [line for line in text.splitlines() if line.startswith("error:")]
  assert len(errors) == 1 and "Traceback" not in text, text[-3000:]
  saved = re.search(r"an input worker process was killed by SIGKILL before step (\d+)'s batch: "
                    r".*; step (\d+) is saved: run the same command", errors[0])
  assert saved, errors[0]
  assert int(saved[2]) == int(saved[1]) - 1  # the last step whose batch came
  assert max(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints"))) == int(saved[2])


def _alive(pid: int) -> bool:
  """Running, not a zombie waiting to be reaped."""
  return process_state(pid) not in (None, "Z")


@pytest.mark.slow
def test_a_run_killed_leaves_no_input_worker_or_shared_memory_behind(tmp_path):
  """kill -9 of the training process: its input workers end within seconds and their shared
  memory goes (they used to wait on grain's queue forever, holding both), even when the kill
  comes while they are still starting. Mutations: the workers' watch of their parent not
  started -> red; the parent read in the worker as it starts (by then, after the kill, it is
  already init) -> red."""
  command = _run_with_workers(tmp_path, str(tmp_path / "run"))
  log = tmp_path / "run.log"
  with open(log, "w") as out:
    proc = subprocess.Popen(command, cwd=ROOT, env=os.environ | {"JAX_PLATFORMS": "cpu"},
                            stdout=out, stderr=out)
  deadline = time.time() + 300
  while (" epoch" not in log.read_text() or len(_input_workers(proc.pid)) < 2) and (
      proc.poll() is None and time.time() < deadline):
    time.sleep(0.1)
  workers = _input_workers(proc.pid)
  assert len(workers) >= 2, log.read_text()[-2000:]
  proc.kill()
  proc.wait()
  deadline = time.time() + 20
  while (any(map(_alive, workers)) or ring_blocks(proc.pid)) and time.time() < deadline:
    time.sleep(0.2)
  left = [pid for pid in workers if _alive(pid)]
  for pid in left:
    os.kill(pid, signal.SIGKILL)
  assert not left and not ring_blocks(proc.pid)


def test_resuming_a_finished_run_says_so_and_returns_its_last_evaluation(straight_run, tmp_path,
                                                                         caplog):
  workdir = str(tmp_path / "copy")
  shutil.copytree(straight_run[0], workdir)
  with caplog.at_level("WARNING"):
    absl_logging.use_python_logging()
    assert train.train_and_evaluate(small_config(), workdir).evaluation == straight_run[1]
    train.train_and_evaluate(small_config(epochs=1), workdir)  # fewer epochs
  said = [r.getMessage() for r in caplog.records if "is complete" in r.getMessage()]
  assert len(said) == 2 and "step 8" in said[0] and "ends at step 8" in said[0]
  assert "ends at step 4" in said[1] and "metrics.jsonl" in said[1]


def test_nothing_in_a_workdir_is_a_pickle(straight_run):
  workdir, _ = straight_run
  files = [f for f in glob.glob(os.path.join(workdir, "**", "*"), recursive=True)
           if os.path.isfile(f)]
  assert len(files) > 20
  for path in files:
    with open(path, "rb") as f:
      head = f.read(2)
    assert not (head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")), path
  with np.load(os.path.join(workdir, "data_stats.npz"), allow_pickle=False) as stats:
    assert stats["mean"].shape == (36, 36, 3)


def test_a_resume_keeps_the_runs_statistics_and_inference_refuses_others(tmp_path, caplog):
  """Computing the statistics between a run and its resume used to shift the input by ≈ 30
  grey levels mid-training (the new mean copied over the run's), and predict/evaluate on the
  earlier best/ used the new mean."""
  from alexnet_jax import inference
  from alexnet_jax.data import stats
  from conftest import folder_config, image_folder_tree

  image_folder_tree(tmp_path / "src")
  config = folder_config(tmp_path / "src")  # no statistics yet: computed at the start
  config.num_epochs = 2.0  # 15 files, batches of 4: 8 steps
  train.train_and_evaluate(config, str(tmp_path / "straight"))
  config.num_epochs = 1.0
  workdir = str(tmp_path / "run")
  train.train_and_evaluate(config, workdir)
  own = open(os.path.join(workdir, "data_stats.npz"), "rb").read()
  # The dataset's statistics computed again between the two, from another subset: they differ.
  stats.write_statistics(config.data, 3, 3, max_images=6)
  config.num_epochs = 2.0
  with caplog.at_level("INFO"):
    absl_logging.use_python_logging()
    train.train_and_evaluate(config, workdir)
  said = [r.getMessage() for r in caplog.records]
  assert any("the run keeps its own" in m for m in said)
  # Step 4 of 15 images in batches of 4: epoch 4 / 3.75 (the checkpoint's meta says it).
  assert any(m.startswith("resumed from step 4 (epoch 1.07)") for m in said), said
  assert open(os.path.join(workdir, "data_stats.npz"), "rb").read() == own
  assert_same_params(workdir, str(tmp_path / "straight"), step=8)  # bitwise the straight run
  inference.load(workdir, best=True)
  computed = os.path.join(str(tmp_path / "src"), "alexnet_jax_stats", "image_folder-36.npz")
  shutil.copy(computed, os.path.join(workdir, "data_stats.npz"))  # an earlier version did this
  with pytest.raises(UserError, match=r"data_stats.npz holds other statistics than .*best/\d+ "
                                      r"was trained with"):
    inference.load(workdir, best=True)
  config.num_epochs = 3.0
  with pytest.raises(UserError, match=r"statistics this run would subtract .* are not those its "
                                      r"checkpoints were trained with"):
    train.train_and_evaluate(config, workdir)
