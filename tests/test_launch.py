"""The set-up scripts as a fresh machine runs them (launch/setup.sh, sourced by run.sh and
test.sh), with a stand-in interpreter: what the install prints, and a failed install."""

import os
import subprocess

from conftest import ROOT

BANNER = "BuildBackendWarning: Editable installation."


def _venv(tmp_path, status):
  """A virtualenv whose python prints the editable-install banner and exits with `status`."""
  python = tmp_path / "venv" / "bin" / "python"
  python.parent.mkdir(parents=True)
  python.write_text(f"#!/bin/sh\necho '{BANNER}' >&2\nexit {status}\n")
  python.chmod(0o755)
  return tmp_path / "venv"


def _setup(venv):
  return subprocess.run(["bash", "-c", f"source {ROOT}/launch/setup.sh test && echo sourced"],
                        capture_output=True, text=True, timeout=120,
                        env={**os.environ, "ALEXNET_VENV": str(venv)})


def test_a_good_install_prints_nothing_of_pip_or_the_build_backend(tmp_path):
  """Mutation: the install's output not sent to the log -> red (the banner on every run.sh)."""
  proc = _setup(_venv(tmp_path, 0))
  assert proc.returncode == 0 and proc.stdout.strip().endswith("sourced"), proc.stderr
  assert BANNER not in proc.stdout + proc.stderr


def test_a_failed_install_shows_its_log_and_one_error_line(tmp_path):
  proc = _setup(_venv(tmp_path, 1))
  assert proc.returncode == 1 and "sourced" not in proc.stdout
  assert BANNER in proc.stderr and proc.stderr.strip().splitlines()[-1].startswith(
      "error: installing alexnet_jax into")
