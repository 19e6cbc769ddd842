"""The datasets, behind one interface: `load` gives a split pair, the class names and the
data's identity (`data.identity`). The readers of each dataset are `data.readers`; ImageNet and
ImageFolder trees are read from their prepared §2 store (`data.store_format`, written by
`data.prepare`) when there is a current one, from the originals otherwise.
"""

from __future__ import annotations

import dataclasses
import os

from absl import logging

from alexnet_jax.data import identity as identity_lib
from alexnet_jax.data import images, readers, store_format
from alexnet_jax.data.identity import Identity, files_fingerprint, fingerprint
from alexnet_jax.errors import UserError

DATASETS = ("imagenet2012", "image_folder", "fashion_mnist", "synthetic")
PREPARABLE = ("imagenet2012", "image_folder")


@dataclasses.dataclass
class Dataset:
  """A dataset as a run reads it: its training and evaluation splits, class names, identity
  (`identity.stats` is left to whoever picks the statistics), and the prepared store it is
  read from ('' for the originals)."""

  train: object
  val: object
  class_names: tuple[str, ...]
  identity: Identity
  store: str = ""


# ----------------------------------------------------------------------------- the registry

def _form(data, channels: int) -> dict:
  if data.name in PREPARABLE:
    return {"image_size": int(data.image_size), "resize": data.resize, "channels": int(channels)}
  return {"image_size": int(data.image_size), "channels": int(channels)}


_NO_FOLDER_ROOT = ("data.name=image_folder needs --config.data.data_dir=ROOT "
                   "(ROOT/train/<class>/*, ROOT/val/<class>/*)")


def originals(data, *, channels: int, num_classes: int,
              class_names: tuple[str, ...] | None = None, first: int = 0) -> Dataset:
  """The dataset the config's `data` section names, from its original files (never the
  prepared store); `channels` and `num_classes` shape the readers.synthetic one. `class_names` (a
  model's) fixes the label order of an image tree; other datasets must have them. `first` > 0:
  a look at the first images of an in-memory dataset (Fashion-MNIST) rather than a run's
  data: only those are read and stored, and the identity counts them."""
  source, listing = data.data_dir, ""
  if data.name == "fashion_mnist":
    source = data.data_dir or readers.FASHION_MNIST_DIR
    size = data.image_size
    train, val = (readers.fashion_mnist(source, s, size=size, first=first)
                  for s in ("train", "test"))
    names = readers.FASHION_MNIST_CLASSES
    listing = files_fingerprint(readers.fashion_paths(source, "train")
                                + readers.fashion_paths(source, "test"))
  elif data.name == "synthetic":
    source = ""
    make = lambda n, seed: readers.synthetic(n, data.image_size, channels, num_classes, seed)
    train, val = make(data.synthetic_train_size, 0), make(data.synthetic_eval_size, 1)
    names = tuple(str(i) for i in range(num_classes))
    listing = fingerprint("synthetic", data.synthetic_train_size, data.synthetic_eval_size,
                          num_classes)
  elif data.name == "image_folder":
    if not data.data_dir:
      raise UserError(_NO_FOLDER_ROOT)
    train, names, train_listing = readers.image_folder(data.data_dir, "train", class_names)
    val, _, val_listing = readers.image_folder(data.data_dir, "val", class_names=names)
    listing = fingerprint(train_listing, val_listing)
  elif data.name == "imagenet2012":
    train, val, names, listing = readers.tfds_imagenet(data.name, data.data_dir)
    source = readers.data_root(data.data_dir)
  else:
    raise UserError(f"unknown dataset {data.name!r}; known: {', '.join(DATASETS)}")
  if class_names is not None and tuple(class_names) != tuple(names):
    raise UserError(f"{data.name} does not have the classes given: "
                    f"{identity_lib.class_difference(tuple(class_names), tuple(names))}")
  identity = Identity.make(name=data.name, source=source, listing=listing,
                           num_train=len(train), num_eval=len(val), class_names=names,
                           form=_form(data, channels))
  return Dataset(train, val, tuple(names), identity)


