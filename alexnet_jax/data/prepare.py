"""§2's stored form, prepared once: every image rescaled (shorter side 256) and centre-cropped
to 256 x 256, re-encoded as a JPEG of that size (quality 90, 4:2:0 chroma by default), written with its label into array_record
shards, with the training set's mean image and RGB PCA computed in the same pass.

    python -m alexnet_jax.data.prepare --config=configs/paper.py --config.data.data_dir=DIR

reads the dataset `data` names from its originals (TFDS ImageNet or an ImageFolder tree) and
writes `<store>/` (`store_dir`: next to the data unless `data.prepared_dir` says where):

    train-00000-of-00042.array_record ...   records: 4-byte little-endian label + JPEG bytes
    val-00000-of-00002.array_record ...
    train-00000-of-00042.json ...           each shard's count, unreadable files, statistics
    stats.npz                               the mean image and RGB PCA (`stats.Stats`)
    report.json                             every unreadable original, with the reason
    manifest.json                           classes, counts, quality: written last

Training reads the store when its manifest is there (`sources.load_splits` says which form it
reads), the originals otherwise. Shards are written under temporary names and renamed when
complete, each with its own sidecar: a killed prepare continues with the shards that are
missing, and a prepared store is left as it is (run it again: nothing to do).
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import sys
import time

import numpy as np
import simplejpeg
from absl import logging

from alexnet_jax import cli
from alexnet_jax.data import images, sources
from alexnet_jax.data.stats import Accumulator
from alexnet_jax.errors import UserError

SPLITS = sources.SPLIT_NAMES
DEFAULT_QUALITY = 90  # docs/performance.md: pixel error against decode cost
DEFAULT_CHROMA = "420"  # 4:2:0 chroma: 27 % less decoding than 4:4:4 at +0.4 grey levels


# ----------------------------------------------------------------------------- one shard

def _beside(shard: str, suffix: str) -> str:
  """A shard's sidecar file: its counts and unreadable files (.json), statistics (.stats.npz)."""
  return shard[:-len(".array_record")] + suffix


_SOURCE = {}  # split name -> the originals, inherited by the worker processes (fork)


def _write_shard(task: tuple[str, int, int, int, int, int, int, str]) -> dict:
  """Reads, prepares and writes one shard; returns its sidecar."""
  from array_record.python.array_record_module import ArrayRecordWriter

  split_name, index, count, start, stop, size, quality, chroma, resize, store = task
  split, channels = _SOURCE[split_name]
  final = sources.shard_path(store, split_name, index, count)
  tmp = f"{final}.tmp-{os.getpid()}"
  acc = Accumulator() if split_name == "train" else None
  bad, written = [], 0
  writer = ArrayRecordWriter(tmp, "group_size:1")
  try:
    for i in range(start, stop):
      record = split[i]
      try:
        stored = images.decode(record["encoded"], size, channels, resize)
      except images.UnreadableImage as e:
        bad.append({"name": str(record.get("name", i)), "why": str(e)})
        continue
      jpeg = simplejpeg.encode_jpeg(
          stored if channels == 3 else stored.reshape(size, size, 1), quality=quality,
          colorspace="RGB" if channels == 3 else "GRAY",
          colorsubsampling=chroma if channels == 3 else "Gray")
      writer.write(sources.encode_record(int(record["label"]), jpeg))
      written += 1
      if acc is not None:
        acc.add(stored[None])
  finally:
    writer.close()
  sidecar = {"split": split_name, "index": index, "records": written, "bad": bad}
  if acc is not None and acc.count:
    np.savez(_beside(final, ".stats.npz"), image_sum=acc.image_sum,
             pixel_sum=acc.pixel_sum, outer_sum=acc.outer_sum, count=acc.count,
             pixels=acc.pixels)
  with open(_beside(final, ".json"), "w", encoding="utf-8") as f:
    json.dump(sidecar, f)
  os.replace(tmp, final)  # the shard is complete: its name appears last
  return sidecar


def _sidecar(store: str, split: str, index: int, count: int) -> dict | None:
  final = sources.shard_path(store, split, index, count)
  if not os.path.exists(final):
    return None
  try:
    with open(_beside(final, ".json"), encoding="utf-8") as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


# ----------------------------------------------------------------------------- the store

