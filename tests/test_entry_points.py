"""Every command as a user starts it: `python -m alexnet_jax.X` in a fresh process, its `--help`
(status 0) and one tiny real invocation each. A library call does not show that a command works:
the ablate CLI validated its file-name `--config` as a config and ended in a traceback."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, command, small_flags

MODULES = ["main", "predict", "evaluate", "features", "visualize", "export", "convert",
           "ablate", "benchmark", "layer_shapes", "data.prepare", "data.stats", "gpu_check",
           "diagnose"]

SMALL = [f[len("--config."):] for f in small_flags(epochs=1.0) if f.startswith("--config.")]


def run(module, *args, cwd=ROOT, timeout=300, extras=()):
  """`python -m alexnet_jax.<module> ARGS` as a user runs it, with what an install of the
  package (and `extras`) has and nothing more: status 0 and no traceback."""
  proc = command(module, *args, cwd=cwd, timeout=timeout, extras=extras)
  assert proc.returncode == 0, f"{module} {args}: {proc.returncode}\n{proc.stderr[-3000:]}"
  assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
  assert "\\u00" not in proc.stdout, proc.stdout[-3000:]  # JSON lines print § and ε as they are
  return proc


@pytest.mark.parametrize("module", MODULES)
def test_help_exits_0_and_shows_the_usage(module):
  """A tool that restores a checkpoint lists --workdir, --step and --best as its own flags;
  Figure 1's study reaches 25 % training error unless told otherwise. Mutations:
  `define_restore_flags` filing them under `sys.argv[1]`; the threshold's default 0.5 -> red."""
  proc = run(module, "--help")
  assert f"python -m alexnet_jax.{module}" in proc.stdout, proc.stdout[:500]
  assert "--" in proc.stdout.split("flags:")[-1]
  if module in ("predict", "features", "visualize", "export", "evaluate"):
    for flag in ("--workdir", "--step", "--[no]best"):
      assert flag in proc.stdout, (module, flag)
  if module == "ablate":
    assert "(Figure 1: 25 %)\n    (default: '0.25')" in proc.stdout


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """`python -m alexnet_jax.main` on the small synthetic set-up: the run every tool reads."""
  workdir = tmp_path_factory.mktemp("main")
  proc = run("main", *small_flags(epochs=1.0), f"--workdir={workdir}")
  assert "trained to step 4 of 4" in proc.stdout + proc.stderr
  return workdir


def test_a_resume_reads_as_a_resume(trained, tmp_path):
  """No library noise that looks like damage (Orbax warned of a missing metadata file on every
  resume); the resumed steps profiled as asked. Mutations: the shapes read through a
  StandardCheckpointer again; `profile` left out of the loop -> red."""
  import shutil

  workdir = tmp_path / "resumed"
  shutil.copytree(trained, workdir)
  proc = run("main", *small_flags(epochs=1.5), f"--workdir={workdir}",
             "--config.profile.steps=1", "--config.profile.skip_steps=0")
  assert "trained to step 6 of 6" in proc.stdout
  assert "does not exist" not in proc.stderr, proc.stderr[-2000:]
  assert "profile of steps 5-5 written to" in proc.stderr
  assert len(list(workdir.glob("tensorboard/plugins/profile/*/perfetto_trace.json.gz"))) == 1


@pytest.fixture(scope="module")
def images(tmp_path_factory):
  folder = tmp_path_factory.mktemp("images")
  rng = np.random.default_rng(0)
  for i in range(2):
    Image.fromarray(rng.integers(0, 255, (40, 50, 3), np.uint8)).save(folder / f"im{i}.png")
  return folder


def test_inference_tools_on_a_trained_workdir(trained, images, tmp_path):
  # The least asked, and the workdir relative to where the command runs (Orbax refused that
  # path, and every checkpoint read as damaged). Mutation: `RunDir`'s root kept as given -> red.
  out = run("predict", f"--workdir={trained.name}", "--topk=1", images,
            cwd=trained.parent).stdout
  assert out.startswith("checkpoint: ") and out.count("\n  0.") + out.count("\n  1.") == 2
  line = json.loads(run("evaluate", f"--workdir={trained}").stdout.splitlines()[-1])
  assert 0 <= line["top1_accuracy"] <= 100 and line["step"] == 4
  line = json.loads(run("evaluate", f"--workdir={trained}", "--workdir", trained,
                        "--step=2").stdout.splitlines()[0])
  assert line["step"] == 2  # each workdir's --step (mutation: the flag not passed on -> red)
  run("features", f"--workdir={trained}", "--split=eval", f"--output={tmp_path}/f.npz",
      cwd=tmp_path)
  with np.load(tmp_path / "f.npz") as f:
    assert f["features"].shape[0] == 40
  assert not (tmp_path / "neighbors.png").exists()  # no search unless asked
  # The image files given and those below a folder given are the queries, each with its one
  # nearest training image. Mutations: `argv[2:]`; the search skipped or refused at one
  # neighbour; the folder not expanded (it was "unreadable (not a regular file)") -> red.
  out = run("features", f"--workdir={trained}", "--neighbors=1", f"--grid={tmp_path}/nn.png",
            images / "im1.png", images).stdout.splitlines()
  found = [line.split(": ", 1) for line in out if ": #" in line]
  assert [(name, hit.count("#")) for name, hit in found] == [
      (str(images / name), 1) for name in ("im1.png", "im0.png", "im1.png")]
  assert (tmp_path / "nn.png").exists()
  run("visualize", "kernels", f"--workdir={trained}", f"--output={tmp_path}/k.png")
  run("export", f"--workdir={trained}", "--format=stablehlo", f"--output={tmp_path}/m.stablehlo")
  assert (tmp_path / "m.stablehlo").stat().st_size > 0 and (tmp_path / "m.stablehlo.md").exists()


