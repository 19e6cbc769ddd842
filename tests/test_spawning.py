"""Worker processes started from a user's script (`data/spawning.py`): a script that trains or
prepares at its top level, outside `if __name__ == "__main__":`, ends in one line naming the
fix instead of waiting forever; a guarded one trains with its workers."""

import subprocess
import sys
import textwrap

import pytest

from alexnet_jax.data import spawning
from conftest import FAST_COMPILE, core_install_env, image_folder_tree

# A training set held in memory (some MB): the task each worker is sent is far larger than a
# pipe's 64 KiB, so that a worker dying before it reads its task left the script waiting.
TRAIN = """
from alexnet_jax import configuration, train
config = configuration.load("configs/tiny.py", [
    "data.name=synthetic", "data.image_size=36", "data.batch_size=8", "data.eval_batch_size=16",
    "data.synthetic_train_size=2048", "data.synthetic_eval_size=16", "data.workers=2",
    "num_steps=2", "eval.ten_crop_final=False"])
"""
TRAIN_RUN = 'print("trained to step", train.train_and_evaluate(config, "run").step)\n'


def _script(tmp_path, text: str, *, stdin: bool = False) -> subprocess.CompletedProcess:
  path = tmp_path / "script.py"
  path.write_text(text)
  args, given = ([sys.executable, "-"], text) if stdin else ([sys.executable, str(path)], None)
  return subprocess.run(args, cwd=tmp_path, input=given, capture_output=True, text=True,
                        timeout=120, env={**core_install_env(), "XLA_FLAGS": FAST_COMPILE,
                                          "JAX_PLATFORMS": "cpu"})


def _last_line(proc) -> str:
  return proc.stderr.strip().splitlines()[-1]


@pytest.mark.slow
def test_a_script_that_trains_outside_the_main_guard_is_told_so(tmp_path):
  """Mutation: `workers.in_workers` without `spawning.check_can_spawn` -> the script waited
  on its workers' pipe until the subprocess timeout (red)."""
  proc = _script(tmp_path, TRAIN + TRAIN_RUN)
  assert proc.returncode == 1 and "trained to step" not in proc.stdout
  assert _last_line(proc).endswith(
      "UserError: worker processes cannot start: Python starts each by running "
      f"{tmp_path / 'script.py'} again, and it trains (or prepares data) at its top level: put "
      "that under `if __name__ == \"__main__\":`, or do without worker processes "
      "(data.workers=0)"), proc.stderr[-3000:]
  assert "leaked shared_memory" not in proc.stderr


def test_a_script_read_from_standard_input_is_told_to_save_it(tmp_path):
  proc = _script(tmp_path, TRAIN + TRAIN_RUN, stdin=True)
  assert proc.returncode == 1
  assert "worker processes cannot start from a script read from <stdin>" in _last_line(proc)


@pytest.mark.slow
def test_a_guarded_script_trains_with_its_workers(tmp_path):
  """Mutation: `stop_if_spawning` ending every spawned process -> the probe fails (red)."""
  proc = _script(tmp_path, TRAIN + 'if __name__ == "__main__":\n  ' + TRAIN_RUN)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "trained to step 2" in proc.stdout


def test_a_script_that_prepares_outside_the_main_guard_is_told_so(tmp_path):
  """`prepare`'s pool respawned its dying workers without end (mutation: no check before the
  pool -> the subprocess timeout, red)."""
  image_folder_tree(tmp_path / "images")
  proc = _script(tmp_path, textwrap.dedent(f"""
      from alexnet_jax import configuration
      from alexnet_jax.data.prepare import prepare
      config = configuration.load("configs/tiny.py", [
          "data.name=image_folder", "data.data_dir={tmp_path / 'images'}",
          "data.image_size=36", "model.num_classes=3"])
      prepare(config.data, channels=3, num_classes=3, workers=2, progress=False)
      """))
  assert proc.returncode == 1
  assert _last_line(proc).endswith("or do without worker processes (--workers=1)"), \
      proc.stderr[-3000:]


# A script that probes its own re-run: each spawned start notes itself in `starts`, then ends
# as its mode says (`ok`: at once; `fails`: status 7; `hangs`: past the probe's time).
PROBED = """
import sys, time
from alexnet_jax.data import spawning
mode = sys.argv[1]
if __name__ == "__mp_main__":
  with open("starts", "a") as f:
    f.write(mode + "\\n")
  if mode == "fails":
    sys.exit(7)
  if mode == "hangs":
    time.sleep(60)
if __name__ == "__main__":
  spawning._PROBE_S = 2.0
  try:
    spawning.check_can_spawn("workers=0")
    spawning.check_can_spawn("workers=0")
    print("can spawn")
  except spawning.UserError as e:
    print(e)
"""


