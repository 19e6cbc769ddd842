"""§2's prepared store as files (`data.prepare` writes it, `sources.load` reads it): array_record
shards of 4-byte little-endian labels and 256x256 JPEGs with a manifest written last, where a
config's store lives, and its checks.
"""

from __future__ import annotations

import dataclasses
import json
import os
import struct

import numpy as np
from absl import logging

from alexnet_jax.data.readers import RandomAccessFiles, data_root
from alexnet_jax.errors import UserError, first_line

PREPARED_FORMAT = 2
SPLIT_NAMES = ("train", "val")


def store_form(data, channels: int) -> dict:
  """The stored form of a prepared store: what it holds and how it was encoded."""
  return {"image_size": int(data.image_size), "resize": data.resize, "channels": int(channels),
          "quality": int(data.prepared_quality), "chroma": str(data.prepared_chroma)}


def form_difference(stored: dict, wanted: dict) -> str:
  """How the form a store holds differs from the one wanted: 'quality 90 → 80, ...'."""
  return ", ".join(f"{k} {stored.get(k)} → {v}" for k, v in wanted.items() if stored.get(k) != v)


def store_dir(data) -> str:
  """Where the prepared §2 form of the dataset `data` names lives (`python -m
  alexnet_jax.data.prepare`): `data.prepared_dir`, or next to the data, in a folder named by
  its settings (two configs that store differently never share shards)."""
  if data.get("prepared_dir"):
    return data.prepared_dir
  root = data_root(data.data_dir)
  return os.path.join(root, "alexnet_jax_prepared",
                      f"{data.name}-{data.image_size}-{data.resize}-q{data.prepared_quality}-"
                      f"{data.prepared_chroma}")


def shard_path(store: str, split: str, index: int, count: int) -> str:
  return os.path.join(store, f"{split}-{index:05d}-of-{count:05d}.array_record")


def read_manifest(store: str) -> dict | None:
  """The manifest of a complete store, or None (no store, one still being written, or one of
  an earlier version: prepare writes it again)."""
  try:
    with open(os.path.join(store, "manifest.json"), encoding="utf-8") as f:
      manifest = json.load(f)
  except (OSError, ValueError):
    return None
  if not isinstance(manifest, dict) or manifest.get("format") != PREPARED_FORMAT:
    return None
  return manifest


def shard_records(path: str) -> int:
  """The number of records an array_record shard holds; raises OSError or RuntimeError when
  it cannot be read (missing, truncated, not an array_record file)."""
  from array_record.python.array_record_module import ArrayRecordReader

  reader = ArrayRecordReader(path)
  try:
    return reader.num_records()
  finally:
    reader.close()


def check_store(store: str, manifest: dict) -> None:
  """Every shard of a store there and readable, with the records its manifest says: a
  one-line `UserError` naming the first damaged one otherwise."""
  for split in SPLIT_NAMES:
    count = manifest["shards"][split]
    for i in range(count):
      path = shard_path(store, split, i, count)
      try:
        records = shard_records(path)
      except Exception as e:  # noqa: BLE001 -- the reader raises several kinds
        raise UserError(f"the prepared store {store} is damaged ({os.path.basename(path)}: "
                        f"{first_line(e) or type(e).__name__}): run prepare again, it rewrites "
                        "the damaged shards") from None
      if records != manifest["shard_records"][split][i]:
        raise UserError(f"the prepared store {store} is damaged ({os.path.basename(path)} holds "
                        f"{records} records, not {manifest['shard_records'][split][i]}): run "
                        "prepare again, it rewrites the damaged shards")


def encode_record(label: int, jpeg: bytes) -> bytes:
  """A prepared record: the label as 4 little-endian bytes, then the 256x256 JPEG."""
  return struct.pack("<i", int(label)) + jpeg


@dataclasses.dataclass
class PreparedSplit(RandomAccessFiles):
  """One split of a prepared store: 256x256 JPEGs and labels in array_record shards, read with
  grain's `ArrayRecordDataSource` (random access, no TensorFlow). A record that cannot be read
  (a shard damaged or removed while a run reads it) is an unreadable image: logged, counted,
  replaced in training and left out of evaluation, as an unreadable original is."""

  paths: tuple[str, ...]
  split: str
  stats_path: str = ""  # the statistics computed while preparing
  stored_form = True  # its images are JPEGs of the stored size: patches decode from them

  def _make_source(self):
    import grain

    return grain.sources.ArrayRecordDataSource(list(self.paths))

  def __getitem__(self, index: int) -> dict:
    name = f"{self.split}#{index}"
    try:
      record = self._open()[index]
      return {"encoded": record[4:], "label": np.int32(struct.unpack_from("<i", record)[0]),
              "name": name}
    except Exception as e:  # noqa: BLE001 -- the reader raises several kinds
      logging.warning("cannot read record %s of the prepared store: %s (`python -m "
                      "alexnet_jax.data.prepare` with this config rewrites damaged shards)", name,
                      first_line(e) or type(e).__name__)
      return {"encoded": b"", "label": np.int32(0), "name": name}
