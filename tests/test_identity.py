"""A dataset's identity (`data.identity`): one "same data" rule per use, said in words."""

import hashlib
import os

import numpy as np

from alexnet_jax.data import identity
from alexnet_jax.data.identity import Identity


def _identity(**changes) -> Identity:
  base = dict(name="image_folder", source="/data/tree", listing="abc", num_train=10, num_eval=4,
              class_names=("a", "b"), form={"image_size": 256, "channels": 3}, stats="s1")
  return Identity.make(**(base | changes))


def test_each_use_compares_its_own_keys():
  """Mutations: 'source' added to the store rule (a symlinked tree's store refused), or 'form'
  dropped from the resume rule -> red."""
  before = _identity()
  moved = _identity(source="/node/local/tree")
  assert identity.same_data(before, moved, "store") == []  # the same files, reached elsewhere
  assert identity.same_data(before, moved, "moved") == [
      "originals at /data/tree → /node/local/tree"]
  smaller = _identity(form={"image_size": 128, "channels": 3})
  assert identity.same_data(before, smaller, "resume") == ["stored form: image_size 256 → 128"]
  assert identity.same_data(before, smaller, "store") == []
  other_stats = _identity(stats="s2")
  assert identity.same_data(before, other_stats, "statistics") == [
      "the mean image and RGB PCA (statistics) differ"]
  assert identity.same_data(before, other_stats, "resume") == []
  relabelled = _identity(class_names=("b", "a"))
  assert identity.same_data(before, relabelled, "resume") == [
      "class order (label 0 was 'a', is 'b'): every label would mean another class"]
  assert identity.same_data(before, relabelled, "inference") == []  # the model's order is read


def test_a_model_read_again_through_a_store_or_the_originals_is_said():
  """A model trained on the originals and evaluated once a prepared store exists (or the
  reverse) sees other pixels: said by the inference rule, as before by the resume rule (the
  originals -> a store is no refusal there). Mutations: 'reader' left out of the inference rule;
  the encoding's keys listed beside the switch -> red."""
  originals = _identity()
  store = _identity(form={"image_size": 256, "channels": 3, "quality": 90, "chroma": "420"})
  assert identity.same_data(originals, store, "inference") == [
      "read from the original files → the prepared store (JPEG quality 90, chroma 420)"]
  assert identity.same_data(store, originals, "inference") == [
      "read from the prepared store (JPEG quality 90, chroma 420) → the original files"]
  assert identity.same_data(originals, store, "resume") == []
  # A store -> the originals is said as the switch by the resume rule too (it said "stored
  # form: chroma 420 → None, quality 90 → None"). Mutation: the switch said only where
  # `reader` is compared -> red.
  assert identity.same_data(store, originals, "resume") == [
      "read from the prepared store (JPEG quality 90, chroma 420) → the original files"]
  assert identity.same_data(store, _identity(form=store.stored | {"quality": 80}),
                            "inference") == ["stored form: quality 90 → 80"]


def test_what_an_earlier_version_did_not_record_is_not_compared():
  """Mutation: the `>= 0` guard on the split sizes dropped -> an old checkpoint refused (red)."""
  old = Identity.from_dict({"name": "image_folder", "class_names": ["a", "b"]})
  assert old.num_train == -1 and old.source == ""
  assert identity.same_data(old, _identity(), "resume") == []
  assert Identity.from_dict(_identity().to_dict()) == _identity()


def test_a_file_rewritten_in_place_changes_the_files_fingerprint(tmp_path):
  """Mutation: the modification time left out of `files_fingerprint` -> red."""
  path = tmp_path / "x.bin"
  path.write_bytes(b"1234")
  first = identity.files_fingerprint([str(path)], str(tmp_path))
  assert identity.files_fingerprint([str(path)], str(tmp_path)) == first
  path.write_bytes(b"5678")  # same name, same size
  os.utime(path, ns=(1, 10**18))
  assert identity.files_fingerprint([str(path)], str(tmp_path)) != first
  assert identity.fingerprint(1, "a") != identity.fingerprint("a", 1)


def test_changed_files_are_said_once_and_replace_takes_any_field():
  """The originals' listing differing is said for the same dataset, and not beside another
  dataset's name (which says it all); `replace` of any field, a stored form given as a dict.
  Mutations: the listing said whatever the names (`==` -> `!=`), its words, `replace` reading
  the form when none is given (`and` -> `or`) -> each red."""
  before = _identity()
  rewritten = _identity(listing="abd")
  assert identity.same_data(before, rewritten, "resume") == [
      "the original files changed (added, removed, renamed, relabelled or rewritten)"]
  assert identity.same_data(before, _identity(name="tfds", listing="xyz"), "resume") == [
      "dataset image_folder → tfds"]
  assert identity.same_data(before, _identity(listing=""), "resume") == []  # not recorded
  assert before.replace(num_train=11).num_train == 11
  assert before.replace(form={"channels": 1, "image_size": 32}).form == (
      ("channels", 1), ("image_size", 32))


def test_fingerprints_are_the_ones_stores_and_checkpoints_already_hold():
  """Every prepared store's manifest and checkpoint's meta holds these digests: the first 16
  hex digits of SHA-256 over the parts as compact, key-sorted JSON, and over the statistics as
  float32 bytes. Another recipe would make every existing store and checkpoint look like other
  data. Mutations: 17 digits; the JSON with spaces; float64 statistics -> red."""
  assert identity.fingerprint(1, "a", {"b": 2, "a": 1}) == hashlib.sha256(
      b'[1,"a",{"a":1,"b":2}]').hexdigest()[:16]
  assert identity.fingerprint(1, "a") == "2010945388e2de98"
  mean, eigval, eigvec = np.zeros((2, 2, 3)), np.ones(3), np.eye(3)
  digest = hashlib.sha256(b"".join(a.astype("<f4").tobytes() for a in (mean, eigval, eigvec)))
  assert identity.stats_fingerprint(mean, eigval, eigvec) == digest.hexdigest()[:16]
  assert identity.stats_fingerprint(mean, eigval, eigvec) == "6f17015013de9714"


def test_a_long_class_difference_names_three_and_says_there_are_more():
  """Mutations: four names shown; the ellipsis from five -> red."""
  assert identity.class_difference(("a", "b"), ("a", "b", "c", "d", "e", "f")) == (
      "classes: 2 → 6 classes; added c, d, e ...")
  assert identity.class_difference(("a", "b", "c", "d", "e", "f"), ("a", "b")) == (
      "classes: 6 → 2 classes; removed c, d, e ...")
  assert identity.class_difference(("a", "b", "c", "d", "e"), ("a", "b")) == (
      "classes: 5 → 2 classes; removed c, d, e")
