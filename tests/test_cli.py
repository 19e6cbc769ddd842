"""The command line (`cli.run`): every tool's bad flags, configs and arguments end in one line."""

import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT, command


def _one_error_line(proc, message, status=2):
  assert proc.returncode == status, proc.stderr
  errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1 and re.search(message, errors[0]), proc.stderr
  assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("args,message", [
    (["--config.optimizer.learning_rat=0.1"], "has no field 'learning_rat'; did you mean "
                                              "learning_rate"),
    (["--config.optim.learning_rate=0.1"], "^error: --config.optim.learning_rate=0.1: the "
                                           "config has no field 'optim'; did you mean optimizer"),
    (["--config.model.columns=3"], "columns must be 2"),
    (["--config.data.data_dir=/nonexistent"], "Fashion-MNIST not found"),
    (["--config.schedule.kind=cosine"], "schedule.kind"),
    (["--config.optimizer.decay_on=kernals"], "decay_on must be one of all, kernels"),
    (["--config=configs/tinny.py", "--config.num_epochs=1"],
     r"cannot load the config: .*No such file or directory: 'configs/tinny.py' \(the "
     r"package's: configs/caffe_alexnet.py, .*configs/tiny.py\)$"),
    (["extra"], "unexpected arguments: extra"),
])
def test_main_reports_config_errors_in_one_line(tmp_path, args, message):
  config = [] if any(a.startswith("--config=") for a in args) else [
      "--config=configs/fashion_mnist.py"]
  _one_error_line(command("main", *config, f"--workdir={tmp_path}", *args), message)


def test_required_flags_not_given_are_named_in_one_line_with_the_packaged_configs(tmp_path):
  """absl said "flag --config=None: Flag --config must have a value other than None." for
  each. Mutation: `cli.run` not checking `required_flags` -> red."""
  _one_error_line(command("main", cwd=str(tmp_path)),
                  r"^error: --config and --workdir are required \(--config: a config file, or "
                  r"one of the package's: configs/caffe_alexnet.py, .*configs/paper.py, .*\); "
                  r"--help lists every flag$")
  _one_error_line(command("evaluate", cwd=str(tmp_path)),
                  r"^error: --workdir is required; --help lists every flag$")


@pytest.mark.parametrize("module", ["main", "layer_shapes"])
def test_a_config_file_that_does_not_run_is_one_line(tmp_path, module):
  """A user's config with a syntax error, or whose get_config returns no ConfigDict, ended in
  a traceback (mutation: `cli._parse_flags` not asking `configuration.file_error` -> red)."""
  (tmp_path / "typo.py").write_text("def get_config(:\n  pass\n")
  (tmp_path / "five.py").write_text("def get_config():\n  return 5\n")
  workdir = ["--workdir=w"] if module == "main" else []
  _one_error_line(command(module, "--config=typo.py", *workdir, cwd=str(tmp_path)),
                  r"^error: cannot load the config typo.py: SyntaxError at line 1")
  _one_error_line(command(module, "--config=five.py", *workdir, cwd=str(tmp_path)),
                  r"^error: the config five.py: get_config\(\) returned int")


@pytest.mark.parametrize("module,args,message", [
    ("benchmark", ["step", "--config=configs/tiny.py", "--steps=0"],
     "--steps=0: 0 is not a positive integer"),
    ("benchmark", ["input", "--seconds=0"], "--seconds must be positive"),
    ("benchmark", ["step", "--config=configs/tiny.py", "--compare_torch"],
     "--compare_torch (needs PyTorch|times PyTorch on a CUDA GPU and none is visible)"),
    ("main", ["--config=configs/tiny.py", "--workdir=w", "--num_processes=-2"],
     "--num_processes=-2: -2 is not a non-negative integer"),
    ("predict", ["--workdir=w", "--topk=0", "x.png"], "--topk=0: 0 is not a positive"),
])
def test_a_number_out_of_a_flags_range_is_one_line(tmp_path, module, args, message):
  _one_error_line(command(module, *args, cwd=str(tmp_path)), message)


