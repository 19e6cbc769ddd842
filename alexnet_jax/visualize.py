"""Figure 3: the conv1 kernels, one block of rows per column under its title and mean chroma, and
how colour-specific each column is.

  python -m alexnet_jax.visualize kernels --workdir=DIR [--output=kernels.png] [--best]

§6.1: "the kernels on GPU 1 are largely color-agnostic, while the kernels on on GPU 2 are largely
color-specific". Each kernel is drawn normalised to [0, 1] on its own; the printed score per
column is the mean chroma of its kernels: for each kernel (normalised the same way) the mean over
pixels of max(R, G, B) − min(R, G, B), so 0 is a grey kernel. One JSON line per column.
"""

from __future__ import annotations

import json

import jax
import numpy as np
from absl import flags

from alexnet_jax import cli, inference
from alexnet_jax import workdir as workdir_lib
from alexnet_jax.errors import UserError

def normalised_kernels(kernel: np.ndarray) -> np.ndarray:
  """conv1 [columns, k, k, cin, cout] -> [columns, cout, k, k, cin], each kernel in [0, 1]."""
  k = np.moveaxis(np.asarray(kernel, np.float64), -1, 1)
  low = k.min(axis=(2, 3, 4), keepdims=True)
  span = k.max(axis=(2, 3, 4), keepdims=True) - low
  return (k - low) / np.where(span > 0, span, 1.0)


def colour_specificity(kernel: np.ndarray) -> list[float | None]:
  """Mean chroma (max − min over RGB, per pixel, of the normalised kernel) per column; None
  per column for kernels of a greyscale dataset, which cannot show it."""
  k = normalised_kernels(kernel)
  if k.shape[-1] != 3:
    return [None] * k.shape[0]
  chroma = k.max(axis=-1) - k.min(axis=-1)
  return [float(c) for c in chroma.mean(axis=(1, 2, 3))]


TITLE_PIXELS = 18  # the block titles' font size


def draw_kernels(path: str, kernel: np.ndarray, per_row: int = 8,
                 chroma: list[float | None] | None = None) -> tuple[int, int]:
  """Kernels as tiles, one block per column under a title naming the column (the paper's GPU)
  and its mean chroma; returns the PNG size."""
  from PIL import Image, ImageDraw, ImageFont

  k = normalised_kernels(kernel)
  columns, count, size = k.shape[0], k.shape[1], k.shape[2]
  rows = -(-count // per_row)
  tile, gap = size + 1, size
  height = columns * rows * tile + (columns - 1) * gap
  canvas = np.ones((height, per_row * tile, 3))
  for c in range(columns):
    for i in range(count):
      y = c * (rows * tile + gap) + (i // per_row) * tile
      x = (i % per_row) * tile
      canvas[y:y + size, x:x + size] = k[c, i] if k.shape[-1] == 3 else k[c, i][..., :1]
  scale = max(1, 256 // size)
  tiles = Image.fromarray((canvas * 255).round().astype(np.uint8))
  tiles = tiles.resize((tiles.width * scale, tiles.height * scale), Image.NEAREST)
  font = ImageFont.load_default(size=TITLE_PIXELS)
  header = TITLE_PIXELS + 10  # a line of text above each block
  image = Image.new("RGB", (tiles.width, tiles.height + columns * header), "white")
  draw = ImageDraw.Draw(image)
  block = (rows * tile + gap) * scale
  for c in range(columns):
    top = c * (block + header)
    image.paste(tiles.crop((0, c * block, tiles.width, min(c * block + rows * tile * scale,
                                                            tiles.height))), (0, top + header))
    score = chroma[c] if chroma else None
    draw.text((4, top + 4), f"column {c} (GPU {c + 1}): {count} kernels"
              + (f", mean chroma {score:.3f}" if score is not None else ""), fill="black",
              font=font)
  with workdir_lib.output_file(path, "wb") as f:
    image.save(f, format="JPEG" if path.lower().endswith(".jpg") else "PNG")
  return image.size


def kernels_figure(workdir: str, *, step: int | None = None, best: bool = False,
                   output: str = "kernels.png") -> None:
  """Draws Figure 3 (conv1's kernels) into `output` and prints each column's mean chroma."""
  workdir_lib.check_output(output, (".png", ".jpg"))
  trained = inference.load(workdir, step=step, best=best)
  kernel = np.asarray(jax.device_get(trained.params["conv1"]["kernel"]))
  scores = colour_specificity(kernel)
  size = draw_kernels(output, kernel, chroma=scores)
  for column, score in enumerate(scores):
    print(json.dumps({"column": column, "kernels": kernel.shape[-1], "mean_chroma": score},
                     ensure_ascii=False))
  print(f"written: {output} ({size[0]}x{size[1]})")


def main(argv):
  FLAGS = flags.FLAGS
  if argv[1:] != ["kernels"]:
    raise UserError("usage: python -m alexnet_jax.visualize kernels --workdir=DIR")
  kernels_figure(FLAGS.workdir, step=FLAGS.step, best=FLAGS.best, output=FLAGS.output)


if __name__ == "__main__":
  cli.define_restore_flags()
  flags.DEFINE_string("output", "kernels.png", "PNG to draw the kernels into")
  cli.run(main, required_flags=("workdir",), positional=True)
