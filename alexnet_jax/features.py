r"""The last hidden layer as an image descriptor, and nearest neighbours by it (§6.1, Figure 4,
right).

  python -m alexnet_jax.features --workdir=DIR --split=train --output=train_fc7.npz
  python -m alexnet_jax.features --workdir=DIR --folder=PATH --output=folder_fc7.npz
  python -m alexnet_jax.features --workdir=DIR --neighbors=6 --num_queries=5 \
      --grid=neighbors.png [--database=train_fc7.npz] [IMAGE_OR_FOLDER ...]

Features are fc7's 4096 post-ReLU activations (the tiny configs: their fc7 width) of the centre
crop, in one .npz: `features` float32 [N, F] (rows of unreadable images are NaN), `names` (each
image's path, or split#index), `labels` (int, -1 where unknown) and `class_names`.
`--neighbors=K` shows, for each query (the image files given and the images below the
folders given, else the first `--num_queries` validation images), the K training images whose
features are nearest in Euclidean distance: a batched search on the accelerator (`nearest`),
printed with their classes and drawn as a PNG grid, the query apart in the first column, each
neighbour under its class and distance.
"""

from __future__ import annotations

import functools
import os
import sys
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags, logging

from alexnet_jax import cli, figures, inference
from alexnet_jax import workdir as workdir_lib
from alexnet_jax.data import images as image_files
from alexnet_jax.errors import UserError

