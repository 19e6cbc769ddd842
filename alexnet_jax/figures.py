"""The project's figures: matplotlib off-screen, a layout that fits its labels, and the file
written whole or not at all (through `workdir.output_file`)."""

from __future__ import annotations

import contextlib
import os

from alexnet_jax import workdir as workdir_lib


@contextlib.contextmanager
def figure(path: str, *subplots, **options):
  """Yields `(fig, axes)` of `plt.subplots(*subplots, **options)` with a constrained layout;
  saved to `path` (its format from the extension, 100 dpi) when the block ends."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, axes = plt.subplots(*subplots, layout="constrained", **options)
  try:
    yield fig, axes
    with workdir_lib.output_file(path, "wb") as f:
      fig.savefig(f, format=os.path.splitext(path)[1][1:].lower() or "png", dpi=100)
  finally:
    plt.close(fig)
