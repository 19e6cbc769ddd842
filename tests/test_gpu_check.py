"""launch/gpu_check.sh: the whole check in its --smoke mode (so the script never rots), and its
one-line errors."""

import json
import os
import subprocess
import sys

import pytest

from alexnet_jax import gpu_check
from conftest import FASHION, process_state

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


def test_a_child_past_its_phases_deadline_is_killed_with_its_process_group():
  """What it printed before is kept; its own children end with it. Mutations: only the child
  killed, not its process group; the time left not checked -> red."""
  import time

  said = []
  records, error = gpu_check._child(
      ["alexnet_jax.benchmark", "--help"], time.monotonic() + 0.5, said.append)
  assert (records, error) == ([], "no time left in this phase's share") and len(said) == 1
  script = ("import json, subprocess, sys, time; "
            "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
            "print(json.dumps({'worker': p.pid}), flush=True); time.sleep(60)")
  start = time.monotonic()
  records, error = gpu_check._child(["timeit", "-n", "1", script], time.monotonic() + 3,
                                    said.append)
  assert error == "timed out after 3 s" and time.monotonic() - start < 30
  assert said[-1].endswith(script) and len(records) == 1
  deadline = time.monotonic() + 10  # the worker gone (or a zombie waiting for init)
  while process_state(records[0]["worker"]) not in (None, "Z", "X"):
    assert time.monotonic() < deadline, "the timed-out child's own worker outlived it"
    time.sleep(0.1)


def test_the_training_phase_reads_the_runs_curve(tmp_path, monkeypatch):
  """(c)'s figures from the run's metrics: the steady img/s without the first interval (which
  compiles), the last training loss within epoch 1, the accuracy at each evaluation.
  Mutations: the first interval kept; `epoch <= 1.0` -> `< 1.0`; accuracy as the error -> red."""
  from alexnet_jax import metrics

  asked = []

  def run(argv, deadline, log):
    asked.append(argv)
    workdir = next(a.split("=", 1)[1] for a in argv if a.startswith("--workdir="))
    with metrics.MetricWriter(workdir) as writer:
      for step, loss, rate in ((100, 2.3, 1000.0), (200, 1.5, 3000.0), (300, 0.9, 5000.0),
                               (400, 0.5, 4000.0)):
        writer.write(step, "train", {"epoch": step / 200, "loss": loss, "img_per_s": rate})
        if step % 200 == 0:
          writer.write(step, "eval", {"top1_error": 0.1 * (4 - step // 100) / 2})
    return [], None

  monkeypatch.setattr(gpu_check, "_child", run)
  phase = gpu_check.phase_train(gpu_check.GPU, "/fm", str(tmp_path), 0.0, print)
  assert asked == [["alexnet_jax.main", "--config=configs/fashion_mnist_full.py",
                    f"--workdir={tmp_path}/fashion_mnist", "--config.eval.ten_crop_final=false",
                    "--config.data.data_dir=/fm"]]
  assert phase["img_per_s"] == 4000.0 and phase["loss_at_epoch_1"] == 1.5
  assert phase["accuracy_by_epoch"] == [{"epoch": 1.0, "accuracy": 90.0},
                                        {"epoch": 2.0, "accuracy": 100.0}]
  assert phase["errors"] == [] and phase["config"] == "configs/fashion_mnist_full.py"
  monkeypatch.setattr(gpu_check, "_child", lambda *a: ([], "timed out after 5 s"))
  cut = gpu_check.phase_train(gpu_check.GPU, "/fm", str(tmp_path / "none"), 0.0, print)
  assert cut["errors"] == ["timed out after 5 s"] and cut["img_per_s"] is None
  assert cut["loss_at_epoch_1"] is None and cut["accuracy_by_epoch"] == []