@functools.partial(jax.jit, static_argnames=("k", "chunk"))
def nearest(queries: jax.Array, database: jax.Array, *, k: int, chunk: int = 8192):
  """(distances [q, k], indices [q, k]) of the k database rows nearest to each query (squared
  Euclidean, ascending), scanning the database in chunks; NaN rows never match."""
  n, f = database.shape
  padded = -(-n // chunk) * chunk
  database = jnp.pad(database, ((0, padded - n), (0, 0)), constant_values=jnp.nan)
  q_norm = jnp.sum(jnp.square(queries), axis=-1, keepdims=True)

  def scan(carry, start):
    best_d, best_i = carry
    block = jax.lax.dynamic_slice(database, (start, 0), (chunk, f))
    d = q_norm - 2.0 * queries @ block.T + jnp.sum(jnp.square(block), axis=-1)[None, :]
    d = jnp.where(jnp.isnan(d), jnp.inf, jnp.maximum(d, 0.0))
    idx = start + jnp.arange(chunk)
    all_d = jnp.concatenate([best_d, d], axis=1)
    all_i = jnp.concatenate([best_i, jnp.broadcast_to(idx, d.shape)], axis=1)
    neg, pos = jax.lax.top_k(-all_d, k)
    return (-neg, jnp.take_along_axis(all_i, pos, axis=1)), None

  init = (jnp.full((queries.shape[0], k), jnp.inf), jnp.zeros((queries.shape[0], k), jnp.int32))
  (dist, index), _ = jax.lax.scan(scan, init, jnp.arange(0, padded, chunk))
  return dist, index


def draw_grid(path: str, rows: list[list[np.ndarray]], titles: list[list[str]]) -> None:
  """One row per query: the query, a gap, then its neighbours nearest first; `titles` name
  every image of a row."""
  cols = max(len(r) for r in rows)
  with figures.figure(path, len(rows), cols, figsize=(1.6 * cols, 1.75 * len(rows)),
                      squeeze=False) as (fig, axes):
    for ax in axes.ravel():
      ax.axis("off")
    for r, images in enumerate(rows):
      for col, image in enumerate(images):
        grey = image.shape[-1] == 1
        ax = axes[r, col]
        ax.imshow(image[..., 0] if grey else image, cmap="gray" if grey else None)
        ax.set_title(titles[r][col], fontsize=6, color="tab:red" if col == 0 else "black")
        if col == 0:  # the query, framed and set apart
          ax.axis("on")
          ax.set_xticks([])
          ax.set_yticks([])
          for spine in ax.spines.values():
            spine.set_edgecolor("tab:red")
            spine.set_linewidth(2)
    fig.suptitle("each row: a query (red), then its nearest training images by fc7 distance",
                 fontsize=8)


def _names_and_labels(split, which: str) -> tuple[list[str], np.ndarray]:
  """Each record's name (a file's path, or split#index) and label."""
  if hasattr(split, "paths") and len(getattr(split, "paths")) == len(split) and not hasattr(
      split, "split"):
    names = list(split.paths)
  else:
    names = [f"{which}#{i}" for i in range(len(split))]
  return names, inference.split_labels(split)


def _save(output: str, features: np.ndarray, names, labels, class_names, checkpoint: str) -> None:
  """The features with what they are of and whose they are: `checkpoint`, the step directory
  of the network that computed them (a database is searched only by that network)."""
  with workdir_lib.output_file(output, "wb") as f:  # the name given (np.savez appends .npz)
    np.savez(f, features=features.astype(np.float32), names=np.asarray(names, str),
             labels=np.asarray(labels, np.int64), class_names=np.asarray(class_names, str),
             checkpoint=np.asarray(os.path.abspath(checkpoint)))


def extract_and_search(workdir: str, *, step: int | None = None, best: bool = False,
                       split: str | None = None, folder: str = "", output: str = "",
                       neighbors: int = 0, num_queries: int = 5, database: str = "",
                       grid: str = "neighbors.png", query_paths: tuple[str, ...] = ()) -> None:
  """fc7 features of a split or a folder into `output` (.npz); with `neighbors` > 0, each
  query's nearest training images (the validation split's first `num_queries`, or
  `query_paths`), printed and drawn into `grid` (Figure 4, right)."""
  if not (split or folder or neighbors > 0):
    raise UserError("nothing to do: give --split or --folder (with --output), or --neighbors")
  if (split or folder) and not output:
    raise UserError("--output=FILE.npz is needed with --split or --folder")
  if output:
    workdir_lib.check_output(output, (".npz",))
  if neighbors > 0:
    workdir_lib.check_output(grid, workdir_lib.FIGURES)
  saved_db = _read_database(database) if database and neighbors > 0 else None
  trained = inference.load(workdir, step=step, best=best)
  classes = trained.class_names
  if split or folder:
    if folder:
      paths = inference.images_under(folder)

      def image_at(i):
        try:
          return trained.read_image(paths[i])
        except (OSError, image_files.UnreadableImage) as e:
          logging.warning("skipping unreadable image %s (%s)", paths[i], e)
          return None

      feats = inference.predict_all(trained, len(paths), image_at,
                                    what=f"features of {folder}")["fc7"]
      names = paths
      labels = [classes.index(c) if (c := inference.folder_class(p, classes)) else -1
                for p in paths]
    else:
      split_data, image_at = inference.split_images(trained, split)
      feats = inference.predict_all(trained, len(split_data), image_at,
                                    what=f"features of the {split} split")["fc7"]
      names, labels = _names_and_labels(split_data, split)
    _save(output, feats, names, labels, classes, trained.path)
    print(f"features {feats.shape} of {len(names)} images written: {output}")
  if neighbors <= 0:
    return
  train_split, train_image = inference.split_images(trained, "train")
  train_names, train_labels = _names_and_labels(train_split, "train")
  if saved_db is not None:
    rows_db = saved_db["features"]
    if saved_db["checkpoint"] != os.path.abspath(trained.path):
      raise UserError(f"--database {database} holds the features computed by "
                      f"{saved_db['checkpoint'] or 'an unknown network'}, not by "
                      f"{trained.path}: distances between two networks' features mean nothing; "
                      "write it again with this checkpoint (--split=train --output=FILE.npz)")
    if len(rows_db) != len(train_split) or list(saved_db["names"]) != train_names:
      raise UserError(f"--database {database} holds the features of other images than this "
                      f"training split ({len(rows_db)} rows, {len(train_split)} images)")
  else:
    rows_db = inference.predict_all(trained, len(train_split), train_image,
                                    what="features of the training split")["fc7"]
  if query_paths:
    names, queries, bad = trained.read_images(inference.image_paths(query_paths))
    for message in bad:
      print(message, file=sys.stderr)
    query_classes = [inference.folder_class(n, classes) for n in names]
  else:
    eval_split, eval_image = inference.split_images(trained, "eval")
    _, eval_labels = _names_and_labels(eval_split, "eval")
    readable = [(i, im) for i in range(min(num_queries, len(eval_split)))
                if (im := eval_image(i)) is not None]
    names = [f"validation #{i}" for i, _ in readable]
    query_classes = [classes[eval_labels[i]] for i, _ in readable]
    queries = np.stack([im for _, im in readable])
  readable = int(np.isfinite(rows_db).all(axis=1).sum())
  if neighbors > readable:
    raise UserError(f"--neighbors={neighbors} is more than the {readable} readable training "
                    "images")
  query_feats = trained.predict(queries)["fc7"]
  dist, index = jax.device_get(nearest(jnp.asarray(query_feats), jnp.asarray(rows_db),
                                       k=neighbors))
  rows, titles = [], []
  for name, cls, query, d, idx in zip(names, query_classes, queries, dist, index):
    found = [(int(i), classes[train_labels[i]], float(np.sqrt(v))) for i, v in zip(idx, d)]
    print(f"{name}" + (f" ({cls})" if cls else "") + ": "
          + ", ".join(f"#{i} {c} ({dd:.3g})" for i, c, dd in found))
    rows.append([query] + [train_image(i) for i, _, _ in found])
    titles.append([f"query: {os.path.basename(name)}" + (f"\n{cls}" if cls else "")]
                  + [f"{c}\n{dd:.3g}" for _, c, dd in found])
  draw_grid(grid, rows, titles)
  print(f"written: {grid}")


def _read_database(path: str) -> dict:
  """The training split's features written by an earlier `--split=train --output=...`."""
  try:
    with np.load(path, allow_pickle=False) as f:
      saved = {k: f[k] for k in ("features", "names")}
      saved["checkpoint"] = str(f["checkpoint"]) if "checkpoint" in f.files else ""
  except (OSError, ValueError, EOFError, KeyError, TypeError, zipfile.BadZipFile) as e:
    raise UserError(f"cannot read --database {path}: {e} (write one with --split=train "
                    "--output=FILE.npz)") from None
  if saved["features"].ndim != 2:
    raise UserError(f"--database {path} is not a feature matrix [images, features] "
                    "(write one with --split=train --output=FILE.npz)")
  return saved


def main(argv):
  FLAGS = flags.FLAGS
  extract_and_search(FLAGS.workdir, step=FLAGS.step, best=FLAGS.best, split=FLAGS.split,
                     folder=FLAGS.folder, output=FLAGS.output, neighbors=FLAGS.neighbors,
                     num_queries=FLAGS.num_queries, database=FLAGS.database, grid=FLAGS.grid,
                     query_paths=tuple(argv[1:]))


if __name__ == "__main__":
  cli.define_restore_flags()
  flags.DEFINE_enum("split", None, ["train", "eval"], "extract features of this split")
  flags.DEFINE_string("folder", "", "extract features of every image under this folder")
  flags.DEFINE_string("output", "", "where to write the features (FILE.npz)")
  flags.DEFINE_integer("neighbors", 0, "K nearest training images per query",
                       lower_bound=0)
  flags.DEFINE_integer("num_queries", 5, "validation images used as queries",
                       lower_bound=1)
  flags.DEFINE_string("database", "", "training-split features (.npz of --split=train) to search")
  flags.DEFINE_string("grid", "neighbors.png", "PNG for the neighbour grid")
  cli.run(main, required_flags=("workdir",), positional=True)
