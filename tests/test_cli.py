"""The command line (`cli.run`): every tool's bad flags, configs and arguments end in one line."""

import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT


def _run(module, *args, cwd=ROOT):
  return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True,
                        text=True, timeout=300,
                        env={**os.environ, "XLA_FLAGS": "", "JAX_PLATFORMS": "cpu"})


def _one_error_line(proc, message, status=2):
  assert proc.returncode == status, proc.stderr
  errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1 and re.search(message, errors[0]), proc.stderr
  assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("args,message", [
    (["--config.optimizer.learning_rat=0.1"], "Did you mean"),
    (["--config.model.columns=3"], "columns must be 2"),
    (["--config.data.data_dir=/nonexistent"], "Fashion-MNIST not found"),
    (["--config.schedule.kind=cosine"], "schedule.kind"),
    (["--config.optimizer.decay_on=kernals"], "decay_on must be one of all, kernels"),
    (["--config=configs/tinny.py", "--config.num_epochs=1"],
     "cannot load the config: .*No such file or directory"),
    (["extra"], "unexpected arguments: extra"),
])
def test_main_reports_config_errors_in_one_line(tmp_path, args, message):
  config = [] if any(a.startswith("--config=") for a in args) else [
      "--config=configs/fashion_mnist.py"]
  _one_error_line(_run("alexnet_jax.main", *config, f"--workdir={tmp_path}", *args), message)
