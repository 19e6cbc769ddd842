"""Test set-up (8 CPU devices for the multi-device tests, forced before jax starts) and the
helpers several test files share: configs, the small training run, image trees."""

import atexit
import contextlib
import functools
import glob
import os
import shutil
import signal
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The tests train the same small networks many times over, in this process and in the ones it
# starts: one XLA compilation cache for the session compiles each program once (a cold suite
# spent most of its time compiling).
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  _xla_cache = tempfile.mkdtemp(prefix="alexnet_jax_tests_xla_")
  atexit.register(shutil.rmtree, _xla_cache, ignore_errors=True)
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _xla_cache
  os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
# XLA's CPU backend compiles without LLVM's optimisations here and in the processes the tests
# start: the suite's time is mostly spent compiling small networks, and every comparison is
# between programs compiled alike or against NumPy within a tolerance.
FAST_COMPILE = "--xla_backend_optimization_level=0"
for _flag in (FAST_COMPILE, "--xla_force_host_platform_device_count=8"):
  if _flag.split("=")[0] not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _flag).strip()

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from alexnet_jax import configuration, xla_flags  # noqa: E402

xla_flags.configure()  # as the entry points do, before jax starts its backends

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FASHION = "/usr/share/datasets/fashion-mnist"


def pytest_collection_modifyitems(items):
  """The slow end-to-end runs first: with parallel workers (`-n`, as launch/test.sh runs the
  suite) the long ones start at once and the short ones fill in around them, instead of a long
  one starting last and ending the suite alone."""
  items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def load_config(name: str, variant: str = "", overrides=()):
  """`--config=configs/<name>.py:variant --config.<override>...`, through the one loader."""
  spec = os.path.join(ROOT, "configs", f"{name}.py") + (f":{variant}" if variant else "")
  return configuration.load(spec, overrides)


@pytest.fixture
def drawn(monkeypatch):
  """The figures the code under test draws, kept open to be read: `plt.close(fig)` appends
  `fig` here instead of closing it."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  figures = []
  monkeypatch.setattr(plt, "close", figures.append)
  return figures


@pytest.fixture
def tiny_config():
  return load_config("tiny")


def small_config(epochs=2.0, ten_crop=False):
  """The tiny network on 64 synthetic 36x36 images: 4 steps of 16 per epoch; the final ten-crop
  evaluation (one more compilation) only when asked."""
  config = load_config("tiny")
  config.eval.ten_crop_final = ten_crop
  config.data.update(dict(name="synthetic", image_size=36, batch_size=16, eval_batch_size=16,
                          synthetic_train_size=64, synthetic_eval_size=40, pixel_scale=1 / 64))
  config.schedule.kind = "constant"
  config.num_epochs = epochs
  config.log_every_steps = 2
  config.stats_every_steps = 3
  config.checkpoint.update(dict(every_steps=2, keep=2))
  config.stall.check_steps = 4
  return config


def small_flags(epochs=2.0) -> list[str]:
  """`small_config(epochs)` as command-line flags: configs/tiny.py and the fields it changes."""
  tiny, small = (configuration.flat(c) for c in (load_config("tiny"), small_config(epochs)))
  return ["--config=configs/tiny.py"] + [f"--config.{k}={v}" for k, v in small.items()
                                         if tiny[k] != v]


@pytest.fixture(scope="session")
def straight_run(tmp_path_factory):
  """The small config trained for 8 steps, uninterrupted: (workdir, final eval). Read only."""
  from alexnet_jax import train

  workdir = str(tmp_path_factory.mktemp("straight"))
  result = train.train_and_evaluate(small_config(ten_crop=True), workdir)
  return workdir, result.evaluation


@contextlib.contextmanager
def compiled(caplog):
  """Yields a list that, when the block ends, holds jax's messages of the programs compiled
  within it."""
  import logging

  messages, start = [], len(caplog.records)
  with jax.log_compiles(True), caplog.at_level(logging.WARNING):
    yield messages
  messages += [r.getMessage() for r in caplog.records[start:] if "ompil" in r.getMessage()]


@contextlib.contextmanager
def sigterm_at_step(step: int):
  """Within the block, SIGTERM (a preemption) is sent to this process as the training loop
  reaches `step`."""
  from alexnet_jax import progress

  update = progress.Progress.update

  def preempted(self, at):
    update(self, at)
    if at == step:
      os.kill(os.getpid(), signal.SIGTERM)

  progress.Progress.update = preempted
  try:
    yield
  finally:
    progress.Progress.update = update


def saved_state(workdir, step):
  """The state a checkpoint holds, read with plain Orbax (no alexnet_jax code involved)."""
  import orbax.checkpoint as ocp

  return ocp.StandardCheckpointer().restore(os.path.join(workdir, "checkpoints", str(step),
                                                         "state"))


def damage_state(step_dir, how: str) -> None:
  """Damages the arrays of a checkpoint's state: each data file 'truncate'd to its first 32
  bytes (a write cut short; cut to half, a file holding every array could keep the
  parameters whole, which a parameters-only restore then read) or 'delete'd."""
  victims = [f for f in glob.glob(os.path.join(step_dir, "state", "**", "*"), recursive=True)
             if os.path.isfile(f) and os.path.getsize(f) > 64 and "ocdbt.process" in f]
  assert victims
  for path in victims:
    if how == "truncate":
      with open(path, "r+b") as f:
        f.truncate(32)
    else:
      os.remove(path)


def assert_same_params(workdir, straight_workdir, step=8):
  """The parameters of `workdir`'s checkpoint `step` are bitwise the straight run's."""
  jax.tree.map(np.testing.assert_array_equal, saved_state(workdir, step)["params"],
               saved_state(straight_workdir, step)["params"])


# ----------------------------------------------------------------------------- input

def ring_blocks(pid: int | None = None) -> set:
  """The /dev/shm blocks of the input rings of process `pid` (this one): another process's (a
  parallel test's) come and go meanwhile."""
  from alexnet_jax.data import ring

  prefix = ring.block_prefix(os.getpid() if pid is None else pid)
  return {name for name in os.listdir("/dev/shm") if name.startswith(prefix)}


