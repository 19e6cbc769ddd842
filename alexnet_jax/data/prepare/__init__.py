"""§2's stored form, prepared once: every image rescaled (shorter side 256) and centre-cropped
to 256 x 256 (or squashed: `data.resize`), re-encoded as a JPEG of that size
(`data.prepared_quality`, `data.prepared_chroma`), written with its label into array_record
shards, with the training set's mean image and RGB PCA computed in the same pass.

    python -m alexnet_jax.data.prepare --config=configs/paper.py --config.data.data_dir=DIR

(`__main__.py`) reads the dataset `data` names from its originals (TFDS ImageNet or an
ImageFolder tree) and writes `<store>/` (`store_format.store_dir`: next to the data, in a folder
named by the stored form, unless `data.prepared_dir` says where):

    train-00000-of-00042.array_record ...   records: 4-byte little-endian label + JPEG bytes
    val-00000-of-00002.array_record ...
    train-00000-of-00042.json ...           each shard's count, SHA-256, unreadable files
    stats.npz                               the mean image and RGB PCA (`stats.Stats`)
    report.json                             every unreadable original, with the reason
    manifest.json                           the originals' identity, the form, classes, counts:
                                            written last

Training reads the store when its manifest is there and it holds the config's form of the
originals as they are now (`sources.load` says which form it reads, and refuses a stale or
damaged store). Shards are written under temporary names and renamed when complete, each with
its own sidecar: a killed prepare continues with the shards that are missing, a damaged shard
is written again (a shard whose bytes no longer match its sidecar's SHA-256 is damaged, however
it was damaged), a store whose originals changed is prepared again, and a current one is left as
it is (run it again: nothing to do).
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import math
import os
import signal
import sys
import time

import numpy as np
import simplejpeg
from absl import logging

from alexnet_jax.data import identity as identity_lib
from alexnet_jax.data import images, sources, spawning, store_format
from alexnet_jax.data.identity import Identity
from alexnet_jax.data.stats import Accumulator
from alexnet_jax.errors import UserError

SPLITS = store_format.SPLIT_NAMES
PENDING = "pending.json"  # what a prepare in progress is writing: its originals and form


# ----------------------------------------------------------------------------- one shard

def _beside(shard: str, suffix: str) -> str:
  """A shard's sidecar file: its counts and unreadable files (.json), statistics (.stats.npz)."""
  return shard[:-len(".array_record")] + suffix


_SOURCE = {}  # split name -> (the originals, channels), in each worker process


def _start_worker(splits: dict) -> None:
  """A worker process's originals; Ctrl-C is the parent's to handle (no worker tracebacks)."""
  signal.signal(signal.SIGINT, signal.SIG_IGN)
  _SOURCE.update(splits)


def _write_shard(task: tuple) -> dict:
  """Reads, prepares and writes one shard; returns its sidecar."""
  from array_record.python.array_record_module import ArrayRecordWriter

  split_name, index, count, start, stop, form, store = task
  split, channels = _SOURCE[split_name]
  size = form["image_size"]
  final = store_format.shard_path(store, split_name, index, count)
  tmp = f"{final}.tmp-{os.getpid()}"
  acc = Accumulator() if split_name == "train" else None
  bad, written = [], 0
  try:
    writer = ArrayRecordWriter(tmp, "group_size:1")
    try:
      for i in range(start, stop):
        record = split[i]
        try:
          stored = images.decode(record["encoded"], size, channels, form["resize"])
        except images.UnreadableImage as e:
          bad.append({"name": str(record.get("name", i)), "why": str(e)})
          continue
        jpeg = simplejpeg.encode_jpeg(
            stored if channels == 3 else stored.reshape(size, size, 1), quality=form["quality"],
            colorspace="RGB" if channels == 3 else "GRAY",
            colorsubsampling=form["chroma"] if channels == 3 else "Gray")
        writer.write(store_format.encode_record(int(record["label"]), jpeg))
        written += 1
        if acc is not None:
          acc.add(stored[None])
    finally:
      writer.close()
    sidecar = {"split": split_name, "index": index, "records": written, "bad": bad,
               "sha256": _digest(tmp)}
    if acc is not None and acc.count:
      np.savez(_beside(final, ".stats.npz"), image_sum=acc.image_sum,
               pixel_sum=acc.pixel_sum, outer_sum=acc.outer_sum, count=acc.count,
               pixels=acc.pixels)
    with open(_beside(final, ".json"), "w", encoding="utf-8") as f:
      json.dump(sidecar, f)
    os.replace(tmp, final)  # the shard is complete: its name appears last
  except (OSError, RuntimeError) as e:  # a full disk: no partial shard is left
    if os.path.exists(tmp):
      os.remove(tmp)
    raise OSError(getattr(e, "errno", None), getattr(e, "strerror", None) or str(e)) from None
  return sidecar


def _digest(path: str) -> str:
  with open(path, "rb") as f:
    return hashlib.file_digest(f, "sha256").hexdigest()


