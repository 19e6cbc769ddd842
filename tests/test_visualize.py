"""`python -m alexnet_jax.visualize kernels`: Figure 3 and the columns' colour specificity."""

import json

import numpy as np
from PIL import Image


def test_kernels_figure_and_colour_specificity(straight_run, tmp_path, capsys):
  from alexnet_jax import visualize

  grey = np.zeros((2, 3, 3, 3, 4))
  grey[0] = np.random.default_rng(0).normal(size=(3, 3, 1, 4))  # equal RGB: colour-agnostic
  grey[1] = np.random.default_rng(1).normal(size=(3, 3, 3, 4))
  scores = visualize.colour_specificity(grey)
  assert scores[0] < 1e-12 < 0.1 < scores[1]
  workdir, _ = straight_run
  out = tmp_path / "kernels.png"
  visualize.kernels_figure(workdir, output=str(out))
  lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("{")]
  assert len(lines) == 2 and '"kernels": 16' in lines[0]
  header = visualize.TITLE_PIXELS + 10
  with Image.open(out) as png:  # 2 blocks of 2 rows x 8 kernels of 5+1 px and a gap, x51,
    assert png.size == (8 * 6 * 51, (2 * 2 * 6 + 5) * 51 + 2 * header)  # each under a title
    title = np.asarray(png.convert("L"))[:header]
  # The title is legible: its letters span at least 12 pixel rows (the default bitmap font's
  # were 8 tall on a 2,448-pixel-wide figure). Mutation: the font size dropped -> red.
  inked = np.flatnonzero((title < 128).any(axis=1))
  assert inked.size and inked[-1] - inked[0] + 1 >= 12
  # The printed chroma is the checkpoint's, and each block's first tile is its column's first
  # kernel normalised on its own, each pixel a 51x51 square from the block's left edge.
  # Mutations: the RGB test for drawing in grey inverted -> red; the second block cut from
  # another place (`c * block` -> `c / block`) -> red; the block cut or pasted one pixel to
  # the right -> red.
  from alexnet_jax import inference

  kernel = np.asarray(inference.load(workdir).params["conv1"]["kernel"])
  for line, score in zip(lines, visualize.colour_specificity(kernel)):
    assert json.loads(line)["mean_chroma"] == score
  with Image.open(out) as png:
    pixels = np.asarray(png.convert("RGB"))
  for column in range(2):
    top = column * ((2 * 6 + 5) * 51 + header) + header  # a block: 2 rows of 6 px and a gap
    tile = pixels[top:top + 5 * 51, :5 * 51]
    want = (visualize.normalised_kernels(kernel)[column, 0] * 255).round()
    want = np.kron(want, np.ones((51, 51, 1))).astype(np.uint8)
    np.testing.assert_array_equal(tile, want, err_msg=f"column {column}")


def test_a_grey_networks_kernels_are_drawn_without_a_chroma(tmp_path, capsys):
  """The embedded default's network sees grey images: its kernels are drawn grey and no
  colour score is printed (null). Mutations: `[None] * columns` -> `/` (a TypeError); the
  chroma of the one grey channel (0 per column) -> red."""
  from alexnet_jax import visualize
  from test_model_card import fashion_workdir

  workdir = fashion_workdir(str(tmp_path / "fashion"))
  visualize.kernels_figure(workdir, output=str(tmp_path / "grey.png"))
  lines = [json.loads(l) for l in capsys.readouterr().out.splitlines() if l.startswith("{")]
  assert [line["mean_chroma"] for line in lines] == [None, None]
  with Image.open(tmp_path / "grey.png") as png:
    pixels = np.asarray(png.convert("RGB")).astype(int)
  assert (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all()


def test_each_kernel_is_drawn_spanning_black_to_white_on_its_own():
  """§6.1's figure scales each kernel to [0, 1] by itself: a kernel a hundred times larger or
  smaller (a trained conv1's weights span less than 1), or shifted, looks the same, and a
  constant kernel is black, not NaN. Mutations: min <-> max in the normalisation -> red;
  `span > 0` -> `>= 0` (0/0 for a constant kernel) -> red; `span > 0` -> `> 1` -> red."""
  from alexnet_jax import visualize

  kernel = np.random.default_rng(2).normal(size=(2, 3, 3, 3, 4))
  kernel[..., 1] *= 100
  kernel[..., 2] *= 0.01
  kernel[1, ..., 3] = 0.7  # constant
  k = visualize.normalised_kernels(kernel)
  assert k.shape == (2, 4, 3, 3, 3)
  spans = k.reshape(2, 4, -1)
  np.testing.assert_allclose(spans.min(-1), 0)
  np.testing.assert_allclose(np.delete(spans.max(-1).reshape(-1), 7), 1)
  assert not k[1, 3].any()
  np.testing.assert_allclose(visualize.normalised_kernels(7 * kernel + 3), k, atol=1e-12)
