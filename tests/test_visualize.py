"""`python -m alexnet_jax.visualize kernels`: Figure 3 and the columns' colour specificity."""


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
