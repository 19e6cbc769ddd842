"""Benchmarks that print figures (one JSON line each); tests never assert on time.

  python -m alexnet_jax.benchmark input [--root=DIR] [--workers=N] [--seconds=S]
      The training input pipeline (decode, §2 rescale + centre crop, §4.1 random crop, flip,
      PCA lighting, batching) on an ImageFolder tree's originals and on its prepared §2 store
      (`data.prepare`), one reader thread and one per core, with images per CPU-second; beside
      them, a plain PIL loop doing the same work. Without --root, generates ImageNet-like JPEGs
      from real photographs first (`generate_imagenet_like`).
  python -m alexnet_jax.benchmark step --config=configs/paper.py [--batch=128]
      [--dtype=bfloat16|float32] [--steps=N]
      The jitted training step (forward, backward, the paper's SGD) on synthetic device data.
      --compare_torch also times the same network in PyTorch (eager and torch.compile) in the
      same run and prints the ratio; --profile ranks the device ops by time (jax.profiler).
  python -m alexnet_jax.benchmark end2end --config=configs/paper.py [--source=synthetic|jpeg]
      [--prepared] [--null_model] [--root=DIR] [--workers=N] [--steps=N]
      The real training loop: steady images/s, the fraction of time it waits for input, and
      the host's milliseconds per step by part; --null_model puts a trivial step in place of
      the network (the loop's own ceiling).
  python -m alexnet_jax.benchmark scaling --config=configs/tiny.py [--batch=16]
      Scaling on 1, 2, 4, 8 CPU devices on the training mesh at a fixed batch per 'data'
      shard: step time and the bytes of every collective in the compiled step.
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
from alexnet_jax.errors import UserError


def _emit(record: dict) -> None:
  print(json.dumps(record, ensure_ascii=False), flush=True)


# ----------------------------------------------------------------------------- input

IMAGENET_TRAIN_SIZE = 1_281_167


def generate_jpegs(root: str, count: int, classes: int = 8, seed: int = 0,
                   split: str = "train") -> None:
  """`count` JPEGs of the "256x256-ish" kind (shorter side 256, aspect 1-1.33, either way up)
  with smooth content (upscaled noise): small, quick stand-ins for tests and the loop."""
  from PIL import Image

  rng = np.random.default_rng(seed)
  for i in range(count):
    longer = int(256 * rng.uniform(1.0, 1.33))
    size = (longer, 256) if i % 2 else (256, longer)
    small = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
    folder = os.path.join(root, split, f"c{i % classes:03d}")
    os.makedirs(folder, exist_ok=True)
    Image.fromarray(small).resize(size, Image.BICUBIC).save(
        os.path.join(folder, f"{i:06d}.JPEG"), quality=90)


# skimage's bundled colour photographs (the `benchmark` extra); matplotlib's is always there.
_SKIMAGE_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png",
                   "motorcycle_right.png", "rocket.jpg", "hubble_deep_field.jpg")
# ImageNet's training images: mostly 500x375 and 375x500, then 500x333 / 333x500, and a tail of
# larger ones (weights of the sizes drawn below).
_IMAGENET_SIZES = (((500, 375), 0.55), ((375, 500), 0.15), ((500, 333), 0.12),
                   ((333, 500), 0.05), (None, 0.13))


def real_photographs() -> dict[str, np.ndarray]:
  """{name: uint8 RGB array} of the photographs that installed packages ship: matplotlib's
  Grace Hopper, and scikit-image's colour photographs when it is installed."""
  import importlib.util

  import matplotlib
  from PIL import Image

  paths = {"grace_hopper.jpg": os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data",
                                            "sample_data", "grace_hopper.jpg")}
  spec = importlib.util.find_spec("skimage")
  if spec is not None and spec.submodule_search_locations:
    data = os.path.join(spec.submodule_search_locations[0], "data")
    paths.update({n: os.path.join(data, n) for n in _SKIMAGE_PHOTOS
                  if os.path.exists(os.path.join(data, n))})
  photos = {}
  for name, path in paths.items():
    with Image.open(path) as image:
      photos[name] = np.asarray(image.convert("RGB"))
  return photos


