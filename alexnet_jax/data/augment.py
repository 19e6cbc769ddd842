"""§4.1's augmentation and test-time crops, as grain transforms.

Training takes a random crop (224 of 256), decides a horizontal mirror with probability 1/2
and draws the PCA lighting coefficients α ~ N(0, σ) once per image each time it is used: every
draw a hash of the seed and the record's position in the training sequence (`Augmentation`),
so a seed fixes the batches whatever reads them. `TrainBatch` cuts a whole batch of crops
(decoding image files, with stand-ins for unreadable ones), or packs its JPEGs for the device
to decode; `EvalCrops` cuts the centre crop or the ten crops (four corners, centre, and their
mirrors). The crops travel unmirrored, with their boxes and lighting: the step mirrors and
shifts them (`data.normalize`).
"""

from __future__ import annotations

import dataclasses

import grain
import numpy as np

from alexnet_jax.data import batch as batch_lib
from alexnet_jax.data import images, nvdecode
from alexnet_jax.errors import UserError


def crop_boxes(size: int, crop: int) -> list[tuple[int, int]]:
  """Top-left corners of the five §4.1 test patches: four corners, then the centre."""
  far, mid = size - crop, (size - crop) // 2
  return [(0, 0), (0, far), (far, 0), (far, far), (mid, mid)]


def _uniforms(seed: int, positions: np.ndarray, streams: int) -> np.ndarray:
  """Uniform [0, 1) numbers [n, streams], independent per (position, stream < 64): splitmix64
  of (seed, position, stream)."""
  key = np.uint64((seed * 0x9E3779B97F4A7C15) % 2**64)
  z = (np.asarray(positions, np.uint64)[:, None] * np.uint64(64)
       + np.arange(streams, dtype=np.uint64)[None, :] + key)
  z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
  z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
  z = z ^ (z >> np.uint64(31))
  return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53


