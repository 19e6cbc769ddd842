"""`benchmark input`: the training input pipeline on an ImageFolder tree's originals and on
its prepared §2 store, one reader thread and one per core, beside a plain PIL loop doing the
same work."""

from __future__ import annotations

import os
import tempfile
import time

import numpy as np

from alexnet_jax.benchmark import emit, handover, timed
from alexnet_jax.data.samples import IMAGENET_TRAIN_SIZE, generate_imagenet_like


def _input_data(root: str, store: str, quality: int | None, chroma: str | None):
  """configs/paper.py's `data` section (§4.1 crops of 256-pixel stored images, flips, PCA
  lighting) for the ImageFolder tree at `root`, its store in `store` at the JPEG `quality` and
  `chroma` given (None: the config's)."""
  from alexnet_jax.configs import paper

  data = paper.get_config().data
  data.update(dict(name="image_folder", data_dir=root, prepared_dir=store))
  if quality is not None:
    data.prepared_quality = quality
  if chroma is not None:
    data.prepared_chroma = chroma
  return data


def _time_batches(batches, seconds: float, batch_size: int) -> tuple[float, float]:
  """(images/s, images per CPU-second of this process and its workers) over `seconds`."""
  it = iter(batches)
  try:
    wall, cpu, n = timed(lambda: next(it), seconds)
  finally:
    if hasattr(it, "close"):
      it.close()
  return n * batch_size / wall, n * batch_size / cpu


_LIGHTING = np.eye(3, dtype=np.float32)  # the yardstick's stand-in for the PCA lighting matrix


def pil_patch(item, rng: np.random.Generator, size: int = 256, crop: int = 224) -> np.ndarray:
  """One image (a path or encoded bytes) the obvious way: open, RGB, shorter side resized to
  `size`, centre crop, a random `crop`-pixel patch, mirrored half the time, a lighting draw.
  Raises what Pillow raises for an unreadable file."""
  import io

  from PIL import Image

  with Image.open(item if isinstance(item, str) else io.BytesIO(item)) as image:
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
  _LIGHTING @ rng.normal(0, 0.1, 3)
  return np.ascontiguousarray(patch)


def plain_pil_loop(images, seconds: float, size: int = 256,
                   crop: int = 224) -> tuple[float, int]:
  """`pil_patch` over `images` (paths or encoded bytes) again and again for `seconds`: (images/s
  on one core, images it could not read: skipped and counted)."""
  from PIL import Image

  rng = np.random.default_rng(0)
  start, n, unreadable = time.perf_counter(), 0, 0
  while time.perf_counter() - start < seconds and unreadable < len(images):
    try:
      pil_patch(images[(n + unreadable) % len(images)], rng, size, crop)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
      unreadable += 1
      continue
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
                quality: int | None = None, chroma: str | None = None) -> list[dict]:
  """Prints (and returns) in one run, for ImageNet-like JPEGs (`generate_imagenet_like`, or the
  ImageFolder tree at `root`): a plain PIL loop on the originals; the training pipeline on the
  originals and on the prepared §2 store (`data.prepare`, at `quality` and `chroma`; None:
  configs/paper.py's) with one reader thread and `workers` (0: one per core); the pipeline on
  the store in 1, 2, 4, ... up to `workers` worker processes; images/s and images per
  CPU-second of this process and its workers."""
  from alexnet_jax.data import pipeline, prepare, readers, sources
  from alexnet_jax.data.stats import Stats

  records = []

  def say(record):
    records.append(record)
    emit(record)

  with tempfile.TemporaryDirectory() as tmp:
    if not root:
      root = os.path.join(tmp, "images")
      made = generate_imagenet_like(root, generate)
      generate_imagenet_like(root, 8, seed=1, split="val")
      say({"bench": "input", "what": "generated ImageNet-like JPEGs", **made})
    files, names, _ = readers.image_folder(root, "train")
    data = _input_data(root, os.path.join(tmp, "store"), quality, chroma)
    start = time.perf_counter()
    prepare.prepare(data, channels=3, num_classes=len(names), progress=False)
    say({"bench": "input", "what": "prepare (§2 form, JPEG quality "
                                   f"{data.prepared_quality}, {data.prepared_chroma})",
          "img_per_s": round(len(files) / (time.perf_counter() - start), 1),
          "cpu_cores": os.cpu_count()})
    stored = sources.load(data, channels=3, num_classes=len(names)).train
    stats = Stats.imagenet_defaults(256)
    cores = os.cpu_count() or 1
    workers = workers or cores
    rate, unreadable = plain_pil_loop(files.paths, seconds)
    say({"bench": "input", "what": "plain PIL loop on the originals, 1 core",
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
        say({"bench": "input", "what": label, "img_per_s": round(rate, 1),
              "img_per_cpu_s": round(per_cpu_s, 1), "cpu_cores": cores, "files": len(files)})
    say({"bench": "input", "what": "prepared / originals, images per CPU-second (1 thread)",
          "ratio": round(rates["prepared"] / rates["originals"], 2)})
    repeated = _Repeated(stored, IMAGENET_TRAIN_SIZE)
    for n in _worker_counts(workers):
      data.update(workers=n, read_threads=1, prefetch=2)
      batches = pipeline.train_dataset(data, repeated, stats, crop=224, channels=3, seed=0,
                                       local_batch=128)
      rate, per_cpu_s = _time_batches(batches, seconds, 128)
      processes = "processes" if n > 1 else "process"
      say({"bench": "input", "what": f"pipeline on the prepared, {n} worker {processes}",
           "workers": n, "img_per_s": round(rate, 1), "img_per_cpu_s": round(per_cpu_s, 1),
           "cpu_cores": cores})
  for record in handover.bench_handover(seconds):
    say(record)
  return records


def _worker_counts(most: int) -> list[int]:
  """1, 2, 4, ... up to `most`, and `most` itself."""
  counts = [1 << k for k in range(most.bit_length()) if 1 << k <= most]
  return counts + ([most] if counts[-1] != most else [])