def _reads_whole(path: str, records: int) -> bool:
  """Every record of a shard read (a sidecar written before shards had digests)."""
  from array_record.python.array_record_module import ArrayRecordReader

  reader = ArrayRecordReader(path)
  try:
    return reader.num_records() == records and len(reader.read_all()) == records
  finally:
    reader.close()


def _complete_sidecar(store: str, split: str, index: int, count: int) -> dict | None:
  """The sidecar of a shard already written and whole (its bytes those its sidecar's SHA-256
  was taken of), else None (the shard is written again: missing, damaged anywhere, or without
  its sidecar)."""
  final = store_format.shard_path(store, split, index, count)
  if not os.path.exists(final):
    return None
  try:
    with open(_beside(final, ".json"), encoding="utf-8") as f:
      sidecar = json.load(f)
    if ("sha256" in sidecar and _digest(final) == sidecar["sha256"]) or (
        "sha256" not in sidecar and _reads_whole(final, sidecar["records"])):
      return sidecar
  except Exception:  # noqa: BLE001 -- unreadable sidecar or shard: written again
    pass
  logging.warning("%s is damaged: writing it again", final)
  return None


def _scan(store: str, counts: dict[str, int]) -> dict[str, list]:
  """{split: [the sidecar of each shard that is whole, None for one to write]} for `counts`
  shards per split (`_complete_sidecar`), checked in parallel threads (hashing releases the
  interpreter)."""
  shards = [(split, i, counts[split]) for split in SPLITS for i in range(counts[split])]
  with concurrent.futures.ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
    found = list(pool.map(lambda shard: _complete_sidecar(store, *shard), shards))
  sidecars = {split: [None] * counts[split] for split in SPLITS}
  for (split, i, _), sidecar in zip(shards, found):
    sidecars[split][i] = sidecar
  return sidecars


# ----------------------------------------------------------------------------- the store

def _clear(store: str) -> None:
  """Removes what a store holds (its shards, sidecars, statistics, report and manifest)."""
  for name in os.listdir(store):
    if name.endswith((".array_record", ".json", ".npz")) or ".array_record.tmp-" in name:
      os.remove(os.path.join(store, name))


def _claim(store: str, originals: Identity, form: dict, shard_size: int) -> bool:
  """Makes `store` this preparation's: a store of another form or of other originals is
  refused (`data.prepared_dir` shared between configs or trees), a stale one (its originals
  changed since) or a prepare in progress with other settings is cleared. Returns whether
  it cleared anything."""
  cleared = False
  try:
    os.makedirs(store, exist_ok=True)
  except OSError as e:
    raise UserError(f"cannot create {store}: {e.strerror}") from None
  done = store_format.read_manifest(store)
  if done is not None:
    recorded = Identity.from_dict(done["originals"])
    if done["form"] != form:
      raise UserError(f"{store} holds a prepared store of another form "
                      f"({store_format.form_difference(done['form'], form)}): set "
                      "another --config.data.prepared_dir (or leave it empty: each form gets "
                      "its own folder), or remove it")
    stale = identity_lib.same_data(recorded, originals, "store")
    if stale and identity_lib.same_data(recorded, originals, "moved"):
      raise UserError(f"{store} holds the prepared store of {recorded.source}, not of "
                      f"{originals.source}: set another --config.data.prepared_dir, or remove it")
    if stale:
      logging.warning("%s was prepared from other originals (%s): preparing it again", store,
                      "; ".join(stale))
      _clear(store)
      cleared = True
  pending = {"originals": originals.to_dict(), "form": form, "shard_size": shard_size}
  path = os.path.join(store, PENDING)
  try:
    with open(path, encoding="utf-8") as f:
      before = json.load(f)
  except (OSError, ValueError):
    before = None
  if before is not None and before != pending:
    logging.warning("%s: the prepare in progress there had other originals or settings: "
                    "starting afresh", store)
    _clear(store)
    cleared = True
  for name in os.listdir(store):  # shards a killed prepare was writing
    if ".array_record.tmp-" in name:
      os.remove(os.path.join(store, name))
  with open(path, "w", encoding="utf-8") as f:
    json.dump(pending, f)
  return cleared