@pytest.mark.parametrize("args,message", [
    (["steps", "--config=configs/tiny.py"],
     r"^error: usage: python -m alexnet_jax.benchmark input\|step\|levers\|end2end"),
    (["step", "levers", "--config=configs/tiny.py"], r"^error: usage: "),
    (["levers"], r"^error: levers needs --config=configs/....py$"),
])
def test_a_benchmark_without_one_known_subcommand_or_its_config_is_one_line(args, message):
  _one_error_line(command("benchmark", *args), message)


USAGE = r"^error: usage: python -m alexnet_jax.ablate \[figure1\|columns\|precision\] --config"


@pytest.mark.parametrize("args,message", [
    (["figure2"], USAGE),
    (["figure1", "columns"], USAGE),
    (["--seeds=0"], r"^error: --seeds must be >= 1$"),
    (["--override=num_epochs"], r"--override 'num_epochs': expected a.b=value"),
    (["--override=model.colums=1"], r"has no field 'colums'; did you mean columns"),
    (["figure1", "--lrs=0.01,fast"], r"--lrs must be comma-separated numbers, got '0.01,fast'$"),
    (["figure1", "--lrs=0.01,0"], r"--lrs needs positive learning rates and --threshold a "),
    (["figure1", "--lrs=,"], r"--lrs needs positive learning rates"),
    (["figure1", "--threshold=1"], r"--threshold a fraction in \(0, 1\)$"),
    (["--ablations=lrn,dropuot"], r"unknown ablations \['dropuot'\]; known: lrn, "),
])
def test_ablate_refuses_bad_arguments_in_one_line_before_any_run(tmp_path, args, message):
  """Mutations: the command check `or` -> `and`; `seeds < 1` -> `< 0`; the override check
  dropped; the config not loaded up front; `min(lrs) <= 0` -> `< 0`; the threshold's upper
  bound dropped; the ablation names not checked -> red."""
  _one_error_line(command("ablate", "--config=configs/tiny.py", f"--workdir={tmp_path}/study",
                          *args), message)
  assert not os.path.exists(tmp_path / "study")


def test_a_config_given_by_its_path_from_another_directory_loads(tmp_path):
  """`--config` as an absolute path from another directory ended in `No module named
  'configs'`; `configs/<name>.py` finds the configs shipped with the package from anywhere."""
  for args in ([f"--config={os.path.join(ROOT, 'configs', 'tiny.py:no_lrn')}"],
               ["--config=configs/tiny.py"], ["--config", "configs/tiny.py"]):
    proc = command("layer_shapes", *args, cwd=str(tmp_path))
    assert proc.returncode == 0, (args, proc.stderr[-2000:])
    assert "total params:" in proc.stdout
  _one_error_line(command("layer_shapes", "--config=nowhere/tiny.py", cwd=str(tmp_path)),
                  "cannot load the config: .*nowhere/tiny.py")


def test_ctrl_c_is_one_line(tmp_path):
  code = ("from alexnet_jax import cli\n"
          "def main(argv):\n  raise KeyboardInterrupt\n"
          "cli.run(main)\n")
  proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                        timeout=120, env={**os.environ, "JAX_PLATFORMS": "cpu"})
  _one_error_line(proc, "interrupted", status=130)


