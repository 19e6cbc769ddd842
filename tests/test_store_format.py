"""The prepared store's files (`data.store_format`): where a config's store lives, what its
manifest must be, and the check of its shards."""

import json
import os

import pytest
from conftest import folder_config

from alexnet_jax.data import store_format
from alexnet_jax.errors import UserError


def _write_shard(path, records):
  """An array_record shard of (label, JPEG bytes) records, as prepare writes them."""
  from array_record.python.array_record_module import ArrayRecordWriter

  writer = ArrayRecordWriter(path, "group_size:1")
  for label, jpeg in records:
    writer.write(store_format.encode_record(label, jpeg))
  writer.close()


def test_two_stored_forms_never_share_a_folder(tmp_path):
  """Mutation: the quality left out of the folder name -> red."""
  a = folder_config(tmp_path).data
  b = folder_config(tmp_path).data
  b.prepared_quality = 80
  assert store_format.store_dir(a) != store_format.store_dir(b)
  assert store_format.store_dir(a).startswith(str(tmp_path))
  b.prepared_dir = str(tmp_path / "here")
  assert store_format.store_dir(b) == str(tmp_path / "here")
  assert store_format.form_difference(store_format.store_form(a, 3),
                                      store_format.store_form(b, 3)) == "quality 90 → 80"


@pytest.mark.parametrize("manifest", ["not json", '["a list"]', '{"format": 1}'])
def test_a_manifest_of_another_version_or_damaged_is_no_store(tmp_path, manifest):
  """Mutation: the format check dropped -> the version-1 manifest is taken (red)."""
  (tmp_path / "manifest.json").write_text(manifest)
  assert store_format.read_manifest(str(tmp_path)) is None


def test_a_shard_missing_or_short_of_its_records_is_named(tmp_path):
  """Mutation: the record count not compared -> the short shard passes (red)."""
  store = str(tmp_path)
  counts = {"train": 1, "val": 1}
  for split in counts:
    _write_shard(store_format.shard_path(store, split, 0, 1), [(1, b"jpeg")])
  manifest = {"format": store_format.PREPARED_FORMAT, "shards": counts,
              "shard_records": {"train": [1], "val": [2]}}
  (tmp_path / "manifest.json").write_text(json.dumps(manifest))
  with pytest.raises(UserError, match=r"val-00000-of-00001.array_record holds 1 records, not 2"):
    store_format.check_store(store, store_format.read_manifest(store))
  os.remove(store_format.shard_path(store, "train", 0, 1))
  with pytest.raises(UserError, match=r"damaged \(train-00000-of-00001.array_record"):
    store_format.check_store(store, manifest)


def test_a_record_reads_back_as_its_label_and_its_jpeg(tmp_path):
  """4 little-endian label bytes, then the JPEG's, bytes for bytes (a label above 255 pins the
  byte order); a record past the shard's end reads as unreadable. Mutations: the JPEG taken
  from byte 5 (a decoder may still read it, one byte short); the label unpacked big-endian ->
  red."""
  path = store_format.shard_path(str(tmp_path), "train", 0, 1)
  jpegs = [b"\xff\xd8\xff\xe0first", b"\xff\xd8\xff\xdbsecond"]
  _write_shard(path, zip((258, 7), jpegs))
  split = store_format.PreparedSplit((path,), "train")
  assert len(split) == 2
  assert [(split[i]["encoded"], int(split[i]["label"])) for i in range(2)] == [
      (jpegs[0], 258), (jpegs[1], 7)]
  assert split[0]["name"] == "train#0"
  assert split[5]["encoded"] == b""
