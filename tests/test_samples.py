"""The sample images (`data.samples`) benchmarks and the node check generate."""

import functools

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


PERIOD = 40.0  # pixels: the waves of the synthetic photograph (`_stripes`)


@functools.cache
def _quantization(quality: int) -> dict:
  """The quantization tables PIL writes at `quality` (4:2:0 chroma)."""
  import io

  from PIL import Image

  out = io.BytesIO()
  Image.new("RGB", (16, 16)).save(out, format="JPEG", quality=quality, subsampling="4:2:0")
  with Image.open(out) as image:
    return image.quantization


def _saved_at_quality_90_420(image) -> bool:
  """Whether an opened JPEG was written at quality 90 with 4:2:0 chroma."""
  from PIL import JpegImagePlugin

  return image.quantization == _quantization(90) and JpegImagePlugin.get_sampling(image) == 2


def test_noise_jpegs_are_256_on_the_shorter_side_either_way_up_and_smooth(tmp_path):
  """The loop's stand-ins: shorter side 256, the longer 256-340 (aspect 1-1.33), landscape for
  odd indices, quality 90, upscaled noise (smooth, not flat). Mutations: the shorter side 257;
  `i % 3`; the aspect range 2.0-1.33 or 1.0-2.66; quality 91; four channels -> red."""
  from PIL import Image

  samples.generate_jpegs(str(tmp_path), 6, classes=2, seed=0, split="val")
  paths = sorted((tmp_path / "val").rglob("*.JPEG"), key=lambda p: p.name)
  assert [p.relative_to(tmp_path / "val").as_posix() for p in paths] == [
      f"c{i % 2:03d}/{i:06d}.JPEG" for i in range(6)]
  for i, path in enumerate(paths):
    with Image.open(path) as image:
      assert image.mode == "RGB" and _saved_at_quality_90_420(image)
      width, height = image.size
      pixels = np.asarray(image, np.float64)
    shorter, longer = (height, width) if i % 2 else (width, height)
    assert shorter == 256 and 256 <= longer <= 340, (i, image.size)
    steps = np.abs(np.diff(pixels, axis=1)).mean()
    assert pixels.std() > 30 and steps < 15, (pixels.std(), steps)  # noise: about 85


def _stripes(height: int = 1200, width: int = 1600) -> np.ndarray:
  """A 'photograph' that shows how it was cut: red waves along x, green waves along y (both of
  `PERIOD` pixels), and blue rising from left to right."""
  y, x = np.mgrid[:height, :width]
  photo = np.empty((height, width, 3), np.uint8)
  photo[..., 0] = 128 + 100 * np.sin(2 * np.pi * x / PERIOD)
  photo[..., 1] = 128 + 100 * np.sin(2 * np.pi * y / PERIOD)
  photo[..., 2] = 40 + 175 * x / width
  return photo


def _period(signal: np.ndarray) -> float:
  """The period in pixels of a signal's strongest wave (its mean and slow trend left out)."""
  signal = signal - np.polyval(np.polyfit(np.arange(signal.size), signal, 1),
                               np.arange(signal.size))
  spectrum = np.abs(np.fft.rfft(signal * np.hanning(signal.size), n=1 << 16))
  frequencies = np.fft.rfftfreq(1 << 16)
  spectrum[frequencies < 3 / signal.size] = 0
  return 1 / frequencies[spectrum.argmax()]


def test_imagenet_like_jpegs_are_cut_at_their_aspect_from_a_fifth_to_all_mirrored_half(
    tmp_path, monkeypatch):
  """400 images cut from one photograph whose waves show each cut: ImageNet's sizes in their
  proportions, the tail 600-1600 pixels at 4:3 either way up, each crop at its image's aspect
  (the waves' periods equal along x and y), a fifth to all of the photograph, half mirrored,
  quality 90 at 4:2:0, and the summary the files' own. Mutations: each size's weight doubled;
  the tail's 0.75 -> 1.5 or all landscape; the crop square (`size[1] / size[1]`);
  the area from 0.4 or up to 2.0; all mirrored; quality 91; the pixels counted as
  `size[1] * size[1]`; the mean KB to 2 decimals -> red."""
  import os

  from PIL import Image

  photo = _stripes()
  monkeypatch.setattr(samples, "real_photographs", lambda: {"stripes.png": photo})
  count = 400
  made = samples.generate_imagenet_like(str(tmp_path), count, classes=4, seed=0)
  paths = sorted(tmp_path.rglob("*.JPEG"))
  sizes, fractions, mirrored, total_bytes = [], [], [], 0
  for path in paths:
    with Image.open(path) as image:
      assert _saved_at_quality_90_420(image)
      pixels = np.asarray(image, np.float64)
    height, width = pixels.shape[:2]
    sizes.append((width, height))
    total_bytes += os.path.getsize(path)
    across, down = _period(pixels[..., 0].mean(axis=0)), _period(pixels[..., 1].mean(axis=1))
    assert abs(across / down - 1) < 0.03, (path.name, (width, height), across, down)
    fractions.append((PERIOD * width / across) * (PERIOD * height / down) / photo[..., 0].size)
    blue = pixels[..., 2].mean(axis=0)
    mirrored.append(blue[: width // 2].mean() > blue[width // 2:].mean())
  assert made == {"photographs": ["stripes.png"], "images": count,
                  "mean_kb": round(total_bytes / count / 1e3, 1),
                  "mean_pixels": int(sum(w * h for w, h in sizes) / count)}
  share = {size: sizes.count(size) / count
           for size in ((500, 375), (375, 500), (500, 333), (333, 500))}
  tail = [s for s in sizes if s not in share]
  for size, weight in zip(share, (0.55, 0.15, 0.12, 0.05)):
    assert abs(share[size] - weight) < 0.03, (size, share[size])
  assert abs(len(tail) / count - 0.13) < 0.03
  assert all(600 <= max(s) < 1600 and min(s) == int(max(s) * 0.75) for s in tail)
  landscape = sum(w > h for w, h in tail) / len(tail)
  assert 0.5 < landscape < 0.9, landscape
  fractions = np.array(fractions)
  four_three = np.array([s == (500, 375) for s in sizes])  # the photograph's aspect: no clipping
  assert fractions.min() < 0.23 and fractions.max() < 1.03
  assert np.mean(fractions[four_three] > 0.95) < 0.15
  assert 0.4 < np.mean(mirrored) < 0.6
