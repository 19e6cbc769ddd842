"""Image files to the paper's stored form (§2): RGB, shorter side rescaled to 256, centre 256x256.

JPEGs are decoded by simplejpeg (libjpeg-turbo straight into a NumPy array, 2.2x less CPU than
Pillow on 256x256-ish JPEGs, the same pixels as Pillow's draft mode; see `decode` for how far a
reduced-scale decode is from a full one); whatever it declines is decoded by Pillow, by
content rather than file name, so the ImageNet oddities decode like any JPEG: a PNG saved as
.JPEG, CMYK JPEGs (converted to RGB), greyscale and palette images (expanded to RGB). A file
that cannot be decoded is a logged, counted skip, never an exception in the input workers.

What one file may cost is bounded: at most `MAX_FILE_BYTES` are read, an image of more pixels
than Pillow's decompression-bomb limit is refused before it is decoded, and an image more than
`MAX_ASPECT` times wider than high (or higher than wide) is cut to its central `MAX_ASPECT`:1
part before it is rescaled, so that the rescaled image stays under `MAX_ASPECT` x 256 x 256
pixels (§2 keeps only its central square; the cut is far from it).
"""

from __future__ import annotations

import io
import threading

import grain
import numpy as np
import simplejpeg
from absl import logging
from PIL import Image


MAX_FILE_BYTES = 64 * 2**20  # the bytes one image file may have
MAX_ASPECT = 8  # longer over shorter side beyond which an image is cut (see above)


class UnreadableImage(ValueError):
  pass