def prepare(data, *, channels: int, num_classes: int, shard_size: int = 1024, workers: int = 0,
            progress: bool = True) -> dict:
  """Prepares the store of the dataset `data` names (see the module docstring); returns its
  manifest. `workers` processes (0: one per core; 1: in this process)."""
  spawning.stop_if_spawning()
  if data.name not in sources.PREPARABLE:
    raise UserError(f"data.name={data.name!r} is held in memory already: only "
                    f"{' and '.join(sources.PREPARABLE)} are prepared")
  if shard_size < 1 or workers < 0:
    raise UserError(f"--shard_size must be >= 1 and --workers >= 0, got {shard_size} and "
                    f"{workers}")
  store, form = store_format.store_dir(data), store_format.store_form(data, channels)
  dataset = sources.originals(data, channels=channels, num_classes=num_classes)
  done = store_format.read_manifest(store)
  if done is not None and done["form"] == form and not identity_lib.same_data(
      Identity.from_dict(done["originals"]), dataset.identity, "store"):
    scanned = _scan(store, done["shards"])
    damaged = [store_format.shard_path(store, split, i, done["shards"][split])
               for split in SPLITS for i, sidecar in enumerate(scanned[split]) if sidecar is None]
    if not damaged:
      logging.info("%s is prepared already (%d train, %d val images, every shard whole): "
                   "nothing to do", store, done["records"]["train"], done["records"]["val"])
      return done
    logging.warning("%s: %d damaged shard(s) (%s): writing them again", store, len(damaged),
                    ", ".join(os.path.basename(p) for p in damaged[:3]))
  else:
    scanned = None
  try:
    if _claim(store, dataset.identity, form, shard_size):
      scanned = None  # what was checked is gone
    return _write(store, dataset, form, shard_size, workers, progress, scanned)
  except OSError as e:
    raise UserError(f"cannot write the prepared store in {store} ({e.strerror or e}); the "
                    "complete shards are kept: run the same command again to continue") from None


def _write(store, dataset, form, shard_size, workers, progress, scanned=None) -> dict:
  """Writes the shards that are not whole (`scanned`: `_scan`'s result for this store, when
  it has just been taken) and finishes the store."""
  splits = {"train": dataset.train, "val": dataset.val}
  counts = {name: max(1, math.ceil(len(split) / shard_size)) for name, split in splits.items()}
  fits = scanned is not None and {name: len(s) for name, s in scanned.items()} == counts
  sidecars = scanned if fits else _scan(store, counts)
  tasks = [(name, i, counts[name], i * shard_size, min(len(split), (i + 1) * shard_size), form,
            store)
           for name, split in splits.items() for i in range(counts[name])
           if sidecars[name][i] is None]
  total = sum(t[4] - t[3] for t in tasks)
  skipped = len(dataset.train) + len(dataset.val) - total
  logging.info("preparing %s: %d images in %d shards to write%s", store, total, len(tasks),
               f" ({skipped} already written)" if skipped else "")
  channels = form["channels"]
  shared = {name: (split, channels) for name, split in splits.items()}
  start = time.perf_counter()
  workers = min(workers or os.cpu_count() or 1, max(len(tasks), 1))
  bar = None
  if progress:
    from tqdm import tqdm

    bar = tqdm(total=total, unit="img", dynamic_ncols=True, smoothing=0.05,
               disable=not sys.stderr.isatty())
  if workers == 1:
    _SOURCE.update(shared)
    results = map(_write_shard, tasks)
  else:  # spawned, not forked: nothing of this process's threads (jax's) is copied
    results = spawning.map_unordered(
        _write_shard, tasks, workers, initializer=_start_worker, initargs=(shared,),
        who="a prepare worker process", when="while it wrote a shard", without="--workers=1",
        then="the whole shards are kept: the same command continues (with fewer --workers if "
             "memory ran out)")
  try:
    for sidecar in results:
      sidecars[sidecar["split"]][sidecar["index"]] = sidecar
      if bar is not None:
        bar.update(sidecar["records"] + len(sidecar["bad"]))
  finally:
    getattr(results, "close", lambda: None)()
    if bar is not None:
      bar.close()
    _SOURCE.clear()
  elapsed = time.perf_counter() - start
  if total:
    logging.info("prepared %d images in %.1f s (%.0f images/s)", total, elapsed, total / elapsed)
  return _finish(store, sidecars, counts, dataset, form)


def _finish(store, sidecars, counts, dataset, form) -> dict:
  """Statistics, report and manifest from the shards' sidecars (the manifest last)."""
  acc = Accumulator()
  for i in range(counts["train"]):
    path = _beside(store_format.shard_path(store, "train", i, counts["train"]), ".stats.npz")
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
  manifest = {"format": store_format.PREPARED_FORMAT, "dataset": dataset.identity.name,
              "originals": dataset.identity.to_dict(), "form": form,
              "class_names": list(dataset.class_names), "shards": counts,
              "shard_records": {name: [s["records"] for s in sidecars[name]] for name in SPLITS},
              "records": {name: sum(s["records"] for s in sidecars[name]) for name in SPLITS},
              "unreadable": {name: sum(len(s["bad"]) for s in sidecars[name]) for name in SPLITS}}
  tmp = os.path.join(store, "manifest.json.tmp")
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(manifest, f, indent=1)
  os.replace(tmp, os.path.join(store, "manifest.json"))
  os.remove(os.path.join(store, PENDING))
  logging.info("%s: %d train and %d val images, %d unreadable (report.json)", store,
               manifest["records"]["train"], manifest["records"]["val"], len(bad))
  return manifest