def core_install_env(*extras: str) -> dict:
  """The environment of a process that sees only what `pip install alexnet_jax[extras]` would
  install: every other installed distribution's top-level modules hidden (the test extras',
  the export extra's, their dependencies': flatbuffers came with onnxruntime, and a core
  install's `export --format=stablehlo` failed for want of it). Read from pyproject.toml, so a
  dependency dropped there is missing here at once."""
  site = os.path.join(ROOT, "tests", "core_install_site")
  path = os.pathsep.join(p for p in (site, os.environ.get("PYTHONPATH", "")) if p)
  return {**os.environ, "PYTHONPATH": path, "ALEXNET_HIDDEN_MODULES": _hidden_modules(extras)}


@functools.cache
def _hidden_modules(extras: tuple) -> str:
  """The top-level modules of the installed distributions that the package's dependencies and
  `extras` do not require, directly or through others: a JSON list."""
  import json
  import re
  import tomllib
  from importlib import metadata

  from packaging.requirements import Requirement

  def name(n):
    return re.sub(r"[-_.]+", "-", n).lower()

  with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
    project = tomllib.load(f)["project"]
  wanted = [Requirement(r) for r in project["dependencies"]]
  wanted += [Requirement(r) for e in extras for r in project["optional-dependencies"][e]]
  kept = {name(project["name"])}
  while wanted:
    requirement = wanted.pop()
    if name(requirement.name) in kept:
      continue
    try:
      dist = metadata.distribution(requirement.name)
    except metadata.PackageNotFoundError:  # another platform's, or an extra not installed
      continue
    kept.add(name(requirement.name))
    for line in dist.requires or []:
      r = Requirement(line)
      if r.marker is None or any(r.marker.evaluate({"extra": e})
                                 for e in ("", *requirement.extras)):
        wanted.append(r)
  return json.dumps(sorted(module for module, dists in metadata.packages_distributions().items()
                           if not any(name(d) in kept for d in dists)))


def command(module: str, *args, cwd=ROOT, timeout=300, extras=()):
  """`python -m alexnet_jax.<module> ARGS` in a fresh process on the CPU, as an install of the
  package and `extras` has it (`core_install_env`): the finished process, output captured."""
  import subprocess
  import sys

  return subprocess.run([sys.executable, "-m", f"alexnet_jax.{module}", *map(str, args)],
                        cwd=cwd, capture_output=True, text=True, timeout=timeout,
                        env={**core_install_env(*extras), "XLA_FLAGS": FAST_COMPILE,
                             "JAX_PLATFORMS": "cpu"})


def build_input(config, **kw):
  """The input of a training config, as `train.train_and_evaluate` builds it (`kw`: the
  process's index and count, say)."""
  from alexnet_jax.data import pipeline

  m = config.model
  recorded = config.schedule.events if config.schedule.kind == "recorded" else ()
  return pipeline.build_input(config.data, crop=m.input_size, channels=m.in_channels,
                              num_classes=m.num_classes, seed=config.seed, events=recorded,
                              **kw)


def synthetic_config():
  config = load_config("tiny")
  config.data.update(dict(name="synthetic", image_size=36, batch_size=8, eval_batch_size=16,
                          synthetic_train_size=40, synthetic_eval_size=37))
  return config


