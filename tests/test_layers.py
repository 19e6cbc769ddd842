"""The architecture as written down in pyproject.toml, checked: import-linter's layer contracts
(no module imports a layer above its own, so no import circle) and ruff's rule set. A change
that breaks a layer is red here, not a review finding."""

import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT


def _tool(name):
  found = shutil.which(name, path=os.path.dirname(sys.executable)) or shutil.which(name)
  if found is None:
    pytest.fail(f"{name} is not installed: the test extra installs it (launch/test.sh)")
  return found


def test_the_layers_hold():
  """Mutation: `from alexnet_jax import cli` added to data/stats/__init__.py -> red."""
  proc = subprocess.run([_tool("lint-imports"), "--no-cache"], cwd=ROOT, capture_output=True,
                        text=True, timeout=300)
  assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
  assert "Contracts: 2 kept, 0 broken" in proc.stdout


def test_ruff_finds_nothing():
  """Mutation: an unused import added to a module -> red."""
  proc = subprocess.run([_tool("ruff"), "check", "alexnet_jax", "tests", "--output-format",
                         "concise"], cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