def generate_imagenet_like(root: str, count: int, classes: int = 8, seed: int = 0,
                           split: str = "train", quality: int = 90) -> dict:
  """`count` JPEGs like ImageNet's training images, cut from real photographs: each a random
  crop (a fifth to all of a photograph, the target's aspect), resized to a size drawn from
  ImageNet's distribution, mirrored at random, saved at `quality` with 4:2:0 chroma as cameras
  and ImageNet's JPEGs mostly are. Returns what was made: photographs used, mean KB, mean size."""
  from PIL import Image

  photos = real_photographs()
  names = sorted(photos)
  rng = np.random.default_rng(seed)
  sizes = [s for s, _ in _IMAGENET_SIZES]
  weights = np.array([w for _, w in _IMAGENET_SIZES])
  total_bytes, pixels = 0, 0
  for i in range(count):
    photo = photos[names[rng.integers(len(names))]]
    size = sizes[rng.choice(len(sizes), p=weights / weights.sum())]
    if size is None:  # the tail: 600-1600 px on the longer side
      longer = int(rng.uniform(600, 1600))
      size = (longer, int(longer * 0.75)) if rng.random() < 0.7 else (int(longer * 0.75), longer)
    h, w = photo.shape[:2]
    aspect = size[0] / size[1]
    area = rng.uniform(0.2, 1.0) * h * w
    cw = int(min(w, np.sqrt(area * aspect)))
    ch = int(min(h, cw / aspect))
    cw = int(min(cw, ch * aspect))
    top, left = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    image = Image.fromarray(photo[top:top + ch, left:left + cw]).resize(size, Image.BICUBIC)
    if rng.random() < 0.5:
      image = image.transpose(Image.FLIP_LEFT_RIGHT)
    folder = os.path.join(root, split, f"c{i % classes:03d}")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{i:06d}.JPEG")
    image.save(path, quality=quality, subsampling="4:2:0")
    total_bytes += os.path.getsize(path)
    pixels += size[0] * size[1]
  return {"photographs": names, "images": count, "mean_kb": round(total_bytes / count / 1e3, 1),
          "mean_pixels": int(pixels / count)}


def _input_data(root: str, store: str, quality: int, chroma: str):
  """configs/paper.py's `data` section (§4.1 crops of 256-pixel stored images, flips, PCA
  lighting) for the ImageFolder tree at `root`, its store in `store`."""
  from alexnet_jax.configs import paper

  data = paper.get_config().data
  data.update(dict(name="image_folder", data_dir=root, prepared_dir=store,
                   prepared_quality=quality, prepared_chroma=chroma))
  return data


