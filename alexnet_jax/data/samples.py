"""Sample images for benchmarks and tests: JPEGs of noise, and ImageNet-like JPEGs (ImageNet's
common sizes, re-encoded at its quality) made from real photographs."""

from __future__ import annotations

import os

import numpy as np

IMAGENET_TRAIN_SIZE = 1_281_167
IMAGENET_VAL_SIZE = 50_000


def generate_jpegs(root: str, count: int, classes: int = 8, seed: int = 0,
                   split: str = "train") -> None:
  """`count` JPEGs of the "256x256-ish" kind (shorter side 256, aspect 1-1.33, either way up)
  with smooth content (upscaled noise): small, quick stand-ins for tests and the loop."""
  from PIL import Image

  rng = np.random.default_rng(seed)
  for i in range(count):
    longer = int(256 * rng.uniform(1.0, 1.33))
    size = (longer, 256) if i % 2 else (256, longer)
    small = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
    folder = os.path.join(root, split, f"c{i % classes:03d}")
    os.makedirs(folder, exist_ok=True)
    Image.fromarray(small).resize(size, Image.BICUBIC).save(
        os.path.join(folder, f"{i:06d}.JPEG"), quality=90)


# skimage's bundled colour photographs (the `benchmark` extra); matplotlib's is always there.
_SKIMAGE_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png",
                   "motorcycle_right.png", "rocket.jpg", "hubble_deep_field.jpg")
# ImageNet's training images: mostly 500x375 and 375x500, then 500x333 / 333x500, and a tail of
# larger ones (weights of the sizes drawn below).
_IMAGENET_SIZES = (((500, 375), 0.55), ((375, 500), 0.15), ((500, 333), 0.12),
                   ((333, 500), 0.05), (None, 0.13))


def real_photographs() -> dict[str, np.ndarray]:
  """{name: uint8 RGB array} of the photographs that installed packages ship: matplotlib's
  Grace Hopper, and scikit-image's colour photographs when it is installed."""
  import importlib.util

  import matplotlib
  from PIL import Image

  paths = {"grace_hopper.jpg": os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data",
                                            "sample_data", "grace_hopper.jpg")}
  spec = importlib.util.find_spec("skimage")
  if spec is not None and spec.submodule_search_locations:
    data = os.path.join(spec.submodule_search_locations[0], "data")
    paths.update({n: os.path.join(data, n) for n in _SKIMAGE_PHOTOS
                  if os.path.exists(os.path.join(data, n))})
  photos = {}
  for name, path in paths.items():
    with Image.open(path) as image:
      photos[name] = np.asarray(image.convert("RGB"))
  return photos


def generate_imagenet_like(root: str, count: int, classes: int = 8, seed: int = 0,
                           split: str = "train", quality: int = 90) -> dict:
  """`count` JPEGs like ImageNet's training images, cut from real photographs: each a random
  crop (a fifth to all of a photograph, the target's aspect), resized to a size drawn from
  ImageNet's distribution, mirrored at random, saved at `quality` with 4:2:0 chroma as cameras
  and ImageNet's JPEGs mostly are. Returns what was made: photographs used, mean KB, mean size."""
  from PIL import Image

  photos = real_photographs()
  names = sorted(photos)
  rng = np.random.default_rng(seed)
  sizes = [s for s, _ in _IMAGENET_SIZES]
  weights = np.array([w for _, w in _IMAGENET_SIZES])
  total_bytes, pixels = 0, 0
  for i in range(count):
    photo = photos[names[rng.integers(len(names))]]
    size = sizes[rng.choice(len(sizes), p=weights / weights.sum())]
    if size is None:  # the tail: 600-1600 px on the longer side
      longer = int(rng.uniform(600, 1600))
      size = (longer, int(longer * 0.75)) if rng.random() < 0.7 else (int(longer * 0.75), longer)
    h, w = photo.shape[:2]
    aspect = size[0] / size[1]
    area = rng.uniform(0.2, 1.0) * h * w
    cw = int(min(w, np.sqrt(area * aspect)))
    ch = int(min(h, cw / aspect))
    cw = int(min(cw, ch * aspect))
    top, left = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    image = Image.fromarray(photo[top:top + ch, left:left + cw]).resize(size, Image.BICUBIC)
    if rng.random() < 0.5:
      image = image.transpose(Image.FLIP_LEFT_RIGHT)
    folder = os.path.join(root, split, f"c{i % classes:03d}")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{i:06d}.JPEG")
    image.save(path, quality=quality, subsampling="4:2:0")
    total_bytes += os.path.getsize(path)
    pixels += size[0] * size[1]
  return {"photographs": names, "images": count, "mean_kb": round(total_bytes / count / 1e3, 1),
          "mean_pixels": int(pixels / count)}
