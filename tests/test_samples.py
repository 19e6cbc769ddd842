"""The sample images (`data.samples`) benchmarks and the node check generate."""

import numpy as np

from alexnet_jax.data import samples


def test_imagenet_like_jpegs_come_from_real_photographs_at_imagenets_sizes(tmp_path):
  from PIL import Image

  made = samples.generate_imagenet_like(str(tmp_path), 24, classes=3, seed=0)
  assert "grace_hopper.jpg" in made["photographs"] and made["images"] == 24
  paths = sorted(p for p in tmp_path.rglob("*.JPEG"))
  assert len(paths) == 24 and len({p.parent.name for p in paths}) == 3
  common = {(500, 375), (375, 500), (500, 333), (333, 500)}
  sizes = []
  for path in paths:
    with Image.open(path) as image:
      sizes.append(image.size)
      assert image.format == "JPEG" and image.mode == "RGB"
      pixels = np.asarray(image, np.float64)
    assert pixels.std() > 5  # content, not a flat fill
  assert sum(s in common for s in sizes) >= 16  # mostly ImageNet's common sizes; a tail above
  assert all(s in common or max(s) >= 600 for s in sizes)
  assert made["mean_kb"] > 10 and made["mean_pixels"] >= 333 * 500