def prepare(data, *, channels: int, num_classes: int, quality: int = DEFAULT_QUALITY,
            chroma: str = DEFAULT_CHROMA, shard_size: int = 1024, workers: int = 0,
            progress: bool = True) -> dict:
  """Prepares the store of the dataset `data` names (see the module docstring); returns its
  manifest. `workers` processes (0: one per core; 1: in this process)."""
  if data.name not in ("imagenet2012", "image_folder"):
    raise UserError(f"data.name={data.name!r} is held in memory already: only imagenet2012 and "
                    "image_folder are prepared")
  if not 1 <= quality <= 100:
    raise UserError(f"--quality must be in 1..100, got {quality}")
  if chroma not in ("444", "422", "420"):
    raise UserError(f"--chroma must be 444, 422 or 420, got {chroma!r}")
  store = sources.store_dir(data)
  done = sources.read_manifest(store)
  if done is not None and (done["quality"], done.get("chroma"), done["image_size"],
                           done.get("resize")) == (quality, chroma, data.image_size, data.resize):
    logging.info("%s is prepared already (%d train, %d val images): nothing to do", store,
                 done["records"]["train"], done["records"]["val"])
    return done
  train, val, class_names = sources.load_splits(data, channels=channels, num_classes=num_classes,
                                                prepared=False)
  try:
    os.makedirs(store, exist_ok=True)
  except OSError as e:
    raise UserError(f"cannot create {store}: {e.strerror}") from None
  for name in os.listdir(store):  # shards a killed prepare was writing
    if ".array_record.tmp-" in name:
      os.remove(os.path.join(store, name))
  size = int(data.image_size)
  _SOURCE.update(train=(train, channels), val=(val, channels))
  counts = {name: max(1, math.ceil(len(split) / shard_size))
            for name, split in (("train", train), ("val", val))}
  tasks, sidecars = [], {name: [None] * counts[name] for name in SPLITS}
  for name, split in (("train", train), ("val", val)):
    for i in range(counts[name]):
      found = _sidecar(store, name, i, counts[name])
      if found is not None:
        sidecars[name][i] = found
        continue
      tasks.append((name, i, counts[name], i * shard_size, min(len(split), (i + 1) * shard_size),
                    size, quality, chroma, data.resize, store))
  total = sum(t[4] - t[3] for t in tasks)
  skipped = len(train) + len(val) - total
  logging.info("preparing %s: %d images in %d shards to write%s", store, total, len(tasks),
               f" ({skipped} already written)" if skipped else "")
  bar = None
  if progress:
    from tqdm import tqdm

    bar = tqdm(total=total, unit="img", dynamic_ncols=True, smoothing=0.05,
               disable=not sys.stderr.isatty())
  start = time.perf_counter()
  workers = workers or os.cpu_count() or 1
  try:
    if workers == 1 or len(tasks) <= 1:
      results = map(_write_shard, tasks)
      pool = None
    else:
      pool = multiprocessing.get_context("fork").Pool(workers)
      results = pool.imap_unordered(_write_shard, tasks)
    for sidecar in results:
      sidecars[sidecar["split"]][sidecar["index"]] = sidecar
      n = sidecar["records"] + len(sidecar["bad"])
      if bar is not None:
        bar.update(n)
    if pool is not None:
      pool.close()
      pool.join()
  except OSError as e:
    raise UserError(f"cannot write the prepared store in {store} ({e.strerror or e}); the "
                    "complete shards are kept: run the same command again to continue") from None
  finally:
    if bar is not None:
      bar.close()
    _SOURCE.clear()
  elapsed = time.perf_counter() - start
  if total:
    logging.info("prepared %d images in %.1f s (%.0f images/s)", total, elapsed, total / elapsed)
  return _finish(store, sidecars, counts, class_names, data, quality, chroma, channels)


def _finish(store, sidecars, counts, class_names, data, quality, chroma, channels) -> dict:
  """Statistics, report and manifest from the shards' sidecars (the manifest last)."""
  acc = Accumulator()
  for i in range(counts["train"]):
    path = _beside(sources.shard_path(store, "train", i, counts["train"]), ".stats.npz")
    if not os.path.exists(path):
      continue
    with np.load(path, allow_pickle=False) as part:
      if acc.image_sum is None:
        acc.image_sum = np.zeros_like(part["image_sum"])
        acc.pixel_sum = np.zeros_like(part["pixel_sum"])
        acc.outer_sum = np.zeros_like(part["outer_sum"])
      acc.image_sum += part["image_sum"]
      acc.pixel_sum += part["pixel_sum"]
      acc.outer_sum += part["outer_sum"]
      acc.count += int(part["count"])
      acc.pixels += int(part["pixels"])
  stats = acc.result()
  stats.save(os.path.join(store, "stats.npz"))
  bad = [dict(b, split=name) for name in SPLITS for s in sidecars[name] for b in s["bad"]]
  with open(os.path.join(store, "report.json"), "w", encoding="utf-8") as f:
    json.dump({"unreadable": len(bad), "files": bad}, f, indent=1)
  for b in bad:
    logging.warning("unreadable (%s): %s: %s", b["split"], b["name"], b["why"])
  manifest = {"format": sources.PREPARED_FORMAT, "dataset": data.name, "source": data.data_dir,
              "image_size": int(data.image_size), "channels": channels, "quality": quality,
              "chroma": chroma, "resize": data.resize,
              "class_names": list(class_names), "shards": counts,
              "records": {name: sum(s["records"] for s in sidecars[name]) for name in SPLITS},
              "unreadable": {name: sum(len(s["bad"]) for s in sidecars[name]) for name in SPLITS}}
  tmp = os.path.join(store, "manifest.json.tmp")
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(manifest, f, indent=1)
  os.replace(tmp, os.path.join(store, "manifest.json"))
  logging.info("%s: %d train and %d val images, %d unreadable (report.json)", store,
               manifest["records"]["train"], manifest["records"]["val"], len(bad))
  return manifest


def main(argv):
  from absl import flags

  FLAGS = flags.FLAGS
  del argv
  config = FLAGS.config
  manifest = prepare(config.data, channels=config.model.in_channels,
                     num_classes=config.model.num_classes, quality=FLAGS.quality,
                     chroma=FLAGS.chroma, shard_size=FLAGS.shard_size, workers=FLAGS.workers)
  print(json.dumps({"store": sources.store_dir(config.data), **{k: manifest[k] for k in
                                                         ("records", "unreadable", "quality")}}))


if __name__ == "__main__":
  from absl import flags
  from ml_collections import config_flags

  config_flags.DEFINE_config_file("config", None, "training configuration file", lock_config=True)
  flags.DEFINE_integer("quality", DEFAULT_QUALITY, "JPEG quality of the stored 256x256 images")
  flags.DEFINE_enum("chroma", DEFAULT_CHROMA, ["444", "422", "420"],
                    "chroma subsampling of the stored JPEGs")
  flags.DEFINE_integer("shard_size", 1024, "images per array_record shard")
  flags.DEFINE_integer("workers", 0, "processes (0: one per CPU core; 1: this process only)")
  cli.run(main, required_flags=["config"])