def leaves_by_path(tree) -> dict:
  """A pytree's leaves by their path ("['conv1']['kernel']"), in the tree's order."""
  return {jax.tree_util.keystr(p): leaf for p, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def write_idx(path, array):
  """`array` as a gzip'd IDX file of unsigned bytes, Fashion-MNIST's format."""
  import gzip

  with gzip.open(path, "wb") as f:
    f.write(bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
            + np.asarray(array).astype(np.uint8).tobytes())


def save_image(path, array, fmt, mode=None):
  from PIL import Image

  image = Image.fromarray(array)
  if mode:
    image = image.convert(mode)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  image.save(path, format=fmt)


def image_folder_tree(root, seed=0):
  """ImageNet's oddities: JPEG, PNG, greyscale, CMYK, a PNG named .JPEG, sizes below and above
  256 in either orientation, and three unreadable files (truncated, text, empty)."""
  rng = np.random.default_rng(seed)
  rgb = lambda h, w: rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
  for split, per_class in (("train", 4), ("val", 2)):
    for c, name in enumerate(("n01", "n02", "n03")):
      folder = os.path.join(root, split, name)
      for i in range(per_class):
        kind = (c * per_class + i) % 5
        path = os.path.join(folder, f"{split}_{c}_{i}.JPEG")
        if kind == 0:
          save_image(path, rgb(300, 420), "JPEG")
        elif kind == 1:
          save_image(path, rgb(180, 120), "PNG")  # a PNG with a .JPEG name
        elif kind == 2:
          save_image(path, rgb(260, 260)[..., 0], "JPEG")  # greyscale
        elif kind == 3:
          save_image(path, rgb(400, 280), "JPEG", mode="CMYK")
        else:
          save_image(path[:-5] + ".png", rgb(64, 96), "PNG")
  bad = os.path.join(root, "train", "n02")
  save_image(os.path.join(bad, "truncated.JPEG"), rgb(300, 300), "JPEG")
  with open(os.path.join(bad, "truncated.JPEG"), "r+b") as f:
    f.truncate(200)
  with open(os.path.join(bad, "text.JPEG"), "w") as f:
    f.write("not an image")
  open(os.path.join(bad, "empty.jpg"), "wb").close()
  with open(os.path.join(bad, "notes.txt"), "w") as f:  # not an image extension: not listed
    f.write("ignored")
  with open(os.path.join(root, "val", "n03", "broken.jpg"), "wb") as f:
    f.write(b"\xff\xd8\xff\xe0 not really")
  return 12 + 3, 6  # train files listed (3 unreadable), val files


def folder_config(root):
  config = load_config("tiny")
  config.model.update(dict(num_classes=3, input_size=32))
  config.data.update(dict(name="image_folder", data_dir=str(root), image_size=36, batch_size=4,
                          eval_batch_size=4, read_threads=2))
  return config


def folder_run(root, workdir, **data):
  """`folder_config(root)` (with `data` settings) trained for one step into `workdir`, without
  the final ten-crop pass; its config."""
  from alexnet_jax import train

  config = folder_config(root)
  config.data.update(data)
  config.num_epochs = 1 / 3  # one step
  config.eval.ten_crop_final = False
  train.train_and_evaluate(config, str(workdir))
  return config


def sample_images(folder, n=5, seed=0):
  """`n` PNGs of a few sizes, in a class folder ('3') and another ('x'); their paths."""
  from PIL import Image

  rng = np.random.default_rng(seed)
  paths = []
  for i in range(n):
    path = os.path.join(folder, "3" if i % 2 else "x", f"im{i}.png")  # '3' is a class name
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (40 + 7 * i, 50, 3), dtype=np.uint8)).save(path)
    paths.append(path)
  return paths


def fixed_timing(monkeypatch, module):
  """`module.timed` (a benchmark's timing loop) calls once and reports 10 calls in 0.5 s of
  wall time and 0.25 s of CPU time, so that the rates a benchmark prints are known exactly."""
  real = module.timed

  def timed(call, seconds):
    real(call, 0.0, warm=1)
    return 0.5, 0.25, 10

  monkeypatch.setattr(module, "timed", timed)


def fixed_clock(monkeypatch, module, reading: str, every: float) -> None:
  """`module.time` replaced by a clock whose `reading` (`perf_counter`, `monotonic`) is `every`
  seconds later at each call, from 100 s (so that `t + start` is not `t - start`)."""
  import itertools
  import types

  clock = itertools.count(100.0, every)
  monkeypatch.setattr(module, "time", types.SimpleNamespace(**{reading: lambda: next(clock)}))


def process_state(pid: int) -> str | None:
  """The state letter of process `pid` in /proc (R, S, ..., Z: exited, not yet reaped); None
  when there is no such process."""
  try:
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
      return f.read().rsplit(")", 1)[1].split()[0]
  except OSError:
    return None
