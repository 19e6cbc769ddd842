"""Multi-process training on jax.distributed (CPU, gloo): 2 processes x 4 devices against one
process x 8 devices, and checkpoints that move between the two."""

import os
import re
import subprocess
import sys

import numpy as np
import orbax.checkpoint as ocp
import pytest

from alexnet_jax import train
from conftest import leaves_by_path, process_state, small_config, small_flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def two_processes(workdir, epochs):
  result = subprocess.run(
      ["bash", "launch/local_multiprocess.sh", "2", "--devices=4", "--", *small_flags(),
       f"--config.num_epochs={epochs}", f"--workdir={workdir}"],
      capture_output=True, text=True, cwd=ROOT, timeout=600,
      env=os.environ | {"PYTHON": sys.executable})
  logs = [open(os.path.join(workdir, f"process_{i}.log")).read() for i in (0, 1)]
  assert result.returncode == 0, ("\n".join(_why(i, log) for i, log in enumerate(logs))
                                  + "\n" + result.stderr[-500:])
  # Process 0 on the terminal as well as in its log, appended under this launch's header.
  assert logs[0].endswith("===\n" + result.stdout)
  return logs[0].rsplit("=== launch of ", 1)[1]


def test_a_second_launch_on_a_running_jobs_workdir_leaves_its_logs(tmp_path):
  """The script used to truncate the running job's logs before the lock refused the second
  launch. Mutation: the lock check dropped (the logs opened first) -> red."""
  import fcntl

  workdir = tmp_path / "run"
  workdir.mkdir()
  (workdir / "process_0.log").write_text("the running job's log\n")
  with open(workdir / ".alexnet_jax.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a live run holds it
    result = subprocess.run(
        ["bash", "launch/local_multiprocess.sh", "2", "--", "--config=configs/tiny.py",
         f"--workdir={workdir}"], capture_output=True, text=True, cwd=ROOT, timeout=120,
        env=os.environ | {"PYTHON": sys.executable})
  assert result.returncode == 2 and "is in use by a running job" in result.stderr
  assert (workdir / "process_0.log").read_text() == "the running job's log\n"
  assert not (workdir / "process_1.log").exists()


@pytest.mark.parametrize("args,said", [
    ([], "N must be a whole number >= 1, got ''"),
    (["--", "--config=configs/tiny.py"], "N must be a whole number >= 1, got '--'"),
    (["0"], "N must be a whole number >= 1, got '0'"),
    (["2", "--devices=x"], "--devices must be a whole number >= 1, got 'x'"),
    (["2", "--bad"], "unknown option --bad"),
])
def test_a_bad_launch_argument_is_one_line(args, said):
  """A count that is no number ended in bash's "nope: unbound variable". Mutation: the check
  of N dropped -> red."""
  result = subprocess.run(["bash", "launch/local_multiprocess.sh", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=60)
  assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
  assert result.stderr.startswith(f"error: {said} (usage: bash launch/local_multiprocess.sh N ")


@pytest.mark.parametrize("args,path,said", [
    ([], "", "a CONFIG and a WORKDIR come first (usage: sbatch --nodes=N launch/slurm.sh "),
    (["configs/paper.py", "--config.seed=1"], "", "a CONFIG and a WORKDIR come first"),
    (["configs/paper.py", "w"], "", "srun not found: submit this script with sbatch on a SLURM "
                                    "cluster (usage: "),
    (["configs/paper.py", "w"], "srun", "/nowhere/bin/python not found: set ALEXNET_VENV to a "
                                        "virtualenv every node reads, made with 'bash "
                                        "launch/setup.sh cuda12'")])
def test_a_slurm_job_without_its_arguments_srun_or_virtualenv_is_one_line(tmp_path, args, path,
                                                                          said):
  """The job's output file held bash's "line 18: 1: usage: ..." or, past it, srun's or the
  interpreter's "command not found". Mutations: the srun look-up dropped; the virtualenv's
  check dropped -> red."""
  if path:
    (tmp_path / "srun").write_text("#!/bin/sh\necho srun ran\n")
    (tmp_path / "srun").chmod(0o755)
  env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "ALEXNET_VENV": "/nowhere"}
  result = subprocess.run(["bash", "launch/slurm.sh", *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=60)
  assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
  assert result.stderr.startswith(f"error: {said}") and result.stdout == ""


def test_a_slurm_job_starts_one_training_process_per_task_with_its_arguments(tmp_path):
  (tmp_path / "srun").write_text("#!/bin/sh\necho \"$@\"\n")
  (tmp_path / "srun").chmod(0o755)
  (tmp_path / "venv" / "bin").mkdir(parents=True)
  (tmp_path / "venv" / "bin" / "python").write_text("")
  (tmp_path / "venv" / "bin" / "python").chmod(0o755)
  result = subprocess.run(["bash", "launch/slurm.sh", "configs/paper.py", "w", "--config.seed=1"],
                          capture_output=True, text=True, cwd=ROOT, timeout=60,
                          env={"PATH": f"{tmp_path}:/usr/bin:/bin",
                               "ALEXNET_VENV": str(tmp_path / "venv")})
  assert (result.returncode, result.stderr) == (0, "")
  assert result.stdout == (f"--kill-on-bad-exit=1 {tmp_path}/venv/bin/python -m alexnet_jax.main "
                           "--config=configs/paper.py --workdir=w --config.seed=1\n")


def _zombie(executable: str = sys.executable) -> subprocess.Popen:
  """A child that has exited and is not reaped yet (state Z); the caller reaps it."""
  import time

  zombie = subprocess.Popen([executable, "-c", ""])
  deadline = time.time() + 30
  while process_state(zombie.pid) != "Z":
    assert time.time() < deadline
    time.sleep(0.05)
  return zombie


def _exited_pid() -> int:
  """The pid of a process that has exited and been reaped."""
  done = subprocess.Popen([sys.executable, "-c", ""])
  done.wait()
  return done.pid


def test_a_lost_peer_is_named_from_the_error_and_narrowed_to_those_that_exited(monkeypatch):
  """`lost_peer` on errors as gloo and the coordination service word them, with the table the
  processes published (this process is 0). Mutations: the peer-error test dropped; this
  process counted among the suspects; the `Task N`, `unhealthy` and address readers each
  dropped; `_gone`'s other-host test inverted; `in "ZX"` -> `not in` -> red."""
  import socket

  from alexnet_jax import distributed

  host = socket.gethostname()
  zombie = _zombie()
  peers = {0: {"host": host, "address": "10.0.0.9", "pid": _exited_pid()},  # this process
           1: {"host": host, "address": "10.0.0.1", "pid": os.getpid()},  # alive
           2: {"host": host, "address": "10.0.0.2", "pid": _exited_pid()},
           3: {"host": "elsewhere", "address": "10.0.0.3", "pid": 7},
           4: {"host": host, "address": "10.0.0.4", "pid": os.getppid()},  # alive
           5: {"host": host, "address": "10.0.0.5", "pid": zombie.pid}}
  name = {i: f"process {i} ({p['host']}, pid {p['pid']})" for i, p in peers.items()}
  lost = distributed.lost_peer
  error = ConnectionError("Connection reset by peer")
  assert lost(error) is None  # a single-process run publishes no table
  monkeypatch.setattr(distributed, "_PEERS", peers)
  try:
    assert lost(ValueError("shapes (2,) and (3,) differ")) is None
    assert lost(error) == (f"process 0 of 1 lost {name[2]} or {name[5]} "
                           "(ConnectionError: Connection reset by peer)")
    assert lost(RuntimeError("Task 4 heartbeat timeout\nmore")).startswith(
        f"process 0 of 1 lost {name[4]} (RuntimeError: Task 4 heartbeat timeout)")
    assert f"lost {name[1]} or {name[4]} (" in lost(RuntimeError(
        "2 tasks are unhealthy (stopped sending heartbeats): 1, 4"))
    assert f"lost {name[3]} (" in lost(RuntimeError("tasks are unhealthy: 1, 3"))
    assert f"lost {name[1]} (" in lost(OSError("Connection refused [10.0.0.1]:1234"))
  finally:
    zombie.wait()


def test_a_peer_whose_name_holds_a_parenthesis_is_read_from_after_the_last_one(tmp_path):
  """/proc/PID/stat puts the process's name in parentheses, and a name may hold ')' itself:
  the state letter follows the last one. Mutation: `rsplit(")", 1)` -> `2` (this name's
  ') R' read as the state) -> red."""
  import socket

  from alexnet_jax import distributed

  odd = tmp_path / "a) R b"
  odd.symlink_to(os.path.realpath(sys.executable))
  zombie = _zombie(str(odd))
  host = socket.gethostname()
  assert distributed._gone({"host": host, "pid": zombie.pid}) is True
  assert distributed._gone({"host": host, "pid": os.getpid()}) is False
  zombie.wait()


def test_a_multi_process_launch_is_checked_before_jax_distributed_starts(monkeypatch):
  """One line for counts that cannot be, before any setting changes; SLURM's batch script (no
  job step) is one process. Mutations: the `num_processes > 1` test -> `>= 1`; the process-id
  range test dropped; `and "SLURM_STEP_ID" in` -> `or`; an empty JAX_NUM_PROCESSES read as 1, or
  SLURM_NTASKS as 2; a coordinator refused for one process; the heartbeat timeout not passed
  (JAX's 100 s) -> red."""
  import jax

  from alexnet_jax import distributed
  from alexnet_jax.errors import UserError

  for name in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID", "SLURM_NTASKS",
               "SLURM_STEP_ID"):
    monkeypatch.delenv(name, raising=False)
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")  # read at each call
  started, updated, options = [], [], []
  monkeypatch.setattr(jax.distributed, "initialize",
                      lambda *a, **k: (started.append(a), options.append(k)))
  monkeypatch.setattr(jax.config, "update", lambda *a: updated.append(a))
  monkeypatch.setattr(distributed, "_publish", lambda: None)
  assert distributed.initialize() is False and distributed.initialize(num_processes=1) is False
  with pytest.raises(UserError, match=r"--num_processes > 1 needs --coordinator_address"):
    distributed.initialize(num_processes=2)
  for count, index in ((2, 2), (2, -1), (0, 0)):
    with pytest.raises(UserError, match=rf"needs --num_processes >= 1 and 0 <= --process_id < "
                                        rf"num_processes \(got {count}, {index}\)"):
      distributed.initialize("host:1234", count, index)
  monkeypatch.setenv("JAX_NUM_PROCESSES", "")  # set but empty, as a job template may leave them
  monkeypatch.setenv("JAX_PROCESS_ID", "")
  with pytest.raises(UserError, match=r"\(got 0, -1\)"):
    distributed.initialize("host:1234")
  monkeypatch.setenv("SLURM_NTASKS", "2")  # sbatch's script: no job step
  assert distributed.initialize() is False and started == updated == []
  monkeypatch.setenv("JAX_PROCESS_ID", "1")
  monkeypatch.setenv("JAX_NUM_PROCESSES", "2")
  assert distributed.initialize("host:1234") is True
  monkeypatch.setenv("SLURM_STEP_ID", "0")
  assert distributed.initialize() is True
  monkeypatch.setenv("SLURM_NTASKS", "")  # a job step of one task
  monkeypatch.delenv("JAX_NUM_PROCESSES")
  monkeypatch.delenv("JAX_PROCESS_ID")
  assert distributed.initialize() is False
  assert distributed.initialize("host:1234", 1, 0) is True  # one process, given a coordinator
  assert started == [("host:1234", 2, 1), (), ("host:1234", 1, 0)]
  assert updated == [("jax_cpu_collectives_implementation", "gloo"),
                     ("jax_enable_preemption_service", True)] * 3
  assert options == [{"heartbeat_timeout_seconds": distributed.HEARTBEAT_TIMEOUT_S}] * 3


def _pid_of(process: int, workdir) -> int | None:
  for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
      cmdline = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
    except OSError:
      continue
    if (b"alexnet_jax.main" in cmdline and f"--process_id={process}".encode() in cmdline
        and f"--workdir={workdir}".encode() in cmdline):
      return int(pid)
  return None


@pytest.mark.slow
def test_a_peer_that_dies_ends_the_run_in_one_line_naming_it(tmp_path):
  """A killed peer left process 0 printing a Gloo traceback, waiting ≈ 90 s at JAX's shutdown
  barrier, then aborting with a stack dump. Mutation: main's `lost_peer` handling dropped (the
  error raised as before) -> the run outlives the 30 s and the log has the traceback (red)."""
  import signal
  import time

  workdir = tmp_path / "run"
  launch = _launch(workdir)
  try:
    _wait_for(launch, workdir, "step 4/", seconds=300)
    peer = _pid_of(1, workdir)
    assert peer is not None
    os.kill(peer, signal.SIGKILL)
    killed = time.time()
    out, err = launch.communicate(timeout=120)
    took = time.time() - killed
  finally:
    _end(launch, workdir)
  log = _read(workdir / "process_0.log").rsplit("=== launch of ", 1)[1]
  errors = [line for line in log.splitlines() if line.startswith("error:")]
  assert took < 30 and launch.returncode != 0, (took, launch.returncode, log[-2000:])
  assert len(errors) == 1 and errors[0].startswith(
      "error: process 0 of 2 lost process 1 (") and f"pid {peer})" in errors[0], errors
  assert "every process stops, the checkpoints are kept" in errors[0]
  assert "Traceback" not in log and "Check failure" not in log, log[-2000:]
  assert errors[0] in out and "process 1 was ended by signal 9" in err


@pytest.mark.slow
def test_a_sigterm_to_the_launch_stops_every_process_after_the_same_step(tmp_path):
  """SIGTERM to the launch script reaches each process, each at its own step. Each used to
  stop after the step it had reached: the one that saved waited for the others at Orbax's
  barrier while they waited for it in the next step's collective, until killed (and the
  script, killed, left them running). Now every process stops after one agreed step, saved
  once (`distributed.stop_agreed`). Logged every 50 steps, the loop also runs 50 steps ahead
  of the device unless held back: 2 processes x 4 CPU devices then hung in XLA:CPU's
  collectives before step 50. Mutations: each process stopping on its own signal
  (`StopRequest()` in the loop) -> the launch outlives the 120 s; the script's TERM trap
  dropped -> the script ends, its processes run on (and hold its output open past the 120 s);
  the loop not held (`IN_FLIGHT_STEPS` = 10**6) -> no step 50 in 150 s (red)."""
  import signal

  workdir = tmp_path / "run"
  launch = _launch(workdir, "--config.checkpoint.every_steps=1000",
                   "--config.eval_every_epochs=100", "--config.log_every_steps=50")
  try:
    _wait_for(launch, workdir, "step 50/", seconds=150)
    launch.send_signal(signal.SIGTERM)
    out, err = launch.communicate(timeout=120)
  finally:
    _end(launch, workdir)
  assert launch.returncode == 0, err[-2000:]
  line = r"stopping on SIGTERM \(to one of the processes\): saving step (\d+) and exiting"
  stopped = [re.findall(line, _read(workdir / f"process_{i}.log")) for i in (0, 1)]
  assert stopped[0] == stopped[1] and len(stopped[0]) == 1, stopped
  assert f"at step {stopped[0][0]} of 2000; step {stopped[0][0]} is saved" in out
  assert sorted(os.listdir(workdir / "checkpoints")) == [stopped[0][0]]


def _launch(workdir, *flags) -> subprocess.Popen:
  """The small config's 2-process launch for 500 epochs (2,000 steps), `flags` added."""
  return subprocess.Popen(
      ["bash", "launch/local_multiprocess.sh", "2", "--devices=4", "--", *small_flags(),
       "--config.num_epochs=500", *flags, f"--workdir={workdir}"], stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True, cwd=ROOT, env=os.environ | {"PYTHON": sys.executable})


def _wait_for(launch: subprocess.Popen, workdir, text: str, seconds: float) -> None:
  """Until process 0's log holds `text`; the launch must not end, nor the time run out."""
  import time

  deadline = time.time() + seconds
  while text not in _read(workdir / "process_0.log"):
    assert launch.poll() is None, launch.communicate()
    assert time.time() < deadline, _read(workdir / "process_0.log")[-1000:]
    time.sleep(0.5)


def _end(launch: subprocess.Popen, workdir) -> None:
  """The launch and any of its processes still running (hung: not left to the suite) killed."""
  import signal

  launch.kill()
  for pid in filter(None, (_pid_of(i, workdir) for i in (0, 1))):
    os.kill(pid, signal.SIGKILL)


def _read(path) -> str:
  try:
    return open(path).read()
  except OSError:
    return ""


def _why(process: int, log: str) -> str:
  """A failed process's error and fatal lines (a C++ abort buries them under its stack dumps)
  and the end of its log."""
  errors = [line for line in log.splitlines() if line[:1] in "EF" and line[1:5].isdigit()]
  return f"process {process}:\n" + "\n".join(errors[-5:]) + "\n..." + log[-800:]


def params_at(workdir, step):
  """The params of a checkpoint written on any topology, onto this process's first device."""
  import jax

  path = os.path.join(workdir, "checkpoints", str(step), "state")
  checkpointer = ocp.StandardCheckpointer()
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                        checkpointer.metadata(path).item_metadata.tree)
  return checkpointer.restore(path, target)["params"]


