"""The input's worker processes (`data.workers`): the batches of any step as the loop reads
them, how many, the reused shared memory they hand over in, a worker that dies."""

import os
import threading

import grain
import numpy as np
import pytest

from alexnet_jax.data import readers, workers
from alexnet_jax.errors import UserError
from conftest import (ROOT, build_input, folder_config, image_folder_tree, load_config,
                      ring_blocks)


def test_worker_processes_read_the_batches_of_any_step_as_the_loop_does(tmp_path):
  """The training position is the step: 3 worker processes started at step 3 give bitwise the
  batches one process reads from step 0; the evaluation batches too are bitwise the same in
  workers and here, the unreadable image's place left empty in both. Mutations: the start
  step ignored when opening the workers (`[self._step:]` dropped) -> the step-0 batches (red);
  an evaluation chunk's unreadable records not left out (a crash on None), or not counted ->
  red."""
  image_folder_tree(tmp_path)

  def read(workers, start, steps):
    config = folder_config(tmp_path)
    config.data.workers = workers
    inp = build_input(config)
    inp.train.set_state({"step": start})
    try:
      train = [next(inp.train) for _ in range(steps)]
    finally:
      inp.train.close()
    return train, list(inp.eval_batches(False))

  here, examples = read(0, 0, 7)
  workers, examples_in_workers = read(3, 3, 4)
  assert len(workers) == 4
  for want, got in zip(here[3:], workers):
    assert set(want) == set(got)
    for key in want:
      np.testing.assert_array_equal(got[key], want[key], err_msg=key)
  assert len(examples) == len(examples_in_workers) == 2  # 7 val files in batches of 4
  for want, got in zip(examples, examples_in_workers):
    for key in want:
      np.testing.assert_array_equal(got[key], want[key], err_msg=key)
  assert sum(int(b["mask"].sum()) for b in examples) == 6  # 1 unreadable, left out
  assert sum(int(b["skipped"].sum()) for b in examples) == 1  # and counted


def test_workers_minus_one_is_one_per_core_less_the_loops_two_for_files_only(monkeypatch):
  """Mutations: -1 resolved for in-memory images too; 0 resolved as -1 -> red."""
  import os

  data = load_config("tiny").data
  data.workers = -1
  monkeypatch.setattr(os, "cpu_count", lambda: 16)
  files, in_memory = readers.FileSplit((), np.zeros(0)), readers.Split(np.zeros(0), np.zeros(0))
  assert workers.input_workers(data, files.encoded) == 14
  assert workers.input_workers(data, in_memory.encoded) == 0
  monkeypatch.setattr(os, "cpu_count", lambda: 2)
  assert workers.input_workers(data, files.encoded) == 0
  data.workers = 3
  assert workers.input_workers(data, in_memory.encoded) == 3
  monkeypatch.setattr(os, "cpu_count", lambda: 16)
  data.workers = 0  # none asked: none, however many cores (`workers > 0` resolved 0 as -1)
  assert workers.input_workers(data, files.encoded) == 0


def test_workers_hand_over_batches_in_reused_shared_memory_and_leave_none(tmp_path, monkeypatch):
  """2 workers' batches, training and evaluation, all come through 2 blocks of shared memory
  each (grain's own hand-over makes blocks per batch), copied out unless lent, and closing
  leaves nothing in /dev/shm and no worker process. Lent batches (the reader's copy made on
  the device) are the same batches, and a lent slot is freed at the next `next` (12 batches >
  the 8 slots). Mutations: the ring bypassed, in training or evaluation -> none of the ring's
  blocks (red); the lent slot never freed -> the workers wait for a slot: no batch in 60 s
  (red); `close` freeing the ring but keeping the workers' iterator -> its processes outlive
  it (red)."""
  import multiprocessing

  image_folder_tree(tmp_path)
  config = folder_config(tmp_path)
  config.data.workers = 2
  before, children = ring_blocks(), set(multiprocessing.active_children())

  def read(lend):
    train, seen, taken = build_input(config).train, set(), []
    monkeypatch.setattr(workers.jax, "default_backend", lambda: "gpu" if lend else "cpu")
    assert train.lend() == lend
    try:
      for _ in range(12):
        batch = next(train)
        taken.append({k: v.copy() for k, v in batch.items()})
        seen |= ring_blocks() - before
    finally:
      train.close()
    assert set(multiprocessing.active_children()) <= children  # the workers ended with it
    return taken, seen

  copied, seen = read(False)
  assert len(seen) == 2
  assert not ring_blocks() & seen
  seen = set()
  for _ in build_input(config).eval_batches(True):  # ten-crop records, in the workers
    seen |= ring_blocks() - before
  assert len(seen) == 2 and not ring_blocks() & seen
  done = []
  thread = threading.Thread(target=lambda: done.append(read(True)), daemon=True)
  thread.start()
  thread.join(60)
  assert done, "no batch in 60 s: the workers wait for slots never freed"
  lent, seen = done[0]
  assert len(seen) == 2 and not ring_blocks() & seen
  for want, got in zip(copied, lent):
    for key in want:
      np.testing.assert_array_equal(got[key], want[key], err_msg=key)