def load(data, *, channels: int, num_classes: int, prepared: bool = True,
         class_names: tuple[str, ...] | None = None, first: int = 0) -> Dataset:
  """The dataset the config's `data` section names: ImageNet and ImageFolder trees from their
  prepared §2 store when there is a current one (`data.use_prepared`; one log line says which
  form is read), from the original files otherwise (`originals`; `first`: see there)."""
  if data.name == "image_folder" and not data.data_dir and not data.get("prepared_dir"):
    raise UserError(_NO_FOLDER_ROOT)  # no originals and no store to look for
  if data.name in PREPARABLE and prepared and data.use_prepared:
    found = _current_store(data, channels, num_classes, class_names)
    if found is not None:
      return found
    logging.info("reading the original images of %s (no prepared store at %s: `python -m "
                 "alexnet_jax.data.prepare --config=...` makes one)", data.name,
                 store_format.store_dir(data))
  return originals(data, channels=channels, num_classes=num_classes, class_names=class_names,
                   first=first)


def _current_store(data, channels: int, num_classes: int, class_names) -> Dataset | None:
  """The prepared store of `data` when there is one, checked: its form is this config's, it
  was prepared from these originals as they are now (when they can be listed), and it is not
  damaged; a one-line `UserError` otherwise."""
  store = store_format.store_dir(data)
  manifest = store_format.read_manifest(store)
  if manifest is None:
    return None
  recorded = Identity.from_dict(manifest["originals"])
  form = store_format.store_form(data, channels)
  if manifest["form"] != form:
    raise UserError(f"the prepared store {store} holds another form "
                    f"({store_format.form_difference(manifest['form'], form)}): prepare this "
                    "config's into another --config.data.prepared_dir (or leave it empty: each "
                    "form gets its own folder)")
  try:
    now = originals(data, channels=channels, num_classes=num_classes).identity
  except UserError as e:
    now = None
    logging.info("the originals of the prepared store %s cannot be listed (%s): reading the "
                 "store prepared from %s", store, e, recorded.source or "them")
  if now is not None:
    stale = identity_lib.same_data(recorded, now, "store")
    if stale:  # other files: where they are said first, when that differs too
      stale = identity_lib.same_data(recorded, now, "moved") + stale
      raise UserError(f"the prepared store {store} does not hold these originals: "
                      f"{'; '.join(stale)}: run `python -m alexnet_jax.data.prepare` with this "
                      "config again (it rebuilds the store), or read the originals with "
                      "--config.data.use_prepared=False")
  names = tuple(manifest["class_names"])
  if class_names is not None and tuple(class_names) != names:
    raise UserError(f"the prepared store {store} labels other classes than the ones given: "
                    f"{identity_lib.class_difference(tuple(class_names), names)}")
  store_format.check_store(store, manifest)
  shards = manifest["shards"]
  splits = [store_format.PreparedSplit(
                tuple(store_format.shard_path(store, name, i, shards[name])
                      for i in range(shards[name])), name, os.path.join(store, "stats.npz"))
            for name in store_format.SPLIT_NAMES]
  logging.info("reading the prepared §2 form of %s from %s (%d train / %d val images, JPEG "
               "quality %d, chroma %s)", data.name, store, len(splits[0]), len(splits[1]),
               form["quality"], form["chroma"])
  identity = recorded.replace(num_train=len(splits[0]), num_eval=len(splits[1]), form=form)
  return Dataset(splits[0], splits[1], names, identity, store)


def stored_decoder(data, channels: int):
  """bytes of an image file -> uint8 [S, S, c] in the stored form of the dataset `data` names
  (what training cropped from): §2's rescale and centre crop, or Fashion-MNIST's grey form."""
  if data.name == "fashion_mnist":
    size = data.image_size
    return lambda encoded: readers.fashion_mnist_stored(images.decode(encoded, 28, 1)[None, ..., 0],
                                                size)[0]
  return lambda encoded: images.decode(encoded, data.image_size, channels, data.resize)


def stored_size(data, split) -> int:
  """The side of `split`'s stored images (what crops are cut from)."""
  return split.images.shape[1] if not split.encoded else data.image_size
