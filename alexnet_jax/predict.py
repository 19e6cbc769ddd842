r"""The most probable classes of image files from a trained workdir (§4.1 test time, Figure 4
left).

  python -m alexnet_jax.predict --workdir=DIR [--step=N | --best] [--ten_crop] [--topk=5] \
      [--output=preds.json|preds.csv] [--figure=preds.png] IMAGE_OR_FOLDER...

Prints the checkpoint used, then per image its `--topk` most probable classes with their
probabilities. A folder stands for every image below it. An unreadable image is reported on
stderr and the others are still predicted; an image the model sees otherwise than it looks (a
colour photograph read by a greyscale model, a non-square one squashed by a model trained on
squashed images) is said once. `--output` writes the predictions as JSON or CSV; `--figure`
draws Figure 4 (left): each image above its bars, the image's true class in red when its
folder is named after one of the model's classes.
"""

from __future__ import annotations

import csv
import json
import os
import sys

import numpy as np
from absl import flags, logging
from PIL import Image

from alexnet_jax import cli, figures, inference
from alexnet_jax import workdir as workdir_lib
from alexnet_jax.errors import UserError

TABLES = (".json", ".csv")


def top_k(probs: np.ndarray, class_names, k: int = 5) -> list[list[tuple[str, float]]]:
  """Each row's `k` most probable classes (all of them when there are fewer)."""
  order = np.argsort(-probs, axis=-1, kind="stable")[:, :k]
  return [[(class_names[j], float(p[j])) for j in row] for p, row in zip(probs, order)]


def _how_it_is_seen(path: str, trained) -> str | None:
  """What the model does to this image that a reader might not expect, or None."""
  try:
    with Image.open(path) as image:
      mode, (width, height) = image.mode, image.size
  except (OSError, ValueError):
    return None
  if int(trained.config.model.in_channels) == 1 and mode not in ("L", "1", "I", "I;16", "F"):
    return "a colour image, read in grey as the model was trained"
  if trained.config.data.resize == "squash" and max(width, height) > 1.05 * min(width, height):
    return (f"{width}x{height} squashed to {trained.stored_size}x{trained.stored_size} as the "
            "model's training images were")
  return None


def draw_figure4(path: str, stored: np.ndarray, names: list[str], rows, class_names) -> None:
  """Each image above its bars (Figure 4 left); the true class's bar in red."""
  n = len(names)
  cols = min(n, 4)
  grid = -(-n // cols)
  with figures.figure(path, grid * 2, cols, figsize=(3 * cols, 4.2 * grid), squeeze=False,
                      gridspec_kw={"height_ratios": [3, 1.4] * grid}) as (fig, axes):
    for ax in axes.ravel():
      ax.axis("off")
    for i, (name, image, row) in enumerate(zip(names, stored, rows)):
      top, bottom = axes[2 * (i // cols), i % cols], axes[2 * (i // cols) + 1, i % cols]
      truth = inference.folder_class(name, class_names)
      top.imshow(image[..., 0] if image.shape[-1] == 1 else image,
                 cmap="gray" if image.shape[-1] == 1 else None)
      top.set_title(truth or os.path.basename(name), fontsize=9)
      labels, values = [c for c, _ in row][::-1], [p for _, p in row][::-1]
      bottom.axis("on")
      bottom.barh(range(len(values)), values,
                  color=["red" if c == truth else "tab:blue" for c in labels])
      bottom.set_yticks(range(len(values)), labels, fontsize=7)
      bottom.set_xlim(0, 1)
      bottom.tick_params(axis="x", labelsize=6)
    fig.suptitle("the most probable classes of each image; red: its true class (its folder's "
                 "name)", fontsize=9)


def write_table(path: str, rows: list[dict]) -> None:
  """The predictions as JSON (a list of {'image', 'predictions': [{'class', 'probability'}]})
  or CSV (one line per image and rank)."""
  with workdir_lib.output_file(path) as f:
    if path.lower().endswith(".json"):
      json.dump(rows, f, indent=1)
      return
    writer = csv.writer(f)
    writer.writerow(["image", "rank", "class", "probability"])
    for row in rows:
      for rank, p in enumerate(row["predictions"], 1):
        writer.writerow([row["image"], rank, p["class"], f"{p['probability']:.6f}"])


def predict_files(workdir: str, paths: list[str], *, step: int | None = None,
                  best: bool = False, ten_crop: bool = False, topk: int = 5, output: str = "",
                  figure: str = "") -> int:
  """Prints each readable image's `topk` classes (unreadable ones on stderr), writes them to
  `output` (JSON or CSV) and draws Figure 4 (left) into `figure`; returns the exit status (1
  when no image could be read)."""
  if not paths:
    raise UserError("give one or more image files or folders after the flags")
  if topk < 1:
    raise UserError(f"--topk must be >= 1, got {topk}")
  if output:
    workdir_lib.check_output(output, TABLES)
  if figure:
    workdir_lib.check_output(figure, workdir_lib.FIGURES)
  paths = inference.image_paths(paths)
  trained = inference.load(workdir, step=step, best=best)
  print(f"checkpoint: {trained.path} (step {trained.step})")
  good, stored, bad = trained.read_images(paths)
  for message in bad:
    print(message, file=sys.stderr)
  seen = [(p, why) for p in good if (why := _how_it_is_seen(p, trained))]
  if seen:
    logging.warning("%d image(s) seen otherwise than they look: %s (%s)%s", len(seen),
                    seen[0][0], seen[0][1], ", ..." if len(seen) > 1 else "")
  probs = trained.predict(stored, ten_crop=ten_crop)["probs"]
  rows = top_k(probs, trained.class_names, topk)
  for path, row in zip(good, rows):
    print(path)
    for name, p in row:
      print(f"  {p:.4f}  {name}")
  if output:
    write_table(output, [{"image": path, "checkpoint": trained.path, "step": trained.step,
                          "predictions": [{"class": c, "probability": round(p, 6)}
                                          for c, p in row]}
                         for path, row in zip(good, rows)])
    print(f"written: {output}")
  if figure and good:
    draw_figure4(figure, stored, good, rows, trained.class_names)
    print(f"written: {figure}")
  if bad:
    print(f"{len(bad)} of {len(paths)} images unreadable", file=sys.stderr)
  return 0 if good else 1


def main(argv):
  FLAGS = flags.FLAGS
  status = predict_files(FLAGS.workdir, argv[1:], step=FLAGS.step, best=FLAGS.best,
                         ten_crop=FLAGS.ten_crop, topk=FLAGS.topk, output=FLAGS.output,
                         figure=FLAGS.figure)
  if status:
    sys.exit(status)


if __name__ == "__main__":
  cli.define_restore_flags()
  flags.DEFINE_bool("ten_crop", False, "average the softmax over the ten §4.1 crops")
  flags.DEFINE_integer("topk", 5, "classes to print per image", lower_bound=1)
  flags.DEFINE_string("output", "", "FILE.json or FILE.csv: the predictions")
  flags.DEFINE_string("figure", "", "FILE.png: Figure 4 (left)")
  cli.run(main, required_flags=("workdir",), positional=True)
