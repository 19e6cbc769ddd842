"""Top-5 predictions for image files from a trained workdir (§4.1 test time, Figure 4 left).

  python -m alexnet_jax.predict --workdir=DIR [--step=N | --best] [--ten_crop] \
      [--output=preds.png] IMAGE...

Prints, per image, its five most probable classes with their probabilities. An unreadable image
is reported on stderr and the others are still predicted. `--output` draws Figure 4 (left):
each image with its top-5 bars, the true class in red when the image's folder is a class name.
"""

from __future__ import annotations

import os
import sys

import numpy as np
from absl import flags

from alexnet_jax import cli, inference
from alexnet_jax import workdir as workdir_lib
from alexnet_jax.errors import UserError

FIGURES = (".png", ".pdf", ".svg", ".jpg")  # what matplotlib writes


def top5(probs: np.ndarray, class_names) -> list[list[tuple[str, float]]]:
  """Each row's five most probable classes (all of them when there are fewer)."""
  order = np.argsort(-probs, axis=-1, kind="stable")[:, :5]
  return [[(class_names[j], float(p[j])) for j in row] for p, row in zip(probs, order)]


def true_class(path: str, class_names) -> str | None:
  folder = os.path.basename(os.path.dirname(os.path.abspath(path)))
  return folder if folder in class_names else None


def draw_figure4(path: str, stored: np.ndarray, names: list[str], rows, class_names) -> None:
  """Each image above its top-5 bars (Figure 4 left); the true class's bar in red."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  n = len(names)
  cols = min(n, 4)
  grid = -(-n // cols)
  fig, axes = plt.subplots(grid * 2, cols, figsize=(3 * cols, 4.2 * grid),
                           gridspec_kw={"height_ratios": [3, 1.4] * grid}, squeeze=False)
  for ax in axes.ravel():
    ax.axis("off")
  for i, (name, image, row) in enumerate(zip(names, stored, rows)):
    top, bottom = axes[2 * (i // cols), i % cols], axes[2 * (i // cols) + 1, i % cols]
    truth = true_class(name, class_names)
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
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def predict_files(workdir: str, paths: list[str], *, step: int | None = None,
                  best: bool = False, ten_crop: bool = False, output: str = "") -> int:
  """Prints each readable image's top-5 classes (unreadable ones on stderr) and draws Figure 4
  (left) into `output`; returns the exit status (1 when no image could be read)."""
  if not paths:
    raise UserError("give one or more image files after the flags")
  if output:
    workdir_lib.check_output(output, FIGURES)
  trained = inference.load(workdir, step=step, best=best)
  good, stored, bad = trained.read_images(paths)
  for message in bad:
    print(message, file=sys.stderr)
  probs = trained.predict(stored, ten_crop=ten_crop)["probs"]
  rows = top5(probs, trained.class_names)
  for path, row in zip(good, rows):
    print(path)
    for name, p in row:
      print(f"  {p:.4f}  {name}")
  if output and good:
    draw_figure4(output, stored, good, rows, trained.class_names)
    print(f"written: {output}")
  if bad:
    print(f"{len(bad)} of {len(paths)} images unreadable", file=sys.stderr)
  return 0 if good else 1


def main(argv):
  FLAGS = flags.FLAGS
  status = predict_files(FLAGS.workdir, argv[1:], step=FLAGS.step, best=FLAGS.best,
                         ten_crop=FLAGS.ten_crop, output=FLAGS.output)
  if status:
    sys.exit(status)


if __name__ == "__main__":
  cli.define_restore_flags()
  flags.DEFINE_bool("ten_crop", False, "average the softmax over the ten §4.1 crops")
  flags.DEFINE_string("output", "", "PNG to draw Figure 4 (left) into")
  cli.run(main, required_flags=("workdir",), positional=True)
