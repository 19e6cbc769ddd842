"""launch/gpu_check.sh: the whole check in its --smoke mode (so the script never rots), and its
one-line errors."""

import json
import os
import subprocess
import sys

import pytest

from alexnet_jax import gpu_check
from conftest import FASHION

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_smoke_mode_runs_every_phase_and_writes_the_report(tmp_path):
  out = tmp_path / "report"
  result = subprocess.run(["bash", os.path.join(ROOT, "launch", "gpu_check.sh"), "--smoke",
                           "--minutes", "8", "--out", str(out), "--fashion_mnist", FASHION],
                          env=dict(os.environ, PYTHON=sys.executable), capture_output=True,
                          text=True, cwd=tmp_path)
  assert result.returncode == 0, result.stderr[-2000:]
  report = json.loads((out / "report.json").read_text())
  phases = report["phases"]
  assert [e for phase in phases.values() for e in phase.get("errors", [])] == []
  assert {r["framework"].split()[0] for r in phases["step"]["records"]} == {"jax"}
  assert [r["lever"].split()[:2] for r in phases["step"]["levers"]] == [
      ["the", "step"], ["each", "column's"]]
  assert all(r["speedup"] > 0 for r in phases["step"]["levers"])
  assert {r["model"] for r in phases["input"]["records"]} == {"alexnet", "null"}
  # The loop in the order the goals need it: the config's input, nvImageCodec at the big
  # batch, the null model, reader threads, pinned staging, nvImageCodec, the null model big,
  # nvImageCodec big in the workers.
  assert len(phases["input"]["records"]) == 8
  assert [r["batch"] for r in phases["input"]["records"]] == [4, 8, 4, 4, 4, 4, 8, 8]
  assert [r["decoder"] for r in phases["input"]["records"]][:2] == ["simplejpeg", "nvimgcodec"]
  assert {r["decoder"] for r in phases["input"]["records"]} == {"simplejpeg", "nvimgcodec"}
  assert {r["decoded_on"] for r in phases["input"]["records"]} == {"host"}  # no GPU
  assert ["vs_pillow_1_thread" in r for r in phases["input"]["records"]] == [True] + [False] * 7
  assert phases["input"]["prepare"]["records"]["train"] == gpu_check.SMOKE.images
  assert len(phases["input"]["transfer"]) == 4 and all(
      r["gb_per_s"] > 0 for r in phases["input"]["transfer"])
  assert [r["max_abs_diff"] for r in phases["input"]["decode"]] == [0, 0, 0]
  if os.path.isdir(FASHION):
    assert phases["train"]["img_per_s"] > 0 and phases["train"]["accuracy_by_epoch"]
  assert phases["projection"]["hours_at_loop_speed"] > 0
  assert [g["goal"].split()[1:3] for g in report["goals"]] == [
      ["step", ">="], ["loop", "from"], ["loop", "with"], ["on", "the"],
      ["ImageNet", "epochs"],
      ["full", "network's"], ["full", "network"]]
  markdown = (out / "report.md").read_text()
  for heading in ("(a) The training step", "(b) The store and the loop",
                  "(c) The full network on Fashion-MNIST", "(d) 90 epochs", "## Goals"):
    assert heading in markdown
  assert sorted(os.listdir(out)) == ["report.json", "report.md"]


def test_a_bad_argument_is_one_line(tmp_path):
  result = subprocess.run(["bash", os.path.join(ROOT, "launch", "gpu_check.sh"), "--nope"],
                          capture_output=True, text=True, cwd=tmp_path)
  assert result.returncode == 2 and result.stderr.count("\n") == 1
  result = subprocess.run(["bash", os.path.join(ROOT, "launch", "gpu_check.sh"),
                           "--wheelhouse", str(tmp_path), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, cwd=tmp_path)
  assert result.returncode == 2 and "launch/wheelhouse.sh" in result.stderr


def test_a_mistyped_fashion_mnist_folder_is_one_line_before_any_phase(tmp_path):
  """It used to skip the training phase and end with "no errors"."""
  result = subprocess.run([sys.executable, "-m", "alexnet_jax.gpu_check", "--smoke",
                           f"--out={tmp_path}/o", f"--fashion_mnist={tmp_path}/fashon"],
                          capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert result.returncode == 2 and "holds no Fashion-MNIST" in result.stderr
  assert "Traceback" not in result.stderr and not (tmp_path / "o").exists()