@dataclasses.dataclass(frozen=True)
class Augmentation:
  """§4.1's random choices for the records at given positions of the training sequence: a
  crop box, a horizontal mirror with probability 1/2, and the PCA lighting shift
  p·(α ⊙ scale) with α ~ N(0, σ) drawn once per image each time it is used. With
  `crop_chunk` = n > 1 (the 2012 code: 32) the n consecutive positions of each chunk share the
  crop box and mirror drawn for the chunk's first position; lighting stays per image. σ may
  change during the run (`lighting_changes`: (steps done, σ) of a recorded schedule; a position
  belongs to step position // `batch_size` + 1), and with `shrink` every crop is divided by
  1 + its σ (the 2012 code's `cropped /= 1 + color_noise_coeff`, only while the noise is on).

  The draws are a hash of (seed, position): a record's augmentation depends on nothing else,
  so it is the same whatever the batching, the reader threads, the worker processes or the
  number of training processes, a restored iterator continues exactly, and a whole batch is
  drawn with a few vectorised NumPy calls."""

  stored: int
  crop: int
  flip: bool
  lighting_std: float
  lighting_scale: np.ndarray  # [c, c]: eigenvectors times √eigenvalues (`Stats`)
  seed: int
  crop_chunk: int = 1
  lighting_changes: tuple[tuple[int, float], ...] = ()
  batch_size: int = 1
  shrink: bool = False

  def lighting_stds(self, positions: np.ndarray) -> np.ndarray:
    """σ of the lighting coefficients at each position (float64 [n])."""
    stds = np.full(len(positions), self.lighting_std, np.float64)
    steps_done = positions // self.batch_size
    for done, std in self.lighting_changes:
      stds[steps_done >= done] = std
    return stds

  def draws(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(crop [n, 3] int32: top, left, mirrored; lighting [n, c] float32; shrink [n] float32:
    each crop's scale)."""
    positions = np.asarray(positions).reshape(-1)
    channels = self.lighting_scale.shape[0]
    u = _uniforms(self.seed, positions, self._draw_streams)
    if self.crop_chunk > 1:  # top, left and mirror of the chunk's first position
      u[:, :3] = _uniforms(self.seed, positions - positions % self.crop_chunk, 3)
    span = self.stored - self.crop + 1
    top, left = (np.minimum(u[:, k] * span, span - 1).astype(np.int32) for k in (0, 1))
    mirrored = (self.flip & (u[:, 2] < 0.5)).astype(np.int32)
    stds = self.lighting_stds(positions)
    lighting = np.zeros((len(positions), channels), np.float32)
    if stds.any():  # Box-Muller: two uniforms per normal
      u1, u2 = u[:, 3:3 + channels], u[:, 3 + channels:]
      alpha = stds[:, None] * np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(2 * np.pi * u2)
      lighting = (alpha @ self.lighting_scale.T).astype(np.float32)
    shrink = (1.0 / (1.0 + stds) if self.shrink else np.ones(len(positions))).astype(np.float32)
    return np.stack([top, left, mirrored], -1), lighting, shrink

  @property
  def _draw_streams(self) -> int:
    """Uniforms per record in `draws`: top, left, mirror, and two per lighting normal."""
    return 3 + 2 * self.lighting_scale.shape[0]

  def stand_ins(self, position: int, count: int, attempts: int) -> np.ndarray:
    """Record indices [attempts] in [0, count) to use, in turn, when the record at `position`
    is unreadable (hash streams after those of `draws`)."""
    first = self._draw_streams
    u = _uniforms(self.seed, np.array([position]), first + attempts)[0, first:]
    return np.minimum(u * count, count - 1).astype(np.int64)

class TrainBatch(grain.transforms.Map):
  """A batch {'index': [b], 'position': [b]} of the training sequence -> its §4.1 crops, cut
  into one uint8 array. In-memory images are cropped straight out of the split's array; image
  files are read and decoded one by one (`images.decode`), and an unreadable one is logged,
  counted in 'skipped' and replaced by another image drawn from the hash of its position, so
  batches stay full and depend on nothing but the seed."""

  MAX_ATTEMPTS = 32

  def __init__(self, augmentation: Augmentation, split, channels: int,
               resize: str = "shorter_side", decoder: str = "simplejpeg",
               jpeg_capacity: int = 0):
    self.augmentation, self.split, self.channels = augmentation, split, channels
    self._decode = images.Decode(augmentation.stored, channels, resize)
    # The prepared store's JPEGs are at the stored size: their patches decode directly.
    self._patches = (nvdecode.PatchDecoder(channels) if decoder == "nvimgcodec"
                     and getattr(split, "stored_form", False) else None)
    # > 0: the batches leave encoded (`batch.encoded_train`), for `nvdecode.DeviceDecoder`.
    self.jpeg_capacity = jpeg_capacity

  def _decoded(self, index: int, position: int) -> tuple[np.ndarray, int, int]:
    """(stored image, label, unreadable images met) for the file record at `position`."""
    stand_ins = None
    for attempt in range(self.MAX_ATTEMPTS):
      record = self._decode.map(self.split[index])  # None: unreadable, logged and counted
      if record is not None:
        return record["image"], record["label"], attempt
      if stand_ins is None:
        stand_ins = self.augmentation.stand_ins(position, len(self.split), self.MAX_ATTEMPTS)
      index = int(stand_ins[attempt])
    raise UserError(f"{self.MAX_ATTEMPTS} unreadable images in a row for one training example: "
                    "is the dataset damaged?")

  def host_patch(self, index: int, position: int, box) -> tuple[np.ndarray, int, int]:
    """(patch, label, unreadable images met) of the file record at `position`, decoded here
    by the default decoder (a stand-in drawn for an unreadable one)."""
    image, label, skipped = self._decoded(index, position)
    (top, left), c = box[:2], self.augmentation.crop
    return image[top:top + c, left:left + c], label, skipped

  def _encoded(self, index: np.ndarray, positions: np.ndarray, boxes, lighting,
               shrink) -> dict:
    """The batch with its JPEGs instead of its patches (`batch.packed_jpegs`: one that does
    not fit in `jpeg_capacity` is sent empty)."""
    records = [self.split[row] for row in index.tolist()]
    jpeg, ends = batch_lib.packed_jpegs([r["encoded"] for r in records], self.jpeg_capacity)
    labels = np.array([r["label"] for r in records], np.int32)
    return batch_lib.encoded_train(jpeg, ends, index.astype(np.int64),
                                   positions.astype(np.int64), labels, boxes, lighting, shrink,
                                   np.zeros(len(index), np.int32))

  def map(self, batch):
    index, positions = np.asarray(batch["index"]), np.asarray(batch["position"])
    boxes, lighting, shrink = self.augmentation.draws(positions)
    if self.jpeg_capacity:
      return self._encoded(index, positions, boxes, lighting, shrink)
    c = self.augmentation.crop
    out = np.empty((len(index), c, c, self.channels), np.uint8)
    skipped = np.zeros(len(index), np.int32)
    # Patches are copied unmirrored: the step mirrors (`data.normalize`), a copy NumPy makes
    # much slower on the host (docs/performance.md).
    if not self.split.encoded:
      stored = self.split.images
      for i, (row, (top, left, _)) in enumerate(zip(index.tolist(), boxes.tolist())):
        out[i] = stored[row, top:top + c, left:left + c]
      labels = self.split.labels[index].astype(np.int32)
    else:
      labels = np.empty(len(index), np.int32)
      records = [self.split[row] for row in index.tolist()] if self._patches else None
      patches = (self._patches.patches([r["encoded"] for r in records], boxes, c) if records
                 else [None] * len(index))
      for i, (row, position, (top, left, _)) in enumerate(
          zip(index.tolist(), positions.tolist(), boxes.tolist())):
        if patches[i] is not None:
          out[i], labels[i] = patches[i], records[i]["label"]
          continue
        image, labels[i], skipped[i] = self._decoded(row, position)
        out[i] = image[top:top + c, left:left + c]
    return batch_lib.train(out, labels, boxes, lighting, shrink, skipped)


class EvalCrops(grain.transforms.Map):
  """The centre crop [h,w,c], or the ten §4.1 crops [10,h,w,c], with their `crop` boxes (the
  last five are the first five again, to be mirrored by the step)."""

  def __init__(self, crop: int, ten_crop: bool):
    self.crop, self.ten_crop = crop, ten_crop

  def map(self, record):
    image, c = record["image"], self.crop
    boxes = crop_boxes(image.shape[0], c)
    if not self.ten_crop:
      top, left = boxes[4]
      return {"image": np.ascontiguousarray(image[top:top + c, left:left + c]),
              "label": np.int32(record["label"]), "crop": np.array([top, left, 0], np.int32),
              "skipped": np.int32(0)}
    patches = [image[t:t + c, l:l + c] for t, l in boxes] * 2
    crops = [(t, l, 0) for t, l in boxes] + [(t, l, 1) for t, l in boxes]
    return {"image": np.stack(patches), "label": np.int32(record["label"]),
            "crop": np.asarray(crops, np.int32), "skipped": np.int32(0)}
