"""The device half of §2's preprocessing: uint8 crops to centred float images, inside the step.

The input workers send unmirrored uint8 crops with their boxes (top, left, mirrored), the PCA
lighting shift (§4.1) and, in training, each crop's scale (`shrink`); here each crop loses the
mean image's patch, is mirrored when its box says so, gains its lighting shift, and is scaled
by `pixel_scale` (and its `shrink`). Moving this off the host keeps the host→device traffic at
one byte per pixel and the host's work at a decode and one contiguous copy per image.

The mean patch is the mean image's patch at the crop's own position (`data.mean_patch='crop'`,
Caffe's way, and what §2's "subtracting the mean activity ... from each pixel" reads as), or its
centre patch whatever the crop and mirror (`'centre'`: the 2012 code's `convdata_jpeg.py`,
which subtracts `data_mean_crop`, the centre crop of the mean image, from every training crop
and every test view).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

MEAN_PATCHES = ("crop", "centre")


def normalize(batch: dict, mean: jax.Array, pixel_scale: float,
              centre_mean: bool = False) -> jax.Array:
  """float32 images [..., h, w, c] from `batch['image']` (uint8), `batch['crop']` [..., 3], and
  the optional `batch['lighting']` [..., c] and `batch['shrink']` [...]; `mean` is the
  stored-size mean image [S, S, c]; `centre_mean`: subtract its centre patch from every crop."""
  images = batch["image"]
  lead, (h, w, c) = images.shape[:-3], images.shape[-3:]
  crops = batch["crop"].reshape(-1, 3)
  top, left = (mean.shape[0] - h) // 2, (mean.shape[1] - w) // 2
  centre_patch = mean[top:top + h, left:left + w]

  def centre(image, crop):
    image = image.astype(jnp.float32)
    if centre_mean:  # the crop as cut and mirrored, less the same centre patch
      return jnp.where(crop[2] > 0, image[:, ::-1], image) - centre_patch
    centred = image - jax.lax.dynamic_slice(mean, (crop[0], crop[1], 0), (h, w, c))
    return jnp.where(crop[2] > 0, centred[:, ::-1], centred)

  centred = jax.vmap(centre)(images.reshape(-1, h, w, c), crops)
  if "lighting" in batch:
    centred = centred + batch["lighting"].reshape(-1, 1, 1, c)
  if "shrink" in batch:
    centred = centred * batch["shrink"].reshape(-1, 1, 1, 1)
  return (centred * pixel_scale).reshape(*lead, h, w, c)
