"""Benchmarks that print figures (one JSON line each); tests never assert on time.

  python -m alexnet_jax.benchmark input [--root=DIR] [--workers=N] [--seconds=S]
      The training input pipeline (decode, §2 rescale + centre crop, §4.1 random crop, flip,
      PCA lighting, batching) on an ImageFolder tree's train split, in-process (one reader
      thread: images/s per core) and with `mp_prefetch` worker processes; beside it, a plain
      PIL loop doing the same work. Without --root, generates 256x256-ish JPEGs first.
  python -m alexnet_jax.benchmark step --config=configs/paper.py [--batch=128]
      [--dtype=bfloat16|float32] [--steps=N]
      The jitted training step (forward, backward, the paper's SGD) on synthetic device data.
  python -m alexnet_jax.benchmark scaling --config=configs/tiny.py [--batch=16]
      Data-parallel scaling on 1, 2, 4, 8 CPU devices at a fixed per-device batch: step time
      and the bytes of every collective in the compiled step.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np
from absl import flags, logging

from alexnet_jax import cli

FLAGS = flags.FLAGS


def _emit(record: dict) -> None:
  print(json.dumps(record), flush=True)


# ----------------------------------------------------------------------------- input

def generate_jpegs(root: str, count: int, classes: int = 8, seed: int = 0) -> None:
  """`count` JPEGs of the "256x256-ish" kind (shorter side 256, aspect 1-1.33, either way up)
  with smooth content (upscaled noise: compresses like photographs, not like white noise)."""
  from PIL import Image

  rng = np.random.default_rng(seed)
  for i in range(count):
    longer = int(256 * rng.uniform(1.0, 1.33))
    size = (longer, 256) if i % 2 else (256, longer)
    small = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
    folder = os.path.join(root, "train", f"c{i % classes:03d}")
    os.makedirs(folder, exist_ok=True)
    Image.fromarray(small).resize(size, Image.BICUBIC).save(
        os.path.join(folder, f"{i:06d}.JPEG"), quality=90)


def _input_config(workers: int, threads: int):
  from configs import paper

  config = paper.get_config()
  config.data.update(dict(name="image_folder", batch_size=128, workers=workers,
                          read_threads=threads, prefetch=max(threads, 2)))
  return config


def _time_batches(batches, seconds: float, batch_size: int) -> float:
  it = iter(batches)
  for _ in range(3):  # warm-up: worker start, first reads
    next(it)
  start, n = time.perf_counter(), 0
  while time.perf_counter() - start < seconds:
    next(it)
    n += 1
  elapsed = time.perf_counter() - start
  if hasattr(it, "close"):
    it.close()
  return n * batch_size / elapsed


def plain_pil_loop(paths, seconds: float, size: int = 256, crop: int = 224) -> float:
  """The same work written the obvious way: open, RGB, resize, centre crop, random crop, flip,
  lighting; images/s on one core."""
  from PIL import Image

  rng = np.random.default_rng(0)
  scale = np.eye(3, dtype=np.float32)
  start, n = time.perf_counter(), 0
  while time.perf_counter() - start < seconds:
    with Image.open(paths[n % len(paths)]) as image:
      image = image.convert("RGB")
      w, h = image.size
      s = size / min(w, h)
      image = image.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BILINEAR)
      w, h = image.size
      image = image.crop(((w - size) // 2, (h - size) // 2, (w + size) // 2, (h + size) // 2))
      array = np.asarray(image)
    top, left = rng.integers(0, size - crop + 1, 2)
    patch = array[top:top + crop, left:left + crop]
    if rng.random() < 0.5:
      patch = patch[:, ::-1]
    np.ascontiguousarray(patch)
    scale @ rng.normal(0, 0.1, 3)
    n += 1
  return n / (time.perf_counter() - start)


def bench_input() -> None:
  from alexnet_jax.data import pipeline, sources
  from alexnet_jax.data.stats import Stats

  with tempfile.TemporaryDirectory() as tmp:
    root = FLAGS.root
    if not root:
      root = tmp
      generate_jpegs(root, FLAGS.generate)
    train, _ = sources.image_folder(root, "train")
    stats = Stats.imagenet_defaults(256)
    cores = os.cpu_count() or 1
    workers = FLAGS.workers or cores
    _emit({"bench": "input", "what": "plain PIL loop, 1 core",
           "img_per_s": round(plain_pil_loop(train.paths, FLAGS.seconds), 1)})
    for label, w, threads in (("pipeline, in-process, 1 reader thread", 0, 1),
                              (f"pipeline, {workers} mp_prefetch workers x 1 thread", workers, 1)):
      config = _input_config(w, threads)
      rate = _time_batches(pipeline.train_dataset(config, train, stats, 128), FLAGS.seconds, 128)
      _emit({"bench": "input", "what": label, "img_per_s": round(rate, 1),
             "img_per_s_per_worker": round(rate / max(w, 1), 1), "cpu_cores": cores,
             "images": len(train)})


# ----------------------------------------------------------------------------- step

# Dense peak FLOP/s by device kind and compute dtype, for the fraction-of-peak column.
PEAK_FLOPS = {("NVIDIA H100 80GB HBM3", "bfloat16"): 989e12,
              ("NVIDIA H100 80GB HBM3", "float32"): 494e12,  # TF32 tensor cores
              ("NVIDIA H200", "bfloat16"): 989e12, ("NVIDIA H200", "float32"): 494e12}


def _timed_step(config, batch_size: int, devices: int = 1):
  """(seconds per step, FLOPs per step, compiled HLO text) of the jitted training step on
  `devices` devices as a data-parallel mesh (batch sharded, parameters replicated)."""
  import jax
  import jax.numpy as jnp
  from flax import nnx
  from jax.sharding import NamedSharding, PartitionSpec as P

  from alexnet_jax import models, optim
  from alexnet_jax.sharding import DATA, make_mesh
  from alexnet_jax.steps import make_train_step

  mesh = make_mesh(data=devices, model=1)
  model = models.create_model(config.model, mesh=mesh, seed=0)
  graphdef, state = nnx.split(model)
  params = nnx.to_pure_dict(state)
  tx = optim.paper_sgd(config.optimizer.learning_rate)
  replicated, sharded = NamedSharding(mesh, P()), NamedSharding(mesh, P(DATA))
  step_fn = jax.jit(make_train_step(graphdef, tx, with_stats=False, pixel_scale=1.0),
                    in_shardings=(replicated, sharded, replicated, replicated),
                    out_shardings=(replicated, replicated), donate_argnums=0)
  size, c = config.model.input_size, config.model.in_channels
  key = jax.random.key(0)
  batch = jax.device_put({
      "image": jax.random.randint(key, (batch_size, size, size, c), 0, 256).astype(jnp.uint8),
      "label": jax.random.randint(key, (batch_size,), 0, config.model.num_classes),
      "crop": jnp.zeros((batch_size, 3), jnp.int32),
      "lighting": jnp.zeros((batch_size, c), jnp.float32)}, sharded)
  mean = jnp.full((size, size, c), 120.0, jnp.float32)
  state = {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": tx.init(params)}
  compiled = step_fn.lower(state, batch, key, mean).compile()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  flops = float((cost or {}).get("flops", 0.0))
  for _ in range(3):
    state, metrics = compiled(state, batch, key, mean)
  jax.block_until_ready(metrics)
  start = time.perf_counter()
  for _ in range(FLAGS.steps):
    state, metrics = compiled(state, batch, key, mean)
  jax.block_until_ready(metrics)
  return (time.perf_counter() - start) / FLAGS.steps, flops, compiled.as_text()


def bench_step(config) -> None:
  import jax

  if FLAGS.dtype:
    config.model.dtype = FLAGS.dtype
  batch_size = FLAGS.batch or config.data.batch_size
  seconds, flops, _ = _timed_step(config, batch_size)
  device = jax.devices()[0]
  achieved = flops / seconds
  peak = PEAK_FLOPS.get((device.device_kind, config.model.dtype))
  _emit({"bench": "step", "device": device.device_kind, "dtype": config.model.dtype,
         "batch": batch_size, "img_per_s": round(batch_size / seconds, 1),
         "ms_per_step": round(seconds * 1e3, 3), "tflop_per_s": round(achieved / 1e12, 3),
         "fraction_of_peak": round(achieved / peak, 4) if peak else None,
         "gflop_per_image": round(flops / batch_size / 1e9, 3)})


# ----------------------------------------------------------------------------- scaling

_COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "collective-permute", "all-to-all")
_BYTES = {"f32": 4, "bf16": 2, "f16": 2, "s32": 4, "u32": 4, "f64": 8, "s8": 1, "u8": 1, "pred": 1}


def collective_bytes(hlo_text: str) -> dict[str, int]:
  """Bytes each kind of collective produces per step, from the result shapes in the HLO."""
  totals = {}
  for line in hlo_text.splitlines():
    for op in _COLLECTIVES:
      if f" {op}(" in line or f" {op}-start(" in line:
        result = line.split("=", 1)[1].split(f" {op}", 1)[0]
        size = 0
        for dtype, dims in re.findall(r"([a-z]+[0-9]*)\[([0-9,]*)\]", result):
          size += _BYTES.get(dtype, 4) * math.prod(int(d) for d in dims.split(",") if d)
        totals[op] = totals.get(op, 0) + size
  return totals


def bench_scaling(config) -> None:
  """Data-parallel step time on 1, 2, 4, 8 CPU devices at a fixed per-device batch, with the
  collective bytes read from each compiled step (one child process per device count)."""
  if FLAGS.devices:  # the child: measure one point
    per_device = FLAGS.batch or 16
    seconds, _, hlo = _timed_step(config, per_device * FLAGS.devices, FLAGS.devices)
    _emit({"bench": "scaling", "devices": FLAGS.devices, "per_device_batch": per_device,
           "ms_per_step": round(seconds * 1e3, 2),
           "img_per_s": round(per_device * FLAGS.devices / seconds, 1),
           "collective_bytes": collective_bytes(hlo)})
    return
  for n in (1, 2, 4, 8):
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS=f"--xla_force_host_platform_device_count={n}")
    result = subprocess.run([sys.executable, "-m", "alexnet_jax.benchmark", "scaling",
                             f"--devices={n}", *sys.argv[2:]], env=env, capture_output=True,
                            text=True)
    if result.returncode:
      raise cli.UserError(f"scaling point {n} failed: {result.stderr.strip().splitlines()[-1]}")
    print(result.stdout.strip(), flush=True)


def main(argv):
  if len(argv) != 2 or argv[1] not in ("input", "step", "scaling"):
    raise cli.UserError("usage: python -m alexnet_jax.benchmark input|step|scaling [flags]")
  cli.log_our_info()
  logging.set_verbosity(logging.WARNING)
  if argv[1] == "input":
    bench_input()
    return
  if FLAGS.config is None:
    raise cli.UserError(f"{argv[1]} needs --config=configs/....py")
  (bench_step if argv[1] == "step" else bench_scaling)(FLAGS.config)


if __name__ == "__main__":
  from ml_collections import config_flags

  flags.DEFINE_string("root", "", "input: an ImageFolder root (ROOT/train/<class>/*)")
  flags.DEFINE_integer("generate", 1024, "input: JPEGs to generate when --root is not given")
  flags.DEFINE_integer("workers", 0, "input: mp_prefetch worker processes (0: one per CPU core)")
  flags.DEFINE_float("seconds", 10.0, "input: seconds to time each configuration")
  flags.DEFINE_integer("batch", 0, "batch size (0: the config's)")
  flags.DEFINE_enum("dtype", "", ["", "bfloat16", "float32"], "step: compute dtype (default: config)")
  flags.DEFINE_integer("steps", 50, "step, scaling: timed steps after warm-up")
  flags.DEFINE_integer("devices", 0, "scaling: measure this device count only (a child run)")

  config_flags.DEFINE_config_file("config", None, "training configuration file", lock_config=True)
  cli.run(main)
