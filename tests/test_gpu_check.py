"""launch/gpu_check.sh: the whole check in its --smoke mode (so the script never rots), and the
goals and projection it reads off a report."""

import json
import os
import subprocess
import sys

import pytest

from alexnet_jax import gpu_check
from conftest import FASHION

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _report(step_img_per_s=36000.0, compile_img_per_s=18000.0, loop_img_per_s=4500.0,
            big_img_per_s=40000.0, grey=2):
  return {"loop_batch": 128, "loop_big_batch": 512, "phases": {
      "step": {"records": [
          {"framework": "jax 0.11.2", "dtype": "bfloat16", "batch": 512, "img_per_s": 1.0},
          {"framework": "jax 0.11.2", "dtype": "bfloat16", "batch": 128,
           "img_per_s": step_img_per_s},
          {"framework": "torch 2.11 eager", "dtype": "bfloat16", "batch": 128,
           "img_per_s": 9000.0, "jax_speedup": step_img_per_s / 9000.0},
          {"framework": "torch 2.11 compile", "dtype": "bfloat16", "batch": 128,
           "img_per_s": compile_img_per_s, "jax_speedup": step_img_per_s / compile_img_per_s}]},
      "input": {"records": [
          {"bench": "end2end", "model": "alexnet", "batch": 512, "decoder": "simplejpeg",
           "img_per_s": 1.0},
          {"bench": "end2end", "model": "alexnet", "batch": 128, "decoder": "simplejpeg",
           "img_per_s": loop_img_per_s},
          {"bench": "end2end", "model": "null", "batch": 128, "img_per_s": 99999.0},
          {"bench": "end2end", "model": "alexnet", "batch": 512, "decoder": "nvimgcodec",
           "decoded_on": "host", "img_per_s": 2.0 * big_img_per_s},
          {"bench": "end2end", "model": "alexnet", "batch": 512, "decoder": "nvimgcodec",
           "decoded_on": "device", "img_per_s": big_img_per_s}],
          "decode": [
              {"way": "nvImageCodec CPU backend, one thread (the input workers')",
               "device": "NVIDIA H200", "max_abs_diff": 0},
              {"way": "nvImageCodec in the training process on NVIDIA H200",
               "device": "NVIDIA H200", "max_abs_diff": grey}]},
      "train": {"loss_at_epoch_1": 0.45,
                "accuracy_by_epoch": [{"epoch": 1.0, "accuracy": 70.0},
                                      {"epoch": 2.0, "accuracy": 80.0}]}}}


def test_goals_read_the_batch_128_bf16_step_against_torch_compile_and_the_loop():
  """Mutations: the loop's record found at any batch (the first, batch 512's) -> red; the
  nvImageCodec goal read off the default decoder's record, or off the workers' decoding ->
  red; the grey levels read off the workers' way -> red."""
  speedup, loop, big, grey, hours, first_epoch, fashion = gpu_check.goals(_report())
  assert (speedup["measured"], speedup["met"]) == (2.0, True)
  assert (loop["measured"], loop["met"]) == (0.125, False)
  assert (big["measured"], big["met"]) == (40000.0, False)
  assert (grey["measured"], grey["met"]) == (2, False)
  assert (hours["measured"], hours["met"]) == (round(90 * 1_281_167 / 4500 / 3600, 2), False)
  assert (first_epoch["measured"], first_epoch["met"]) == (0.45, True)
  assert (fashion["measured"], fashion["met"]) == (80.0, None)  # 2 epochs of 30: not judged
  assert "ended at epoch 2.0" in fashion["note"]
  speedup, loop, big, grey, hours, _, _ = gpu_check.goals(
      _report(compile_img_per_s=20000.0, loop_img_per_s=33000.0, big_img_per_s=46000.0,
              grey=1))
  assert (speedup["met"], loop["met"], big["met"], grey["met"], hours["met"]) == (
      False, True, True, True, True)
  on_cpu = _report()
  on_cpu["phases"]["input"]["decode"][1]["device"] = "cpu"  # no GPU: not judged
  assert gpu_check.goals(on_cpu)[3]["met"] is None
  report = _report()
  report["phases"]["input"]["records"][1]["of_step"] = 0.93  # the step timed beside the loop
  assert gpu_check.goals(report)[1]["measured"] == 0.93
  report["phases"]["train"] = {"loss_at_epoch_1": 2.3026, "accuracy_by_epoch": [
      {"epoch": 30.0, "accuracy": 94.2}]}
  *_, first_epoch, fashion = gpu_check.goals(report)
  assert first_epoch["met"] is False and fashion["met"] is True


def test_projection_is_90_imagenet_epochs_at_each_rate():
  projection = gpu_check.projection(_report(step_img_per_s=36000.0, loop_img_per_s=4500.0))
  assert projection["hours_at_step_speed"] == round(90 * 1_281_167 / 36000 / 3600, 2)
  assert projection["hours_at_loop_speed"] == round(90 * 1_281_167 / 4500 / 3600, 2)
  empty = gpu_check.projection({"loop_batch": 128, "phases": {}})
  assert empty["hours_at_step_speed"] is None


@pytest.mark.slow
def test_smoke_mode_runs_every_phase_and_writes_the_report(tmp_path):
  out = tmp_path / "report"
  result = subprocess.run(["bash", os.path.join(ROOT, "launch", "gpu_check.sh"), "--smoke",
                           "--minutes", "4", "--out", str(out), "--fashion_mnist", FASHION],
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