def _within_aspect(image: Image.Image) -> Image.Image:
  """`image`, or its central part of aspect `MAX_ASPECT`:1 when it is more elongated."""
  width, height = image.size
  if width > MAX_ASPECT * height:
    keep = MAX_ASPECT * height
    return image.crop(((width - keep) // 2, 0, (width - keep) // 2 + keep, height))
  if height > MAX_ASPECT * width:
    keep = MAX_ASPECT * width
    return image.crop((0, (height - keep) // 2, width, (height - keep) // 2 + keep))
  return image


def _rescaled_size(width: int, height: int, size: int) -> tuple[int, int]:
  scale = size / min(width, height)
  return max(size, round(width * scale)), max(size, round(height * scale))


def _centre(array: np.ndarray, size: int) -> np.ndarray:
  top, left = (array.shape[0] - size) // 2, (array.shape[1] - size) // 2
  return array[top:top + size, left:left + size]


# Integer modes of more than 8 bits per pixel (16-bit greyscale PNGs, 32-bit TIFFs), and the
# value that becomes 255. Pillow's convert() clips them to 8 bits instead of scaling.
WIDE_MODES = {"I;16": 65535, "I;16B": 65535, "I;16L": 65535, "I;16N": 65535, "I": 65535}


def _eight_bit(image: Image.Image) -> Image.Image:
  """A wide-integer image scaled to 8 bits (0..65535 -> 0..255; 32-bit values clipped to
  16 bits first); other modes as they are."""
  top = WIDE_MODES.get(image.mode)
  if top is None:
    return image
  wide = np.asarray(image).astype(np.float64)
  return Image.fromarray(np.clip(np.round(wide * (255.0 / top)), 0, 255).astype(np.uint8), "L")


RESIZES = ("shorter_side", "squash")


def to_stored(image: Image.Image, size: int, channels: int = 3,
              resize: str = "shorter_side") -> np.ndarray:
  """Rescales so the shorter side is `size`, then takes the central size x size patch (§2);
  with `resize='squash'`, resizes to size x size ignoring the aspect ratio (Caffe's
  `convert_imageset`).

  The result may be a view into the decoded image (crops copy it once, later)."""
  mode = "RGB" if channels == 3 else "L"
  if image.mode == "F":  # Pillow would clip the floats to 0-255, whatever their range
    raise UnreadableImage("a floating-point image (mode F): its values have no 0-255 scale")
  image = _eight_bit(image)
  if image.mode != mode:
    image = image.convert(mode)
  if resize == "squash":
    if image.size != (size, size):
      image = image.resize((size, size), Image.BILINEAR, reducing_gap=3.0)
    return np.asarray(image).reshape(size, size, channels)
  image = _within_aspect(image)
  width, height = image.size
  new_w, new_h = _rescaled_size(width, height, size)
  if (new_w, new_h) != (width, height):
    image = image.resize((new_w, new_h), Image.BILINEAR, reducing_gap=3.0)
  return _centre(np.asarray(image).reshape(new_h, new_w, channels), size)


def decode(data: bytes, size: int, channels: int = 3, resize: str = "shorter_side") -> np.ndarray:
  """Encoded bytes (JPEG, PNG, ...) to a uint8 [size, size, channels] array (`to_stored`'s
  `resize`); `UnreadableImage`.

  JPEGs are decoded at the smallest DCT scale (1/2, 1/4, 1/8) that keeps the shorter side
  >= size, at a fraction of the cost of a full decode. That is not the image a full decode then
  the downscale gives: on matplotlib's grace_hopper.jpg (600x512 to 256) the two differ by 2.4
  grey levels on average, 69 at most, 20 at the 99th percentile (the DCT scaling averages in
  the frequency domain before the bilinear filter sees the pixels); Pillow's `draft`, used for
  the JPEGs simplejpeg declines, scales the same way and gives the same pixels."""
  if len(data) > MAX_FILE_BYTES:
    raise UnreadableImage(f"a file of more than {MAX_FILE_BYTES} bytes (the limit on one image)")
  try:
    height, width = simplejpeg.decode_jpeg_header(data)[:2]
  except ValueError:  # not a JPEG, or damaged: Pillow decides
    return _decode_with_pillow(data, size, channels, resize)
  if height * width > max_pixels():
    raise UnreadableImage(f"{width}x{height} pixels is over the decompression-bomb limit of "
                          f"{max_pixels()} pixels (Pillow's)")
  factor = max([f for f in (1, 2, 4, 8) if min(height, width) // f >= size] or [1])
  try:
    array = simplejpeg.decode_jpeg(data, colorspace="RGB" if channels == 3 else "GRAY",
                                   min_height=-(-height // factor), min_width=-(-width // factor))
  except ValueError:  # CMYK, or damaged: Pillow decides
    return _decode_with_pillow(data, size, channels, resize)
  height, width = array.shape[:2]
  if (min(height, width) != size or (resize == "squash" and height != width)
      or max(height, width) > MAX_ASPECT * min(height, width)):
    return to_stored(Image.fromarray(array[..., 0] if channels == 1 else array), size, channels,
                     resize)
  return _centre(array.reshape(height, width, channels), size)


def max_pixels() -> int:
  """The pixel count above which every decoder refuses an image: Pillow's decompression-bomb
  error threshold (twice `Image.MAX_IMAGE_PIXELS`), applied to simplejpeg's JPEGs too."""
  return 2 * int(Image.MAX_IMAGE_PIXELS or 0) or 2**62


def _decode_with_pillow(data: bytes, size: int, channels: int,
                        resize: str = "shorter_side") -> np.ndarray:
  try:
    with Image.open(io.BytesIO(data)) as image:
      image.draft("RGB" if channels == 3 else "L", (size, size))
      return to_stored(image, size, channels, resize)
  except Image.UnidentifiedImageError:
    raise UnreadableImage("not an image file Pillow can read") from None
  except (OSError, ValueError, Image.DecompressionBombError, SyntaxError) as e:
    raise UnreadableImage(f"{type(e).__name__}: {e}") from None


class SkipCounter:
  """Counts and logs the unreadable images one input process met."""

  def __init__(self):
    self.count = 0
    self._lock = threading.Lock()

  def skip(self, name: str, why: str) -> None:
    with self._lock:
      self.count += 1
      count = self.count
    logging.warning("skipping unreadable image %s (%s); %d skipped so far in this reader",
                    name, why, count)


SKIPPED = SkipCounter()


class Decode(grain.transforms.Map):
  """{'encoded', 'label', 'name'} -> {'image': uint8 [s, s, c], 'label'}, or None when the
  image cannot be decoded (filtered out downstream, logged and counted in `SKIPPED`)."""

  def __init__(self, size: int, channels: int = 3, resize: str = "shorter_side"):
    self.size, self.channels, self.resize = size, channels, resize

  def map(self, record):
    try:
      image = decode(record["encoded"], self.size, self.channels, self.resize)
    except UnreadableImage as e:
      SKIPPED.skip(record.get("name", "?"), str(e))
      return None
    return {"image": image, "label": record["label"]}
