"""The closing summary: accuracy in % from the evaluation's error fractions, the best
checkpoint, the run's files, the next commands; a stopped run says how to resume."""

import os
import subprocess
import sys

from alexnet_jax import run_summary
from alexnet_jax.run_summary import closing_summary

EVALUATION = {"eval": {"top1_error": 0.1027, "top5_error": 0.0031, "skipped_images": 0},
              "eval_10crop": {"top1_error": 0.0986, "top5_error": 0.0029, "skipped_images": 2}}


def test_a_finished_run_reads_in_percent_and_says_what_to_run_next():
  python = run_summary.python_command()
  lines = closing_summary("W", evaluation=EVALUATION, step=100, total_steps=100,
                          stopped_by=None, best_step=90).splitlines()
  assert lines[1:5] == [
      "=== W ===", "trained to step 100 of 100",
      "validation accuracy, centre crop: top-1 89.73 %, top-5 99.69 %",
      "validation accuracy, ten crops (§4.1): top-1 90.14 %, top-5 99.71 % (2 unreadable images "
      "left out)"]
  here = os.path.abspath("W")  # the files by their absolute paths: they open from anywhere
  assert lines[5] == f"best checkpoint (lowest validation top-1 error): step 90, {here}/best/90"
  assert f"tensorboard --logdir {here}/tensorboard" in lines[7]
  assert lines[8] == "next:" and len(lines) == 13
  assert lines[-1].startswith(f"  {python} -m alexnet_jax.export --workdir=W --best")


def test_the_commands_paste_into_a_shell_whatever_the_workdirs_name():
  """A workdir with a space (or a quote, or a non-ASCII letter) was printed bare: the pasted
  command split it. Mutation: the workdir argument not quoted -> red."""
  import shlex

  workdir = "my runs/l'été"
  lines = closing_summary(workdir, evaluation=EVALUATION, step=100, total_steps=100,
                          stopped_by=None, best_step=90).splitlines()
  commands = [shlex.split(line) for line in lines if " -m alexnet_jax." in line]
  assert len(commands) == 4
  assert all(f"--workdir={workdir}" in argv for argv in commands), commands
  logdir = shlex.split(lines[7].split(": ", 1)[1].split(" (pip")[0])
  assert logdir[1:] == ["--logdir", os.path.join(os.path.abspath(workdir), "tensorboard")]


def test_the_next_commands_start_this_interpreter_from_any_shell(tmp_path):
  """Outside an activated virtualenv `python` is another interpreter (or none): the commands
  name this one by its path. Mutation: always 'python' -> red."""
  code = "from alexnet_jax import run_summary; print(run_summary.python_command())"
  env = {**os.environ, "PATH": str(tmp_path)}  # no `python` on PATH at all
  printed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env=env).stdout.strip()
  assert printed == sys.executable
  os.symlink(sys.executable, tmp_path / "python")  # an activated virtualenv's
  printed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env=env).stdout.strip()
  assert printed == "python"


def test_the_time_line_reads_in_seconds_minutes_or_hours():
  """Mutations, each red: the line left out; minutes from 60 s; hours from 1 h; one save
  said in the plural."""
  timed = {"loop_seconds": 4000.0, "evaluation_seconds": 75.5, "checkpoint_seconds": 12.3,
           "checkpoints": 30}
  summary = lambda timed: closing_summary("W", evaluation=EVALUATION, step=100,
                                          total_steps=100, stopped_by=None, best_step=90,
                                          timed=timed).splitlines()
  assert summary(timed)[2:4] == [
      "trained to step 100 of 100",
      "time: 66.7 min in this process's training loop, 75.5 s of it evaluating, 12.3 s saving "
      "30 checkpoints"]
  assert summary(timed | {"checkpoints": 1})[3].endswith(", 12.3 s saving 1 checkpoint")
  assert [run_summary.duration(s) for s in (119.94, 120.0, 7199.0, 7200.0)] == [
      "119.9 s", "2.0 min", "120.0 min", "2.00 h"]


def test_a_stopped_run_says_how_to_resume_and_nothing_to_run_next():
  text = closing_summary("W", evaluation={}, step=40, total_steps=100, stopped_by="SIGINT",
                         best_step=None)
  assert "stopped by SIGINT at step 40 of 100; step 40 is saved: run the same command to " \
         "resume" in text
  assert "next:" not in text and "best checkpoint" not in text