def _cpu_seconds() -> float:
  """CPU time of this process (all threads) and its live child processes (Linux /proc)."""
  import multiprocessing

  total = time.process_time()
  for child in multiprocessing.active_children():
    try:
      with open(f"/proc/{child.pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
      total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
      pass
  return total


def _time_batches(batches, seconds: float, batch_size: int) -> tuple[float, float]:
  """(images/s, images per CPU-second of this process and its workers) over `seconds`."""
  it = iter(batches)
  for _ in range(3):  # warm-up: worker start, first reads
    next(it)
  start, cpu, n = time.perf_counter(), _cpu_seconds(), 0
  while time.perf_counter() - start < seconds:
    next(it)
    n += 1
  elapsed, cpu = time.perf_counter() - start, _cpu_seconds() - cpu
  if hasattr(it, "close"):
    it.close()
  return n * batch_size / elapsed, n * batch_size / cpu


def plain_pil_loop(paths, seconds: float, size: int = 256,
                   crop: int = 224) -> tuple[float, int]:
  """The same work written the obvious way: open, RGB, resize, centre crop, random crop, flip,
  lighting; (images/s on one core, files it could not read: skipped and counted)."""
  from PIL import Image

  rng = np.random.default_rng(0)
  scale = np.eye(3, dtype=np.float32)
  start, n, unreadable = time.perf_counter(), 0, 0
  while time.perf_counter() - start < seconds and unreadable < len(paths):
    try:
      with Image.open(paths[(n + unreadable) % len(paths)]) as image:
        image = image.convert("RGB")
        w, h = image.size
        s = size / min(w, h)
        image = image.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BILINEAR)
        w, h = image.size
        image = image.crop(((w - size) // 2, (h - size) // 2, (w + size) // 2, (h + size) // 2))
        array = np.asarray(image)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
      unreadable += 1
      continue
    top, left = rng.integers(0, size - crop + 1, 2)
    patch = array[top:top + crop, left:left + crop]
    if rng.random() < 0.5:
      patch = patch[:, ::-1]
    np.ascontiguousarray(patch)
    scale @ rng.normal(0, 0.1, 3)
    n += 1
  return n / (time.perf_counter() - start), unreadable


class _Repeated:
  """`split` indexed modulo its length, `length` records long: a small set of files standing
  for ImageNet's 1.28M records (grain's shuffle costs depend on the length)."""

  def __init__(self, split, length: int):
    self.split, self.length, self.encoded = split, length, split.encoded

  def __len__(self) -> int:
    return self.length

  def __getitem__(self, index: int) -> dict:
    return self.split[index % len(self.split)]


def bench_input(*, root: str, generate: int, workers: int, seconds: float,
                quality: int = 90, chroma: str = "420") -> list[dict]:
  """Prints (and returns) in one run, for ImageNet-like JPEGs (`generate_imagenet_like`, or the
  ImageFolder tree at `root`): a plain PIL loop on the originals; the training pipeline on the
  originals; the pipeline on the prepared §2 store (`data.prepare`, at `quality`); images/s
  and images per CPU-second of this process and its workers."""
  from alexnet_jax.data import pipeline, prepare, readers, sources
  from alexnet_jax.data.stats import Stats

  records = []

  def emit(record):
    records.append(record)
    _emit(record)

  with tempfile.TemporaryDirectory() as tmp:
    if not root:
      root = os.path.join(tmp, "images")
      made = generate_imagenet_like(root, generate)
      generate_imagenet_like(root, 8, seed=1, split="val")
      emit({"bench": "input", "what": "generated ImageNet-like JPEGs", **made})
    files, names, _ = readers.image_folder(root, "train")
    data = _input_data(root, os.path.join(tmp, "store"), quality, chroma)
    start = time.perf_counter()
    prepare.prepare(data, channels=3, num_classes=len(names), progress=False)
    emit({"bench": "input", "what": f"prepare (§2 form, JPEG quality {quality}, {chroma})",
          "img_per_s": round(len(files) / (time.perf_counter() - start), 1),
          "cpu_cores": os.cpu_count()})
    stored = sources.load(data, channels=3, num_classes=len(names)).train
    stats = Stats.imagenet_defaults(256)
    cores = os.cpu_count() or 1
    workers = workers or cores
    rate, unreadable = plain_pil_loop(files.paths, seconds)
    emit({"bench": "input", "what": "plain PIL loop on the originals, 1 core",
          "img_per_s": round(rate, 1), "unreadable_skipped": unreadable})
    rates = {}
    for form, split in (("originals", files), ("prepared", stored)):
      repeated = _Repeated(split, IMAGENET_TRAIN_SIZE)
      for label, w, threads in ((f"pipeline on the {form}, 1 reader thread", 0, 1),
                                (f"pipeline on the {form}, {workers} reader threads", 0, workers)):
        data.update(workers=w, read_threads=threads, prefetch=max(threads, 2))
        batches = pipeline.train_dataset(data, repeated, stats, crop=224, channels=3, seed=0,
                                         local_batch=128)
        rate, per_cpu_s = _time_batches(batches, seconds, 128)
        rates.setdefault(form, per_cpu_s)
        emit({"bench": "input", "what": label, "img_per_s": round(rate, 1),
              "img_per_cpu_s": round(per_cpu_s, 1), "cpu_cores": cores, "files": len(files)})
    emit({"bench": "input", "what": "prepared / originals, images per CPU-second (1 thread)",
          "ratio": round(rates["prepared"] / rates["originals"], 2)})
  return records


# ----------------------------------------------------------------------------- step

# Dense peak FLOP/s by device kind and compute dtype, for the fraction-of-peak column.
PEAK_FLOPS = {("NVIDIA H100 80GB HBM3", "bfloat16"): 989e12,
              ("NVIDIA H100 80GB HBM3", "float32"): 494e12,  # TF32 tensor cores
              ("NVIDIA H200", "bfloat16"): 989e12, ("NVIDIA H200", "float32"): 494e12}


def top_device_ops(trace: dict, steps: int, top: int = 25) -> list[dict]:
  """The device ops of a Perfetto trace (`jax.profiler`'s `create_perfetto_trace`) that take
  the most time: [{'op', 'ms_per_step', 'calls_per_step'}], largest first."""
  events = trace["traceEvents"] if isinstance(trace, dict) else trace
  devices = {e["pid"] for e in events if e.get("ph") == "M" and e.get("name") == "process_name"
             and e.get("args", {}).get("name", "").startswith("/device:")}
  totals, calls = {}, {}
  for e in events:
    if e.get("ph") == "X" and e.get("pid") in devices:
      totals[e["name"]] = totals.get(e["name"], 0.0) + float(e.get("dur", 0.0))
      calls[e["name"]] = calls.get(e["name"], 0) + 1
  ranked = sorted(totals, key=totals.get, reverse=True)[:top]
  return [{"op": name, "ms_per_step": round(totals[name] / 1e3 / steps, 4),
           "calls_per_step": round(calls[name] / steps, 2)} for name in ranked]


def _profile(compiled, args, steps: int) -> list[dict]:
  """Runs `steps` more steps under `jax.profiler` and ranks the device ops."""
  import glob
  import gzip

  import jax

  with tempfile.TemporaryDirectory() as tmp:
    jax.profiler.start_trace(tmp, create_perfetto_trace=True)
    state, rest = args[0], args[1:]
    for _ in range(steps):
      state, metrics = compiled(state, *rest)
    jax.block_until_ready(metrics)
    jax.profiler.stop_trace()
    files = glob.glob(os.path.join(tmp, "**", "*.trace.json.gz"), recursive=True)
    if not files:
      return []
    with gzip.open(files[0], "rt", encoding="utf-8") as f:
      return top_device_ops(json.load(f), steps)


def _timed_step(config, batch_size: int, steps: int, mesh=None, profile_steps: int = 0):
  """(seconds per step, FLOPs per step, compiled HLO text, device ops ranked by time when
  `profile_steps`) of the training step that training runs (`train_setup.setup_train`: the
  config's optimizer, the training mesh or `mesh`), on a synthetic batch already on the
  devices. FLOPs: three times the forward pass's (forward, input and weight gradients),
  counted from the layer shapes; XLA's cost analysis does not see inside cuDNN's convolutions."""
  import jax
  import jax.numpy as jnp

  from alexnet_jax import models, optim
  from alexnet_jax.sharding import mesh_for
  from alexnet_jax.train_setup import setup_train

  setup = setup_train(config, mesh if mesh is not None else mesh_for(config))
  size, c = config.model.input_size, config.model.in_channels
  key = jax.random.key(0)
  batch = jax.device_put({
      "image": jax.random.randint(key, (batch_size, size, size, c), 0, 256).astype(jnp.uint8),
      "label": jax.random.randint(key, (batch_size,), 0, config.model.num_classes),
      "crop": jnp.zeros((batch_size, 3), jnp.int32),
      "lighting": jnp.zeros((batch_size, c), jnp.float32)}, setup.batch_sharding)
  mean = jax.device_put(jnp.full((size, size, c), 120.0, jnp.float32), setup.replicated)
  rates = jax.device_put({optim.rate_key(p): jnp.float32(config.optimizer.learning_rate)
                          for p, _ in jax.tree_util.tree_flatten_with_path(
                              setup.state["params"])[0]}, setup.replicated)
  state = setup.state
  args = (batch, key, mean, rates)
  compiled = setup.train_step.lower(state, *args).compile()
  flops = 3.0 * models.AlexNetSpec.from_config(config.model).forward_flops() * batch_size
  for _ in range(3):
    state, metrics = compiled(state, *args)
  jax.block_until_ready(metrics)
  start = time.perf_counter()
  for _ in range(steps):
    state, metrics = compiled(state, *args)
  jax.block_until_ready(metrics)
  seconds = (time.perf_counter() - start) / steps
  ops = _profile(compiled, (state, *args), profile_steps) if profile_steps else []
  return seconds, flops, compiled.as_text(), ops


def _torch_for_comparison():
  """PyTorch with a CUDA GPU, for --compare_torch; a one-line error when either is missing."""
  try:
    import torch
  except ImportError:
    raise UserError("--compare_torch needs PyTorch (a benchmark-only dependency): "
                    "pip install 'alexnet_jax[benchmark]'") from None
  if not torch.cuda.is_available():
    raise UserError("--compare_torch times PyTorch on a CUDA GPU and none is visible")
  return torch


def bench_step(config, *, batch: int, steps: int, profile: bool, compare_torch: bool) -> None:
  """Prints the jitted training step's speed (and PyTorch's on the same network)."""
  import jax

  from alexnet_jax import models
  from alexnet_jax.sharding import mesh_for

  torch = _torch_for_comparison() if compare_torch else None  # before timing anything
  batch_size = batch or config.data.batch_size
  seconds, flops, _, ops = _timed_step(config, batch_size, steps,
                                       profile_steps=10 if profile else 0)
  device = jax.devices()[0]
  achieved = flops / seconds
  peak = PEAK_FLOPS.get((device.device_kind, config.model.dtype))
  _emit({"bench": "step", "framework": f"jax {jax.__version__}",
         "device": device.device_kind, "dtype": config.model.dtype, "batch": batch_size,
         "mesh": dict(mesh_for(config).shape),
         "img_per_s": round(batch_size / seconds, 1), "ms_per_step": round(seconds * 1e3, 3),
         "tflop_per_s": round(achieved / 1e12, 3),
         "fraction_of_peak": round(achieved / peak, 4) if peak else None,
         "gflop_per_image": round(flops / batch_size / 1e9, 3)})
  if profile and not ops:
    _emit({"profile": "no per-op device events in the trace (XLA's CPU backend records none)"})
  for op in ops:
    _emit({"profile": op["op"], "ms_per_step": op["ms_per_step"],
           "calls_per_step": op["calls_per_step"]})
  if torch is None:
    return
  from alexnet_jax import torch_alexnet

  spec = models.AlexNetSpec.from_config(config.model)
  for compiled in (False, True):
    torch_seconds = torch_alexnet.time_training_step(
        spec, batch_size, steps, dtype=config.model.dtype, compile=compiled)
    _emit({"bench": "step", "framework": f"torch {torch.__version__}"
           + (" compile" if compiled else " eager"), "device": torch.cuda.get_device_name(),
           "dtype": config.model.dtype, "batch": batch_size,
           "img_per_s": round(batch_size / torch_seconds, 1),
           "ms_per_step": round(torch_seconds * 1e3, 3),
           "jax_speedup": round(torch_seconds / seconds, 3)})


# ----------------------------------------------------------------------------- end2end

def null_setup(config, mesh, **kwargs):
  """`train_setup.setup_train` with trivial jitted steps in place of the network's: each
  reads its whole batch (a mean over the images, so the transfer and the input are real) and
  returns constant metrics. The training loop around it is the real one: its ceiling."""
  import jax
  import jax.numpy as jnp

  from alexnet_jax.train_setup import setup_train

  setup = setup_train(config, mesh, **kwargs)

  def step(state, batch, rng, mean, rates):
    del rng, mean, rates
    touched = jnp.mean(batch["image"].astype(jnp.float32)) * 0.0
    one = jnp.float32(1.0) + touched
    names = ("loss", "top1_error", "top5_error", "grad_norm", "param_norm")
    return {**state, "step": state["step"] + 1}, dict.fromkeys(names, one)

  def eval_step(params, batch, mean):
    del params, mean
    zero, count = jnp.float32(0.0), jnp.sum(batch["mask"].astype(jnp.float32))
    sums = {"loss": zero, "top1_error": zero, "top5_error": zero, "count": count}
    return {"eval": sums} | ({"eval_10crop": sums} if batch["image"].ndim == 5 else {})

  jitted = jax.jit(step, in_shardings=(setup.state_shardings, setup.batch_sharding,
                                       setup.replicated, setup.replicated, setup.replicated),
                   out_shardings=(setup.state_shardings, setup.replicated), donate_argnums=0)
  setup.train_step = setup.train_step_with_stats = jitted
  setup.eval_step = jax.jit(eval_step)
  return setup


def bench_end2end(config, *, source: str, root: str, generate: int, batch: int, workers: int,
                  steps: int, null_model: bool = False, prepared: bool = False,
                  store: str = "") -> dict:
  """The real training loop (`train.train_and_evaluate`) for `steps` steps on the synthetic
  source or on generated JPEGs (`prepared`: read through the prepared §2 store): steady-state
  images/s, the fraction of the loop's time spent waiting for input and the host's
  milliseconds per step by part, from the loop's own metrics after the first (compiling)
  interval. `null_model`: a trivial step in place of the network (`null_setup`), so the
  figures are the loop's own ceiling. `store`: the prepared store's folder, kept (prepared once
  and reused by later runs). Prints and returns the record."""
  from alexnet_jax import metrics, train
  from alexnet_jax.data import prepare, readers

  batch = batch or config.data.batch_size
  if steps < 8:
    raise UserError(f"end2end needs --steps >= 8 (4 log intervals of 2 steps), got {steps}")
  with tempfile.TemporaryDirectory() as tmp:
    if source == "jpeg":
      if not root:
        root = os.path.join(tmp, "images")
        generate_jpegs(root, generate, classes=config.model.num_classes)
        generate_jpegs(root, batch, classes=config.model.num_classes, seed=1, split="val")
      config.data.update(dict(name="image_folder", data_dir=root,
                              prepared_dir=store or os.path.join(tmp, "store"),
                              use_prepared=prepared))
      size = len(readers.image_folder(root, "train")[0])
      if prepared:
        prepare.prepare(config.data, channels=config.model.in_channels,
                        num_classes=config.model.num_classes, progress=False)
    else:
      config.data.update(dict(name="synthetic", synthetic_train_size=generate,
                              synthetic_eval_size=batch))
      size = generate
    config.data.update(dict(batch_size=batch, eval_batch_size=batch))
    if workers:
      config.data.workers = workers
    config.num_epochs = steps * batch / size
    config.eval_every_epochs = config.num_epochs  # one evaluation, after the timed steps
    config.log_every_steps = steps // 4
    config.stats_every_steps = 10 * steps
    config.eval.ten_crop_final = False
    config.checkpoint.every_steps = 10 * steps
    workdir = os.path.join(tmp, "workdir")
    train.train_and_evaluate(config, workdir,
                             **({"setup": null_setup} if null_model else {}))
    rows = [r for r in metrics.run_rows(workdir) if r["split"] == "train"][1:]
  mean = lambda key, digits=3: round(float(np.mean([r[key] for r in rows])), digits)
  record = {"bench": "end2end", "source": source + (" (prepared)" if prepared else ""),
            "model": "null" if null_model else "alexnet", "batch": batch,
            "dtype": config.model.dtype, "workers": config.data.workers, "steps": steps,
            "img_per_s": mean("img_per_s", 1), "input_wait_fraction": mean("input_wait_fraction"),
            "host_ms_per_step": {k.split("/")[1]: mean(k) for k in sorted(rows[0])
                                 if k.startswith("host_ms/")}}
  _emit(record)
  return record


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


def bench_scaling(config, *, devices: int, per_device_batch: int, steps: int,
                  argv: list[str]) -> None:
  """Step time on 1, 2, 4, 8 CPU devices at a fixed batch per 'data' shard, on the mesh
  training uses for that many devices (the columns on the 'model' axis when it is 2), with the collective bytes read from each compiled
  step (one child process per device count: the device count is fixed when jax starts)."""
  if devices:  # the child: measure one point
    from alexnet_jax.sharding import mesh_for

    mesh = mesh_for(config)
    batch = per_device_batch * mesh.shape["data"]
    seconds, _, hlo, _ = _timed_step(config, batch, steps, mesh)
    _emit({"bench": "scaling", "devices": devices, "mesh": dict(mesh.shape),
           "batch_per_data_shard": per_device_batch, "global_batch": batch,
           "ms_per_step": round(seconds * 1e3, 2),
           "img_per_s": round(batch / seconds, 1), "collective_bytes": collective_bytes(hlo)})
    return
  for n in (1, 2, 4, 8):
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS=f"--xla_force_host_platform_device_count={n}")
    result = subprocess.run([sys.executable, "-m", "alexnet_jax.benchmark", "scaling",
                             f"--devices={n}", *argv], env=env, capture_output=True, text=True)
    if result.returncode:
      raise UserError(f"scaling point {n} failed: {result.stderr.strip().splitlines()[-1]}")
    print(result.stdout.strip(), flush=True)


def main(argv):
  FLAGS = flags.FLAGS
  if len(argv) != 2 or argv[1] not in ("input", "step", "end2end", "scaling"):
    raise UserError("usage: python -m alexnet_jax.benchmark input|step|end2end|scaling "
                    "[flags]")
  logging.set_verbosity(logging.WARNING)
  if argv[1] == "input":
    bench_input(root=FLAGS.root, generate=FLAGS.generate, workers=FLAGS.workers,
                seconds=FLAGS.seconds, quality=FLAGS.quality, chroma=FLAGS.chroma)
    return
  if FLAGS.config is None:
    raise UserError(f"{argv[1]} needs --config=configs/....py")
  config = FLAGS.config
  if FLAGS.dtype and argv[1] in ("step", "end2end"):
    config.model.dtype = FLAGS.dtype
  if argv[1] == "step":
    bench_step(config, batch=FLAGS.batch, steps=FLAGS.steps, profile=FLAGS.profile,
               compare_torch=FLAGS.compare_torch)
  elif argv[1] == "end2end":
    bench_end2end(config, source=FLAGS.source, root=FLAGS.root, generate=FLAGS.generate,
                  batch=FLAGS.batch, workers=FLAGS.workers, steps=FLAGS.steps,
                  null_model=FLAGS.null_model, prepared=FLAGS.prepared, store=FLAGS.store)
  else:
    bench_scaling(config, devices=FLAGS.devices, per_device_batch=FLAGS.batch or 16,
                  steps=FLAGS.steps, argv=sys.argv[2:])


if __name__ == "__main__":
  from ml_collections import config_flags

  flags.DEFINE_string("root", "", "input: an ImageFolder root (ROOT/train/<class>/*)")
  flags.DEFINE_integer("generate", 1024, "input, end2end: images to generate when --root is "
                       "not given")
  flags.DEFINE_integer("workers", 0, "input: reader threads and mp_prefetch worker processes "
                       "(0: one per CPU core); end2end: worker processes (0: the config's)")
  flags.DEFINE_float("seconds", 10.0, "input: seconds to time each configuration")
  flags.DEFINE_integer("quality", 90, "input: JPEG quality of the prepared store")
  flags.DEFINE_enum("chroma", "420", ["444", "422", "420"],
                    "input: chroma subsampling of the prepared store")
  flags.DEFINE_integer("batch", 0, "batch size (0: the config's)")
  flags.DEFINE_enum("dtype", "", ["", "bfloat16", "float32"],
                    "step, end2end: compute dtype (default: config)")
  flags.DEFINE_integer("steps", 50, "step, scaling: timed steps after warm-up; end2end: "
                       "the loop's steps (at least 8; the first quarter, compiling, is not "
                       "counted)")
  flags.DEFINE_integer("devices", 0, "scaling: measure this device count only (a child run)")
  flags.DEFINE_bool("profile", False, "step: trace 10 more steps with jax.profiler and print "
                    "the device ops that take the most time (GPU/TPU)")
  flags.DEFINE_bool("compare_torch", False, "step: also time the same network in PyTorch "
                    "(eager and torch.compile, channels_last) in this run, and the ratio")
  flags.DEFINE_bool("null_model", False, "end2end: a trivial step in place of the network: "
                    "the loop's own ceiling and host time per step")
  flags.DEFINE_bool("prepared", False, "end2end --source=jpeg: read the JPEGs through the "
                    "prepared §2 store")
  flags.DEFINE_string("store", "", "end2end --prepared: the store's folder, kept and reused "
                      "(default: a temporary one)")
  flags.DEFINE_enum("source", "synthetic", ["synthetic", "jpeg"],
                    "end2end: in-memory synthetic images, or JPEGs (--root, or --generate of them)")

  config_flags.DEFINE_config_file("config", None, "training configuration file", lock_config=True)
  cli.run(main, positional=True)
