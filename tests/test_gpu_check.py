"""launch/gpu_check.sh: the whole check in its --smoke mode (so the script never rots), and its
one-line errors."""

import dataclasses
import json
import os
import subprocess
import sys

import pytest

from alexnet_jax import gpu_check
from conftest import FASHION, fixed_clock, process_state

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
    assert 0 < phases["train"]["evaluation_seconds"] < phases["train"]["seconds"]
    # Its profile: 2 steps after the first, each part of the host's time by name.
    profile = phases["train"]["profile"]
    assert profile["steps"] == 2 and profile["step_ms"] > 0
    assert sorted(profile["host_ms"]) == sorted(("input_wait", "dispatch", "device_wait",
                                                 "metrics", "checkpoint", "host_batch",
                                                 "transfer"))
    assert profile["host_ms"]["dispatch"] > 0 and profile["host_ms"]["transfer"] > 0
  # End to end: the loop's evaluation and checkpoint saves timed too (mutations: either's
  # figures left out of its record -> red).
  assert phases["projection"]["hours_end_to_end"] > phases["projection"]["hours_at_loop_speed"] > 0
  assert phases["projection"]["untimed"] == [] and phases["projection"]["checkpoint_hours"] >= 0
  assert [g["goal"].split()[1:3] for g in report["goals"]] == [
      ["step", ">="], ["loop", "from"], ["loop", "with"], ["on", "the"],
      ["ImageNet", "epochs"],
      ["full", "network's"], ["full", "network"], ["loop's", "main"], ["training", "batches"]]
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
  result = subprocess.run(["bash", os.path.join(ROOT, "launch", "gpu_check.sh"), "--minutes"],
                          capture_output=True, text=True, cwd=tmp_path)
  assert result.returncode == 2 and result.stderr == (
      "gpu_check.sh: --minutes needs a value (--help lists the arguments)\n")


def test_a_python_without_the_dependencies_is_one_line_and_leaves_no_report_folder(tmp_path):
  """It ended in a ModuleNotFoundError traceback. Mutation: the look-up dropped -> red."""
  bare = tmp_path / "python"  # this Python without its site-packages
  bare.write_text(f"#!/bin/sh\nexec {sys.executable} -S \"$@\"\n")
  bare.chmod(0o755)
  result = subprocess.run(["bash", os.path.join(ROOT, "launch", "gpu_check.sh"), "--smoke"],
                          capture_output=True, text=True, cwd=tmp_path,
                          env=dict(os.environ, PYTHON=str(bare)))
  assert result.returncode == 2, result.stderr
  assert result.stderr.startswith(f"gpu_check.sh: {bare} lacks absl jax flax optax ")
  assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
  assert sorted(os.listdir(tmp_path)) == ["python"]


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
                    "--config.profile.steps=20", "--config.data.data_dir=/fm"]]
  assert phase["img_per_s"] == 4000.0 and phase["loss_at_epoch_1"] == 1.5
  assert phase["accuracy_by_epoch"] == [{"epoch": 1.0, "accuracy": 90.0},
                                        {"epoch": 2.0, "accuracy": 100.0}]
  assert phase["errors"] == [] and phase["config"] == "configs/fashion_mnist_full.py"
  monkeypatch.setattr(gpu_check, "_child", lambda *a: ([], "timed out after 5 s"))
  cut = gpu_check.phase_train(gpu_check.GPU, "/fm", str(tmp_path / "none"), 0.0, print)
  assert cut["errors"] == ["timed out after 5 s"] and cut["img_per_s"] is None
  assert cut["loss_at_epoch_1"] is None and cut["accuracy_by_epoch"] == []
  assert cut["profile"] is None  # no trace written


def _planned(monkeypatch, installed, fail=()):
  """`gpu_check._child` replaced by one that records each command (the module it starts and
  its arguments) and answers a record of its kind, or `fail`'s error for a command holding
  one of `fail`'s words; `installed`: the optional modules found."""
  from importlib import util

  from alexnet_jax.data import samples

  real = util.find_spec
  monkeypatch.setattr(util, "find_spec", lambda name, *a: (
      object() if name in installed else None if name in (
          "torch", "nvidia.nvimgcodec", "skimage") else real(name, *a)))
  made = []
  for name in ("generate_imagenet_like", "generate_jpegs"):
    monkeypatch.setattr(samples, name, lambda root, count, classes, seed=0, split="train",
                        name=name: made.append((name, count, classes, split)) or {"kb": 110})
  commands = []

  def child(argv, deadline, log):
    commands.append(argv)
    failed = [word for word in fail if word in argv]
    if failed:
      return [], f"{failed[0]} failed"
    if argv[0] == "alexnet_jax.data.prepare":
      return [{"records": {"train": 2500}}], None
    return [{"bench": argv[1], "n": len(commands)}], None

  monkeypatch.setattr(gpu_check, "_child", child)
  return commands, made


