"""The batch layout the input, the steps, the benchmarks, inference and the tests share, and
its makers. A batch is a dict of arrays (it travels through grain, the prefetcher and jit as
a pytree); its fields are written down here, once.

A training batch (`train`), b of §4.1's random patches:

    image     uint8 [b, h, w, c]  the patches, unmirrored (the step mirrors: `normalize`)
    label     int32 [b]
    crop      int32 [b, 3]        (top, left, mirror) of each patch in its stored image
    lighting  float32 [b, c]      §4.1's PCA colour shift of each image
    shrink    float32 [b]         the 2012 code's 1 / (1 + σ) (`data.lighting_shrink`; 1 else)
    skipped   int32 [b]           unreadable images dropped before each (a count, not pixels)

An evaluation batch (`evaluation`), the centre patch or §4.1's ten (views = 10):

    image     uint8 [b, h, w, c] or [b, 10, h, w, c]
    label     int32 [b]
    crop      int32 [b, 3] or [b, 10, 3]
    skipped   int32 [b]
    mask      bool [b]            a real example (False: padding up to the batch size)

What the predict step reads (`views`) is `image` and `crop` of either.

A training batch still encoded (`encoded_train`: nvImageCodec decodes it in the training
process, on the device: `data.decode_on`) has, instead of `image`, the prepared store's JPEGs
one after the other and the records they are, for a patch the device cannot decode:

    jpeg      uint8 [capacity]    the b JPEGs, the i-th ending at jpeg_end[i]
    jpeg_end  int64 [b]           (an empty one: not sent, decoded from `index` on the host)
    index     int64 [b]           each patch's record in the split
    position  int64 [b]           its position in the training sequence (its draws' key)
"""

from __future__ import annotations

import numpy as np

TRAIN_FIELDS = ("image", "label", "crop", "lighting", "shrink", "skipped")
ENCODED_FIELDS = ("jpeg", "jpeg_end", "index", "position")
EVAL_FIELDS = ("image", "label", "crop", "skipped", "mask")


def train(image, label, crop, lighting, shrink, skipped) -> dict:
  """A training batch (the module docstring)."""
  return dict(zip(TRAIN_FIELDS, (image, label, crop, lighting, shrink, skipped)))


def train_layout(size: int, crop: int, channels: int) -> dict[str, tuple[tuple[int, ...], str]]:
  """{field: (shape, dtype)} of a training batch of `size` patches of `crop` pixels."""
  return {"image": ((size, crop, crop, channels), "uint8"), "label": ((size,), "int32"),
          "crop": ((size, 3), "int32"), "lighting": ((size, channels), "float32"),
          "shrink": ((size,), "float32"), "skipped": ((size,), "int32")}


def encoded_train(jpeg, jpeg_end, index, position, label, crop, lighting, shrink,
                  skipped) -> dict:
  """A training batch still encoded (the module docstring)."""
  fields = dict(zip(ENCODED_FIELDS, (jpeg, jpeg_end, index, position)))
  fields.update(train(None, label, crop, lighting, shrink, skipped))
  del fields["image"]
  return fields


def packed_jpegs(jpegs: list[bytes], capacity: int) -> tuple[np.ndarray, np.ndarray]:
  """(`jpeg`, `jpeg_end`) of an encoded batch: `jpegs` one after the other in `capacity`
  bytes; one that does not fit in what is left is not sent (it ends where the one before it
  does)."""
  buffer, ends, end = np.empty(capacity, np.uint8), np.empty(len(jpegs), np.int64), 0
  for i, data in enumerate(jpegs):
    if end + len(data) <= capacity:
      buffer[end:end + len(data)] = np.frombuffer(data, np.uint8)
      end += len(data)
    ends[i] = end
  return buffer, ends


def encoded_train_layout(size: int, capacity: int,
                         channels: int) -> dict[str, tuple[tuple[int, ...], str]]:
  """{field: (shape, dtype)} of an encoded training batch of `size` patches whose JPEGs
  take at most `capacity` bytes."""
  layout = {"jpeg": ((capacity,), "uint8"), "jpeg_end": ((size,), "int64"),
            "index": ((size,), "int64"), "position": ((size,), "int64")}
  layout.update(train_layout(size, 1, channels))
  del layout["image"]
  return layout


def device_layout(size: int, crop: int, channels: int) -> dict[str, tuple[tuple[int, ...], str]]:
  """`train_layout` less 'skipped' (a count the prefetcher keeps on the host): what crosses to
  the devices."""
  return {k: v for k, v in train_layout(size, crop, channels).items() if k != "skipped"}


def evaluation_layout(size: int, views: tuple[int, ...], crop: int,
                      channels: int) -> dict[str, tuple[tuple[int, ...], str]]:
  """{field: (shape, dtype)} of an evaluation batch of `size` examples (`views`: () or (10,)),
  in `EVAL_FIELDS`' order."""
  return {"image": ((size, *views, crop, crop, channels), "uint8"), "label": ((size,), "int32"),
          "crop": ((size, *views, 3), "int32"), "skipped": ((size,), "int32"),
          "mask": ((size,), "bool")}


def evaluation(records: dict | None, size: int, views: tuple[int, ...], crop: int,
               channels: int) -> dict:
  """An evaluation batch of `size` examples: the first ones `records`'s ({'image', 'label',
  'crop', 'skipped'} of n <= size examples; None: none), the rest zeros with `mask` False."""
  padded = {k: np.zeros(shape, dtype)
            for k, (shape, dtype) in evaluation_layout(size, views, crop, channels).items()}
  n = 0 if records is None else len(records["label"])
  if n:
    for key in ("image", "label", "crop", "skipped"):
      padded[key][:n] = records[key]
  padded["mask"][:n] = True
  return padded


def views(image, crop) -> dict:
  """What the predict step reads of a batch: its patches and their boxes."""
  return {"image": image, "crop": crop}