def assert_close(a, b):
  for (path, x), y in zip(leaves_by_path(a).items(), leaves_by_path(b).values()):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=2e-6, err_msg=path)


@pytest.mark.slow
def test_two_processes_match_one_and_checkpoints_move_between_them(straight_run, tmp_path):
  workdir, _ = straight_run
  # 4 steps in 2 processes x 4 devices, and in 1 process x 8 devices: the same global batches.
  multi, single = str(tmp_path / "multi"), str(tmp_path / "single")
  logs = two_processes(multi, epochs=1)
  assert "process 0 of 2, 4 local / 8 global devices" in logs
  train.train_and_evaluate(small_config(epochs=1.0), single)
  assert_close(params_at(multi, 4), params_at(single, 4))
  # The 2-process checkpoint continues in 1 process on another mesh (one device per batch
  # shard, both columns on each), and the 1-process one in 2 processes: both end where the
  # uninterrupted 1-process run ends.
  config = small_config(epochs=2.0)
  config.mesh.model = 1
  train.train_and_evaluate(config, multi)
  logs = two_processes(single, epochs=2)
  assert "written by 1 processes, this run has 2" in logs
  assert_close(params_at(multi, 8), params_at(workdir, 8))
  assert_close(params_at(single, 8), params_at(workdir, 8))