def test_the_gpu_nodes_step_phase_runs_each_case_with_torch_and_the_levers_once(monkeypatch):
  """(a) at the GPU's sizes: each batch and dtype against PyTorch where it is installed, the
  levers (their own XLA flags) after the first; a failed case is named and the others run.
  Mutations: torch asked for without PyTorch, or the levers run for every case -> red."""
  commands, _ = _planned(monkeypatch, {"torch"}, fail=("--dtype=float32",))
  phase = gpu_check.phase_step(gpu_check.GPU, 0.0, print)
  step = ["--config=configs/paper.py", "--batch=128", "--dtype=bfloat16", "--steps=100"]
  assert commands[:2] == [["alexnet_jax.benchmark", "step", *step, "--compare_torch"],
                          ["alexnet_jax.benchmark", "levers", *step]]
  assert [(c[1], c[3], c[4]) for c in commands[2:]] == [
      ("step", "--batch=512", "--dtype=bfloat16"), ("step", "--batch=128", "--dtype=float32"),
      ("step", "--batch=512", "--dtype=float32")]
  assert all(c[-1] == "--compare_torch" for c in commands if c[1] == "step")
  assert len(phase["records"]) == 2 and phase["levers"] == [{"bench": "levers", "n": 2}]
  assert phase["errors"] == ["batch 128 float32: --dtype=float32 failed",
                             "batch 512 float32: --dtype=float32 failed"]
  commands.clear()
  monkeypatch.setattr(gpu_check.importlib.util, "find_spec", lambda name, *a: None)
  gpu_check.phase_step(gpu_check.GPU, 0.0, print)
  assert not any("--compare_torch" in c for c in commands)
  commands.clear()  # the smoke test's levers: no XLA flag (an empty list), the lever asked
  gpu_check.phase_step(gpu_check.SMOKE, 0.0, print)
  assert commands[1][-1] == "--xla_flags="
  commands.clear()
  gpu_check.phase_step(dataclasses.replace(gpu_check.SMOKE, lever_flags=("--a=1", "--b")),
                       0.0, print)
  assert commands[1][-2:] == ["--xla_flags=--a=1", "--xla_flags=--b"]


def test_the_gpu_nodes_input_phase_runs_the_loop_in_the_order_the_goals_need(monkeypatch,
                                                                              tmp_path):
  """(b) at the GPU's sizes with nvImageCodec and scikit-image's photographs installed: the
  photographs and their store, then the loop as the goals need it (the Pillow yardstick in
  the first only), the ways of crossing and of decoding each in its own list; without
  nvImageCodec its four commands are left out; a failed command is named by its variant."""
  commands, made = _planned(monkeypatch, {"nvidia.nvimgcodec", "skimage"},
                            fail=("--null_model",))
  fixed_clock(monkeypatch, gpu_check, "monotonic", 5.0)  # each reading 5 s after the last
  phase = gpu_check.phase_input(gpu_check.GPU, str(tmp_path), 0.0, print)
  assert made == [("generate_imagenet_like", 2500, 1000, "train"),
                  ("generate_imagenet_like", 1000, 1000, "val")]
  assert phase["images"] == {"count": 2500, "seconds": 5.0, "kb": 110,
                             "kind": "ImageNet-like crops of real photographs"}
  # The store holds the training images and a tenth as many for validation.
  assert phase["prepare"] == {"seconds": 5.0, "img_per_s": 550.0, "records": {"train": 2500}}
  assert commands[0][:2] == ["alexnet_jax.data.prepare", "--config=configs/paper.py"]
  end2end = commands[1]
  assert end2end == ["alexnet_jax.benchmark", "end2end", "--config=configs/paper.py",
                     "--source=jpeg", f"--root={tmp_path}/images", "--prepared",
                     f"--store={tmp_path}/store", "--batch=128", "--dtype=bfloat16",
                     "--steps=200"]  # with the Pillow yardstick
  variants = [c[len(end2end):] if c[1] == "end2end" else c[1] for c in commands[2:]]
  assert variants == [
      ["--batch=512", "--decoder=nvimgcodec", "--pillow_seconds=0"],
      ["--null_model", "--pillow_seconds=0"], "transfer", "decode",
      ["--config.data.workers=0", "--pillow_seconds=0"],
      ["--config.data.transfer=pinned", "--pillow_seconds=0"],
      ["--decoder=nvimgcodec", "--pillow_seconds=0"],
      ["--batch=512", "--null_model", "--pillow_seconds=0"],
      ["--batch=512", "--decoder=nvimgcodec", "--config.data.decode_on=host",
       "--pillow_seconds=0"]]
  assert [r["bench"] for r in phase["transfer"]] == ["transfer"]
  assert [r["bench"] for r in phase["decode"]] == ["decode"]
  assert len(phase["records"]) == 6 and {r["bench"] for r in phase["records"]} == {"end2end"}
  assert phase["errors"] == ["end2end --null_model --pillow_seconds=0: --null_model failed",
                             "end2end --batch=512 --null_model --pillow_seconds=0: "
                             "--null_model failed"]

  commands.clear()
  made.clear()
  monkeypatch.setattr(gpu_check.importlib.util, "find_spec", lambda name, *a: None)
  phase = gpu_check.phase_input(gpu_check.GPU, str(tmp_path), 0.0, print)
  assert made[0][0] == "generate_jpegs" and phase["images"]["kind"].startswith("smooth")
  assert [c[1] for c in commands[1:]] == ["end2end", "end2end", "transfer", "end2end",
                                          "end2end", "end2end"]
  assert not any("nvimgcodec" in " ".join(c) for c in commands)