def test_a_device_that_runs_out_of_memory_is_one_line_and_other_runtime_errors_are_not_hidden():
  """XLA's RESOURCE_EXHAUSTED for a 100 TB allocation: one line naming the batch sizes and
  bfloat16; another runtime error keeps its traceback (a bug to report, not a setting).
  Mutation: the out-of-memory branch dropped; every RuntimeError made one line -> red."""
  def tool(body):
    code = ("import jax, jax.numpy as jnp\nfrom alexnet_jax import cli\n"
            f"def main(argv):\n  {body}\ncli.run(main)\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "JAX_PLATFORMS": "cpu"})
  _one_error_line(tool("jax.jit(lambda: jnp.zeros((10**14,), jnp.uint8))()"),
                  r"^error: the device ran out of memory \(RESOURCE_EXHAUSTED: Out of memory "
                  r"allocating 100000000000000 bytes.\): use a smaller batch .*"
                  r"--config.data.eval_batch_size.*--config.model.dtype=bfloat16\)$")
  other = tool("raise RuntimeError('INTERNAL: something else')")
  assert other.returncode == 1 and "Traceback" in other.stderr


def test_tools_refuse_outputs_they_cannot_write_before_any_work(straight_run, tmp_path):
  workdir, _ = straight_run
  image = os.path.join(ROOT, "tests", "conftest.py")  # never read: the output is checked first
  _one_error_line(command("predict", f"--workdir={workdir}",
                          f"--output={tmp_path}/missing/p.json", image),
                  "the directory .*missing does not exist")
  _one_error_line(command("predict", f"--workdir={workdir}",
                          f"--output={tmp_path}/p.txt", image), "ending in .json or .csv")
  _one_error_line(command("predict", f"--workdir={workdir}",
                          f"--figure={tmp_path}/p.txt", image), "ending in .png")
  _one_error_line(command("visualize", "kernels", f"--workdir={workdir}",
                          f"--output={tmp_path}/k.gif"), "ending in .png")


def test_a_damaged_best_checkpoint_is_one_line(straight_run, tmp_path):
  import shutil

  workdir = str(tmp_path / "copy")
  shutil.copytree(straight_run[0], workdir)
  for dirpath, _, files in os.walk(os.path.join(workdir, "best")):
    for name in files:
      if "ocdbt.process" in dirpath:
        os.remove(os.path.join(dirpath, name))
  image = os.path.join(tmp_path, "x.png")
  from PIL import Image

  Image.new("RGB", (40, 40)).save(image)
  proc = command("predict", f"--workdir={workdir}", "--best", image)
  _one_error_line(proc, "no checkpoint of .* can be restored")
  assert "Event loop is closed" not in proc.stderr


def test_only_the_unraisable_errors_of_a_failed_checkpoint_read_are_kept_quiet(monkeypatch):
  """Orbax's leftovers after a damaged checkpoint's read (asyncio's closed loop, an error
  raised in Orbax's code) are logged at debug level; any other error Python cannot raise still
  reaches the default hook. Mutation: every RuntimeError kept quiet (`and` -> `or`) -> red."""
  import traceback
  import types

  from alexnet_jax import cli

  monkeypatch.setattr(traceback, "extract_tb", lambda frames: frames)  # the frames given below

  def unraisable(error, filename=os.path.join(os.sep, "app", "main.py")):
    return types.SimpleNamespace(exc_value=error,
                                 exc_traceback=[traceback.FrameSummary(filename, 1, "f")])

  reached = []
  orbax_file = os.path.join(os.sep, "site-packages", "orbax", "checkpoint", "x.py")
  for error, filename in ((RuntimeError("Event loop is closed"), None),
                          (ValueError("from a coroutine"), orbax_file),
                          (RuntimeError("something else"), None),
                          (ValueError("Event loop is closed"), None)):
    cli._unraisable(unraisable(error, *([filename] if filename else [])), reached.append)
  assert [str(u.exc_value) for u in reached] == ["something else", "Event loop is closed"]


def test_the_log_keeps_our_info_the_libraries_warnings_and_not_asyncios_leftovers():
  """INFO lines from alexnet_jax and every library's warnings pass; a library's INFO (Orbax
  logs every save) and asyncio's "exception was never retrieved" of a failed checkpoint read do
  not. Mutations: either half of the asyncio condition dropped (`and` -> `or`, `==` -> `!=`)
  -> red."""
  import logging

  from alexnet_jax import cli

  def record(name, level, msg, pathname):
    return logging.LogRecord(name, level, pathname, 1, msg, None, None)

  ours = os.path.join(ROOT, "alexnet_jax", "train.py")
  library = os.path.join(os.sep, "site-packages", "orbax", "checkpoint", "manager.py")
  kept = cli._OnlyOurInfo().filter
  assert kept(record("absl", logging.INFO, "step 8", ours))
  assert not kept(record("absl", logging.INFO, "saved step 8", library))
  assert kept(record("absl", logging.WARNING, "disk nearly full", library))
  assert not kept(record("asyncio", logging.ERROR, "Future exception was never retrieved",
                         library))
  assert kept(record("asyncio", logging.ERROR, "Task was destroyed but it is pending", library))
  assert kept(record("absl", logging.ERROR, "a value never retrieved", library))
