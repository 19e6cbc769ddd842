"""A dataset's identity: which data a number was computed on.

`Identity` names a dataset (`name`), where its originals are (`source`, an absolute path), what
they are (`listing`: a fingerprint of the files, cheap enough for ImageNet's 1.28M: each file's
path, label, size and modification time for an image tree, the files' names, sizes and times for
Fashion-MNIST and a TFDS build), the split sizes and class names, the stored form a run crops
from (`form`: image size, resize rule, channels, and for a prepared store its JPEG quality and
chroma), and the statistics a run subtracts and shifts by (`stats`, a fingerprint of the mean
image and RGB PCA).

Every prepared store's manifest and every checkpoint's meta holds one. `differences` says, in
words, how two differ; prepare, training, a resume, `evaluate`, `predict`, `features`, the
ensembles and `ablate` compare the identity they are given with the data they find, so that no
number is computed on other data than it claims, silently.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any, Iterable

import numpy as np


def fingerprint(*parts: Any) -> str:
  """A short hex digest of JSON-able `parts`."""
  text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
  return hashlib.sha256(text.encode()).hexdigest()[:16]


def files_fingerprint(paths: Iterable[str], root: str = "") -> str:
  """The fingerprint of files by name (relative to `root`), size and modification time."""
  entries = []
  for path in paths:
    try:
      st = os.stat(path)
      entries.append((os.path.relpath(path, root) if root else os.path.basename(path),
                      st.st_size, st.st_mtime_ns))
    except OSError:
      entries.append((path, None, None))
  return fingerprint(sorted(entries))


def stats_fingerprint(mean: np.ndarray, eigval: np.ndarray, eigvec: np.ndarray) -> str:
  """The fingerprint of a mean image and RGB PCA (as float32 bytes)."""
  digest = hashlib.sha256()
  for array in (mean, eigval, eigvec):
    digest.update(np.ascontiguousarray(array, np.float32).tobytes())
  return digest.hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class Identity:
  """See the module docstring."""

  name: str
  source: str
  listing: str
  num_train: int
  num_eval: int
  class_names: tuple[str, ...]
  form: tuple[tuple[str, Any], ...]  # the stored form, as sorted (key, value) pairs
  stats: str = ""

  @classmethod
  def make(cls, *, name: str, source: str, listing: str, num_train: int, num_eval: int,
           class_names: Iterable[str], form: dict, stats: str = "") -> "Identity":
    return cls(name, os.path.abspath(source) if source else "", listing, int(num_train),
               int(num_eval), tuple(class_names), tuple(sorted(form.items())), stats)

  @property
  def stored(self) -> dict:
    return dict(self.form)

  @property
  def prepared(self) -> bool:
    """Whether the images are read from a prepared store (its form records their JPEG
    encoding) rather than from the original files."""
    return "quality" in self.stored

  def replace(self, **changes) -> "Identity":
    if "form" in changes and isinstance(changes["form"], dict):
      changes["form"] = tuple(sorted(changes["form"].items()))
    return dataclasses.replace(self, **changes)

  def to_dict(self) -> dict:
    return {"name": self.name, "source": self.source, "listing": self.listing,
            "num_train": self.num_train, "num_eval": self.num_eval,
            "class_names": list(self.class_names), "form": self.stored, "stats": self.stats}

  @classmethod
  def from_dict(cls, d: dict) -> "Identity":
    return cls.make(name=d["name"], source=d.get("source", ""), listing=d.get("listing", ""),
                    num_train=d.get("num_train", -1), num_eval=d.get("num_eval", -1),
                    class_names=d.get("class_names", ()), form=d.get("form", {}),
                    stats=d.get("stats", ""))

  def describe(self) -> str:
    where = f" at {self.source}" if self.source else ""
    return (f"{self.name}{where} ({self.num_train} training / {self.num_eval} evaluation "
            f"images, {len(self.class_names)} classes)")


# What each check compares (`differences(..., keys=...)`).
DATA = ("name", "source", "listing", "num_train", "num_eval", "classes")
ALL = DATA + ("form", "reader", "stats")
# The content of the originals: the files (relative paths, labels, sizes, times), the counts and
# the classes, wherever the tree is reached from (a symlink, a node-local copy).
CONTENT = tuple(k for k in DATA if k != "source")
# "The same data", one rule for each use: the content always; the originals' path only where a
# moved tree is to be said, not refused; the stored form where the data is read through it, and
# (`reader`) whether from the originals or a prepared store where a number is read again.
SAME_DATA = {
    "store": CONTENT,  # a prepared store and the originals it was prepared from
    "resume": CONTENT + ("form",),  # a checkpoint and the run resuming it
    "study": CONTENT + ("form",),  # a finished study run and the study reading it again
    # a model and what a tool reads: the stored form (`reader`: the originals or a store)
    "inference": ("name", "source", "listing", "num_train", "form", "reader"),
    "moved": ("source",),  # said where the rest is the same
    "switched": ("form", "reader"),  # said on a resume whose form agrees: originals -> store
    "statistics": ("stats",),  # what a run centres and shifts by
}


def same_data(before: Identity, now: Identity, use: str) -> list[str]:
  """How `now` differs from `before` as the use `use` of `SAME_DATA` counts it (empty: the
  same data for that use)."""
  return differences(before, now, keys=SAME_DATA[use])


def differences(before: Identity, now: Identity, keys: Iterable[str] = ALL) -> list[str]:
  """How `now` differs from `before`, one phrase per difference, for the keys asked; a key
  that `before` does not record (an identity written by an earlier version) is not compared."""
  out = []
  keys = tuple(keys)
  if "name" in keys and before.name != now.name:
    out.append(f"dataset {before.name} → {now.name}")
  if "source" in keys and before.source and now.source and before.source != now.source:
    out.append(f"originals at {before.source} → {now.source}")
  if ("listing" in keys and before.listing and now.listing and before.listing != now.listing
      and before.name == now.name):
    out.append("the original files changed (added, removed, renamed, relabelled or rewritten)")
  for key, said in (("num_train", "training images"), ("num_eval", "evaluation images")):
    if key in keys and getattr(before, key) >= 0 and getattr(before, key) != getattr(now, key):
      out.append(f"{said} {getattr(before, key)} → {getattr(now, key)}")
  if "classes" in keys and before.class_names and before.class_names != now.class_names:
    out.append(class_difference(before.class_names, now.class_names))
  if "form" in keys and before.form:
    was, is_ = before.stored, now.stored
    # Between the originals and a store the encoding's keys are said as the switch: a store ->
    # the originals always, the originals -> a store where `reader` is compared.
    switched = before.prepared != now.prepared
    if switched and ("reader" in keys or before.prepared):
      out.append(f"read from {_reader(before)} → {_reader(now)}")
    changed = [f"{k} {was.get(k)} → {is_.get(k)}" for k in sorted(set(was) | set(is_))
               if k in was and was.get(k) != is_.get(k) and not (switched and k in _ENCODING)]
    if changed:
      out.append("stored form: " + ", ".join(changed))
  if "stats" in keys and before.stats and now.stats and before.stats != now.stats:
    out.append("the mean image and RGB PCA (statistics) differ")
  return out


_ENCODING = ("quality", "chroma")  # a prepared store's form only: its JPEGs' encoding


def _reader(identity: Identity) -> str:
  """Where the images are decoded from, in words."""
  if not identity.prepared:
    return "the original files"
  form = identity.stored
  return f"the prepared store (JPEG quality {form['quality']}, chroma {form.get('chroma')})"


def class_difference(before: tuple[str, ...], now: tuple[str, ...]) -> str:
  """How class list `now` differs from `before` (classes added or removed, or another order)."""
  added, removed = [c for c in now if c not in before], [c for c in before if c not in now]
  if added or removed:
    parts = [f"{len(before)} → {len(now)} classes"]
    if added:
      parts.append("added " + ", ".join(added[:3]) + (" ..." if len(added) > 3 else ""))
    if removed:
      parts.append("removed " + ", ".join(removed[:3]) + (" ..." if len(removed) > 3 else ""))
    return "classes: " + "; ".join(parts)
  first = next(i for i, (a, b) in enumerate(zip(before, now)) if a != b)
  return (f"class order (label {first} was {before[first]!r}, is {now[first]!r}): every label "
          "would mean another class")
