"""The device half of §2's preprocessing: uint8 crops to centred float images, inside the step.

The input workers send unmirrored uint8 crops with their boxes (top, left, mirrored) and the
PCA lighting shift (§4.1); here each crop loses the matching patch of the training set's mean
image, is mirrored when its box says so, gains its lighting shift, and is scaled by
`pixel_scale`. Moving this off the host keeps the host→device traffic at one byte per pixel
and the host's work at a decode and one contiguous copy per image.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def train_pixel_scale(data_config) -> float:
  """The scale of training crops: `pixel_scale`, divided by 1 + `pca_lighting` with
  `lighting_shrink` (the 2012 code shrinks every training crop after adding the lighting noise,
  "so that the overall scale of the training data doesn't become too different from the test
  data"; evaluation keeps `pixel_scale`)."""
  scale = float(data_config.pixel_scale)
  if data_config.lighting_shrink:
    scale /= 1.0 + float(data_config.pca_lighting)
  return scale


def normalize(batch: dict, mean: jax.Array, pixel_scale: float) -> jax.Array:
  """float32 images [..., h, w, c] from `batch['image']` (uint8), `batch['crop']` [..., 3] and
  the optional `batch['lighting']` [..., c]; `mean` is the stored-size mean image [S, S, c]."""
  images = batch["image"]
  lead, (h, w, c) = images.shape[:-3], images.shape[-3:]
  crops = batch["crop"].reshape(-1, 3)

  def centre(image, crop):
    centred = image.astype(jnp.float32) - jax.lax.dynamic_slice(mean, (crop[0], crop[1], 0),
                                                                (h, w, c))
    return jnp.where(crop[2] > 0, centred[:, ::-1], centred)

  centred = jax.vmap(centre)(images.reshape(-1, h, w, c), crops)
  if "lighting" in batch:
    centred = centred + batch["lighting"].reshape(-1, 1, 1, c)
  return (centred * pixel_scale).reshape(*lead, h, w, c)
