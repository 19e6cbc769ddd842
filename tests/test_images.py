"""Image files to §2's stored form: the shorter side rescaled, the central square, every
format, and the limits on what a file may cost."""

import io
import os

import numpy as np
import pytest
from PIL import Image

from alexnet_jax.data import images, readers


def test_stored_form_is_shorter_side_256_then_the_central_square():
  from PIL import Image

  rng = np.random.default_rng(3)
  wide = rng.integers(0, 255, (256, 512, 3), dtype=np.uint8)  # shorter side already 256
  np.testing.assert_array_equal(images.to_stored(Image.fromarray(wide), 256), wide[:, 128:384])
  tall = rng.integers(0, 255, (64, 32, 3), dtype=np.uint8)  # x8: 512 x 256, rows 128..384
  big = np.asarray(Image.fromarray(tall).resize((256, 512), Image.BILINEAR))
  np.testing.assert_array_equal(images.to_stored(Image.fromarray(tall), 256), big[128:384])
  grey = images.to_stored(Image.fromarray(wide[..., 0]), 256)
  assert grey.shape == (256, 256, 3) and (grey[..., 0] == grey[..., 2]).all()

@pytest.mark.parametrize("size", [(256, 256), (300, 256), (500, 375), (1024, 700), (600, 513),
                                  (2000, 1500), (200, 150)])
@pytest.mark.parametrize("mode", ["RGB", "L"])
@pytest.mark.parametrize("resize", images.RESIZES)
def test_simplejpeg_and_pillows_draft_decode_jpegs_to_the_same_pixels(size, mode, resize):
  """Mutations: a squashed JPEG whose shorter side is already the stored size cropped to its
  centre by the simplejpeg path -> red; a JPEG smaller than the stored size read at half
  scale -> red."""
  import io

  from PIL import Image

  small = np.random.default_rng(size[0]).integers(0, 256, (24, 24, 3), dtype=np.uint8)
  buffer = io.BytesIO()
  Image.fromarray(small).resize(size, Image.BICUBIC).convert(mode).save(buffer, "JPEG")
  channels = 3 if mode == "RGB" else 1
  fast = images.decode(buffer.getvalue(), 256, channels, resize)
  assert fast.shape == (256, 256, channels) and fast.dtype == np.uint8
  np.testing.assert_array_equal(fast, images._decode_with_pillow(buffer.getvalue(), 256, channels,
                                                                 resize))


# ----------------------------------------------------------------------------- 9: images

def test_16_bit_greyscale_pngs_scale_to_8_bits():
  ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
  buf = io.BytesIO()
  Image.fromarray(ramp).save(buf, "PNG")
  grey = images.decode(buf.getvalue(), 64, 1)[..., 0]
  np.testing.assert_allclose(grey, np.round(ramp / 257.0), atol=1)  # 0..65535 -> 0..255
  assert grey.min() == 0 and grey.max() == 255 and abs(grey.mean() - 127.5) < 1
  rgb = images.decode(buf.getvalue(), 64, 3)
  assert abs(float(rgb.mean()) - 127.5) < 1  # was 251 with Pillow's clipping


def test_every_decoder_applies_the_decompression_bomb_limit(monkeypatch):
  buf = io.BytesIO()
  Image.fromarray(np.full((300, 300, 3), 128, np.uint8)).save(buf, "JPEG", progressive=True)
  jpeg = buf.getvalue()
  assert images.decode(jpeg, 256).shape == (256, 256, 3)  # under the limit: simplejpeg decodes
  monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20_000)  # 2 x 20,000 < 300 x 300
  with pytest.raises(images.UnreadableImage, match="decompression-bomb limit of 40000"):
    images.decode(jpeg, 256)
  png = io.BytesIO()
  Image.fromarray(np.zeros((300, 300, 3), np.uint8)).save(png, "PNG")
  with pytest.raises(images.UnreadableImage, match="DecompressionBomb"):
    images.decode(png.getvalue(), 256)