def test_convert_writes_a_workdir_predict_reads(tmp_path, images):
  from alexnet_jax import model_spec
  from conftest import load_config
  from test_convert import NARROW, random_caffe_weights, write_caffemodel

  spec = model_spec.AlexNetSpec.from_config(load_config("caffe_alexnet", "", NARROW).model)
  write_caffemodel(tmp_path / "narrow.caffemodel", random_caffe_weights(spec), v1=False)
  # Without --config, from another directory than the repository's: its default is the
  # packaged config (mutation: the default left as the relative path -> "cannot load the
  # config" -> red).
  run("convert", "caffe", f"--caffemodel={tmp_path}/narrow.caffemodel",
      f"--workdir={tmp_path}/w", *[f"--config.{o}" for o in NARROW], cwd=tmp_path)
  # Its one checkpoint is step 0, which --step names. Mutation: --step's lower bound 1 -> red.
  assert run("predict", f"--workdir={tmp_path}/w", "--step=0",
             images).stdout.count("\n  0.") == 10


@pytest.mark.slow
def test_ablate_and_its_studies(tmp_path):
  overrides = [f"--override={o}" for o in SMALL + ["num_epochs=0.5", "eval.ten_crop_final=False"]]
  common = ["--config=configs/tiny.py", f"--workdir={tmp_path}", "--seeds=1", *overrides]
  # Two ablations: the baseline's network, and the same network reading other input (compiled
  # once for the two).
  table = run("ablate", *common, "--ablations=lrn,pca_lighting").stdout
  assert "| no LRN | §3.3 |" in table and "| no PCA lighting | §4.1 |" in table
  run("ablate", "figure1", *common, "--lrs=0.01", "--log_every=1")
  assert (tmp_path / "figure1" / "figure1.md").exists()
  run("ablate", "precision", *common, "--log_every=1")
  assert (tmp_path / "precision" / "precision.md").exists()
  run("ablate", "columns", *common)
  assert (tmp_path / "columns.md").exists()


@pytest.mark.slow
def test_the_small_tools(tmp_path):
  from conftest import image_folder_tree

  assert "total params:" in run("layer_shapes", "--config=configs/tiny.py").stdout
  verdict = run("diagnose", "--config=configs/tiny.py", "--config.data.name=synthetic",
                "--config.data.image_size=36", "--images=4").stdout.splitlines()[-1]
  assert verdict.startswith("verdict: ")
  step = json.loads(run("benchmark", "step", "--config=configs/tiny.py", "--batch=8",
                        "--steps=2", "--dtype=bfloat16").stdout.splitlines()[-1])
  assert step["bench"] == "step" and step["batch"] == 8 and step["ms_per_step"] > 0
  assert step["dtype"] == "bfloat16"
  point = json.loads(run("benchmark", "scaling", "--config=configs/tiny.py", "--devices=1",
                         "--batch=2", "--steps=1").stdout.splitlines()[-1])
  assert point["mesh"] == {"data": 1, "model": 1} and point["global_batch"] == 2
  ways = [json.loads(line)["way"] for line in run(
      "benchmark", "transfer", "--config=configs/tiny.py", "--batch=8",
      "--seconds=0.05").stdout.splitlines()]
  assert len(ways) == 4 and "fields, pageable host memory" in ways
  decoded = [json.loads(line) for line in run(
      "benchmark", "decode", "--config=configs/tiny.py", "--generate=8", "--batch=4",
      "--seconds=0.05", extras=("nvimgcodec",)).stdout.splitlines()]
  assert [r["max_abs_diff"] for r in decoded] == [0, 0, 0]
  rows = [json.loads(line) for line in run(
      "benchmark", "input", "--generate=8", "--workers=1", "--seconds=0.05", "--quality=80",
      "--chroma=444").stdout.splitlines()]
  assert rows[0]["photographs"] and rows[1]["what"] == "prepare (§2 form, JPEG quality 80, 444)"
  assert rows[-1]["what"] == "hand-over CPU, grain's / reused shared memory"
  assert [row["workers"] for row in rows if "workers" in row] == [1]  # --workers: the most
  image_folder_tree(tmp_path / "tree")
  data = ["--config=configs/tiny.py", "--config.data.name=image_folder",
          f"--config.data.data_dir={tmp_path}/tree", "--config.model.num_classes=3"]
  assert "images: 2\n" in run("data.stats", *data, f"--output={tmp_path}/stats.npz",
                               "--max_images=2").stdout
  with np.load(tmp_path / "stats.npz") as f:
    assert f["mean"].shape[-1] == 3
  run("data.prepare", *data, "--workers=1", "--shard_size=4")
  shards = sorted(name for _, _, files in os.walk(tmp_path / "tree") for name in files
                  if name.endswith(".array_record"))
  assert shards[0] == "train-00000-of-00004.array_record"  # 15 files, at most 4 a shard
  assert shards[-1] == "val-00001-of-00002.array_record"