@pytest.mark.parametrize("mode, said", [
    ("ok", "can spawn"),
    ("fails", "and that ended with status 7 (its error is above): put the script's work under"),
    ("hangs", "and that had not ended after 2 s in a probe process: put the script's work"),
])
def test_the_probe_is_started_once_and_says_how_the_rerun_failed(tmp_path, mode, said):
  """Mutations: a probe that succeeded not remembered (`_CHECKED.add` dropped) -> two starts;
  the exit status test `== 0` -> `!= 0`; `exitcode is None` -> `is not None` (a hung re-run
  taken for a failed one) -> red."""
  script = tmp_path / "probed.py"
  script.write_text(PROBED)
  proc = subprocess.run([sys.executable, str(script), mode], cwd=tmp_path, capture_output=True,
                        text=True, timeout=60)
  assert said in proc.stdout, proc.stderr[-3000:]
  if mode != "ok":
    assert proc.stdout.startswith(f"worker processes cannot start: Python starts each by "
                                  f"running {script} again, and ")
    assert proc.stdout.rstrip().endswith("or do without worker processes (workers=0)")
  assert (tmp_path / "starts").read_text() == f"{mode}\n"


def test_what_a_spawned_process_runs_again(monkeypatch):
  """A script's path, a module run with `-m` by name; nothing for an interactive session, a
  package's `__main__` or this project's commands (each starts under the guard). Mutations:
  the `__main__` / alexnet_jax test `or` -> `and`; a module taken for a path -> red."""
  from types import SimpleNamespace as Main

  from alexnet_jax.data import spawning

  def reruns(main):
    monkeypatch.setitem(sys.modules, "__main__", main)
    return spawning._reruns()

  assert reruns(Main(__file__="/runs/train.py")) == ("/runs/train.py", True)
  assert reruns(Main(__spec__=Main(name="lab.train"), __file__="/lab/train.py")) == (
      "lab.train", False)
  assert reruns(Main(__spec__=Main(name="lab.__main__"))) is None
  assert reruns(Main(__spec__=Main(name="alexnet_jax.main"))) is None
  assert reruns(Main()) is None


def test_a_worker_that_ended_is_said_by_its_status_or_its_signal():
  """Mutation: `code >= 0` -> `>= 1` (status 0 read as a signal) -> red."""
  worker = "an input worker process"
  assert spawning.ended(0, worker, "before step 3's batch") == (
      "an input worker process exited (status 0) before step 3's batch")
  assert spawning.ended(2, worker, "x").startswith("an input worker process exited (status 2)")
  assert "killed by SIGTERM x" in spawning.ended(-15, worker, "x")
  assert "out-of-memory" not in spawning.ended(-15, worker, "x")
  assert spawning.ended(-9, worker, "x").endswith(
      "killed by SIGKILL x: the kernel's out-of-memory killer sends it, if no one else did")
  assert "killed by signal 99 x" in spawning.ended(-99, worker, "x")


def test_the_process_that_died_is_named_not_those_the_pool_stopped_after_it():
  """The pool stops the others with SIGTERM once one has died. Mutation: the sort key dropped
  (the first code found named) -> red."""

  class Ended:
    def __init__(self, exitcode):
      self.exitcode = exitcode

  said = spawning._first_ended([Ended(-15), Ended(None), Ended(-9), Ended(0)], "w", "x")
  assert said.startswith("w was killed by SIGKILL x")
  assert spawning._first_ended([Ended(None)], "w", "x") == "w ended abruptly x"


def test_the_pools_processes_are_stopped_when_the_caller_stops_reading():
  """A caller that stops reading (an error of its own, Ctrl-C) leaves no worker behind, even one
  still busy with its task (the executor alone would let it run to the end), and none that
  still looks alive. Mutation: the terminate dropped -> red (the busy worker's minute waited
  for). Each process waited for here as well as by the pool's thread: red in some runs only
  (a race: 7 times in 150 on a loaded 2-core CPU)."""
  import multiprocessing
  import time

  before = set(multiprocessing.active_children())
  results = spawning.map_unordered(time.sleep, [0, 60, 60], 2, initializer=int, initargs=(),
                                   who="w", when="x", then="y", without="z")
  assert next(results) is None
  start = time.monotonic()
  results.close()
  assert time.monotonic() - start < 30
  assert set(multiprocessing.active_children()) <= before