def test_what_one_image_may_cost_is_bounded(monkeypatch, tmp_path):
  """A 104-byte 1x8000 PNG was rescaled to 256 x 2,048,000 (5.7 GB, 12 s), and a 4 GiB file
  named .jpg was read whole before being rejected."""
  line = io.BytesIO()
  Image.fromarray(np.arange(8000, dtype=np.uint8)[None].repeat(1, 0)).save(line, "PNG")
  assert len(line.getvalue()) < 2000
  sizes = []
  resize = Image.Image.resize

  def recording(self, size, *args, **kwargs):
    sizes.append(size)
    return resize(self, size, *args, **kwargs)

  monkeypatch.setattr(Image.Image, "resize", recording)
  stored = images.decode(line.getvalue(), 256, 3)
  assert stored.shape == (256, 256, 3)
  assert max(w * h for w, h in sizes) <= images.MAX_ASPECT * 256 * 256
  monkeypatch.undo()
  wide = np.random.default_rng(0).integers(0, 255, (64, 64 * 20, 3), dtype=np.uint8)
  cut = images.to_stored(Image.fromarray(wide), 64)  # 20:1 is cut to its central 8:1 first
  np.testing.assert_array_equal(cut, images.to_stored(Image.fromarray(wide[:, 6 * 64:14 * 64]),
                                                      64))
  tall = np.ascontiguousarray(wide.transpose(1, 0, 2))  # and 1:20 to its central 1:8
  np.testing.assert_array_equal(images.to_stored(Image.fromarray(tall), 64),
                                images.to_stored(Image.fromarray(tall[6 * 64:14 * 64]), 64))
  monkeypatch.setattr(images, "MAX_FILE_BYTES", 1000)
  big = tmp_path / "big.jpg"
  big.write_bytes(b"\xff\xd8" + bytes(5000))
  record = readers.FileSplit((str(big),), np.zeros(1, np.int32))[0]
  assert len(record["encoded"]) == 1001  # read no further than the limit
  with pytest.raises(images.UnreadableImage, match="more than 1000 bytes"):
    images.decode(record["encoded"], 256)


def test_a_reduced_scale_decode_is_within_the_measured_distance_of_a_full_decode():
  """`decode` reads JPEGs at the smallest DCT scale that keeps 256: not a full decode then the
  downscale, but 2.4 grey levels from it on average (69 at most) on a real photograph."""
  import matplotlib

  path = os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "sample_data",
                      "grace_hopper.jpg")
  data = open(path, "rb").read()
  fast = images.decode(data, 256, 3).astype(int)
  with Image.open(io.BytesIO(data)) as image:  # every pixel decoded, then §2's rescale
    full = images.to_stored(image.convert("RGB"), 256, 3).astype(int)
  difference = np.abs(fast - full)
  assert 1.0 < difference.mean() < 3.0 and difference.max() <= 80
  assert np.percentile(difference, 99) <= 25


def test_a_floating_point_image_is_unreadable_not_clipped(tmp_path):
  """A 32-bit float TIFF (values of any range) became 0/255 pixels through Pillow's clipping,
  silently. Mutation: the mode F refusal dropped -> red."""
  import io

  import numpy as np
  import pytest
  from PIL import Image

  from alexnet_jax.data import images

  buffer = io.BytesIO()
  Image.fromarray(np.linspace(-3, 3, 40 * 40, dtype=np.float32).reshape(40, 40), "F").save(
      buffer, format="TIFF")
  with pytest.raises(images.UnreadableImage, match="floating-point image"):
    images.decode(buffer.getvalue(), 32)


def test_each_unreadable_image_is_logged_with_the_count_so_far(caplog):
  counter = images.SkipCounter()
  counter.skip("a.JPEG", "truncated")
  counter.skip("b.JPEG", "not an image file Pillow can read")
  said = [r.getMessage() for r in caplog.records if "skipping unreadable image" in r.getMessage()]
  assert said == ["skipping unreadable image a.JPEG (truncated); 1 skipped so far in this reader",
                  "skipping unreadable image b.JPEG (not an image file Pillow can read); 2 "
                  "skipped so far in this reader"]
  assert counter.count == 2


def test_a_jpeg_cut_after_its_header_is_unreadable_and_a_whole_one_decodes():
  """simplejpeg reads the header of a JPEG cut short, then refuses its body: Pillow decides,
  and a cut image is unreadable (a counted skip), never a half-grey one. Mutation: the
  body's refusal let through (a ValueError, a traceback) -> red."""
  buffer = io.BytesIO()
  Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 300, 3), np.uint8)).save(
      buffer, "JPEG")
  whole = buffer.getvalue()
  assert images.decode(whole, 256).shape == (256, 256, 3)
  with pytest.raises(images.UnreadableImage):
    images.decode(whole[:len(whole) // 2], 256)