def test_one_worker_is_a_process_of_its_own(tmp_path, monkeypatch):
  """`data.workers=1` reads the training batches in one worker process, through one block of
  shared memory, not in the training process, and lends them on a GPU as more workers do.
  Evaluation reads in one too. Mutations: `self._workers > 0` -> `> 1` when opening the input
  (no child process) or in `lend`; `workers > 0` -> `> 1` for the evaluation batches -> red."""
  import multiprocessing

  image_folder_tree(tmp_path)
  config = folder_config(tmp_path)
  config.data.workers = 1
  before, children = ring_blocks(), set(multiprocessing.active_children())
  inp = build_input(config)
  batches = inp.eval_batches(False)
  next(batches)
  evaluating = set(multiprocessing.active_children()) - children
  assert len(evaluating) == 1  # evaluation's too
  batches.close()
  train = inp.train
  monkeypatch.setattr(workers.jax, "default_backend", lambda: "gpu")
  assert train.lend()
  monkeypatch.setattr(workers.jax, "default_backend", lambda: "cpu")
  assert not train.lend()
  try:
    next(train)
    assert len(set(multiprocessing.active_children()) - children - evaluating) == 1
    assert len(ring_blocks() - before) == 1
  finally:
    train.close()


def test_a_worker_that_dies_is_one_line_not_a_hang(tmp_path):
  """A worker killed (the kernel's out-of-memory killer, say) ends the input with a UserError
  naming the signal within seconds; closing leaves no shared memory. Mutation: grain's
  RuntimeError passed on -> red."""
  import multiprocessing
  import signal
  import time

  image_folder_tree(tmp_path)
  config = folder_config(tmp_path)
  config.data.workers = 2
  before = ring_blocks()
  train = build_input(config).train
  try:
    next(train)
    os.kill(multiprocessing.active_children()[0].pid, signal.SIGKILL)
    start = time.monotonic()
    with pytest.raises(UserError, match=r"an input worker process was killed by SIGKILL "
                                        r"before step \d+'s batch: the kernel's out-of-memory"):
      for _ in range(100):
        next(train)
    assert time.monotonic() - start < 30
  finally:
    train.close()
  assert ring_blocks() == before


def test_a_worker_that_dies_during_evaluation_is_one_line(tmp_path):
  """Evaluation records read in 2 workers (60 of them, more than their slots hold ahead): a
  worker killed after the first batch is a UserError naming the evaluation. Mutation: the
  evaluation's batches read without `read` (grain's RuntimeError passed on) -> red."""
  import multiprocessing
  import signal

  from conftest import save_image

  rng = np.random.default_rng(0)
  for split, count in (("train", 6), ("val", 60)):
    for i in range(count):
      save_image(str(tmp_path / split / f"c{i % 3}" / f"{i}.png"),
                 rng.integers(0, 255, (40, 40, 3), dtype=np.uint8), "PNG")
  config = folder_config(tmp_path)
  config.data.workers = 2
  inp = build_input(config)
  try:
    batches = inp.eval_batches(False)
    next(batches)
    for child in multiprocessing.active_children():
      os.kill(child.pid, signal.SIGKILL)
    with pytest.raises(UserError, match=r"an input worker process was killed by SIGKILL before "
                                        r"an evaluation batch"):
      for _ in batches:
        pass
  finally:
    inp.train.close()


def test_workers_that_cannot_start_leave_no_shared_memory(monkeypatch):
  """The hand-over's blocks are made before the workers start: a start refused (here the
  spawn probe's one line) removes them. Mutation: the ring not closed on the way out -> red."""
  from alexnet_jax.data import batch as batch_lib

  def refused(without):
    raise UserError(f"worker processes cannot start ({without})")

  monkeypatch.setattr(workers.spawning, "check_can_spawn", refused)
  before = ring_blocks()
  with pytest.raises(UserError, match=r"^worker processes cannot start \(data.workers=0\)$"):
    workers._handed_over(grain.MapDataset.range(4).to_iter_dataset(),
                         batch_lib.train_layout(2, 8, 3), 2)
  assert not ring_blocks() - before


def test_a_script_that_leaves_its_input_open_exits_cleanly(tmp_path):
  """A script that reads a training batch and half an evaluation pass in 2 workers (the pass
  asked to keep them), then ends without closing anything: it exits with no worker process,
  shared memory or traceback left (its teardown used to print grain's and the readers'
  'Exception ignored' tracebacks and leak the rings' blocks; with the workers leaving SIGTERM
  to it, multiprocessing's exit waited ~25 s for them). Mutation: the readers not closed at
  exit -> red."""
  import subprocess
  import sys

  image_folder_tree(tmp_path / "images")
  script = tmp_path / "leaves_open.py"
  script.write_text(
      "import os, sys\n"
      f"sys.path.insert(0, {os.path.join(ROOT, 'tests')!r})\n"
      "from conftest import build_input, folder_config\n"
      "if __name__ == '__main__':\n"
      "  config = folder_config(sys.argv[1])\n"
      "  config.data.workers = 2\n"
      "  inp = build_input(config)\n"
      "  next(inp.train)\n"
      "  batches = inp.eval_batches(False, keep=True)\n"
      "  next(batches)\n"
      "  print(os.getpid(), flush=True)\n")
  done = subprocess.run([sys.executable, str(script), str(tmp_path / "images")],
                        capture_output=True, text=True, timeout=300, cwd=tmp_path)
  assert done.returncode == 0, done.stderr[-2000:]
  for said in ("Traceback", "Exception ignored", "leaked"):
    assert said not in done.stderr, done.stderr[-3000:]
  assert not ring_blocks(int(done.stdout.split()[-1]))
