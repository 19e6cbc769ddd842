"""The input pipeline's geometry (§2, §4.1), exact evaluation and iterator restore."""

import gzip
import os

import numpy as np
import pytest

import jax.numpy as jnp

from alexnet_jax.errors import UserError
from alexnet_jax.data import images, pipeline, sources
from alexnet_jax.data.normalize import normalize
from alexnet_jax.data.stats import Stats, compute
from conftest import load_config

FASHION = "/usr/share/datasets/fashion-mnist"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_ten_crop_boxes_of_section_4_1():
  assert pipeline.crop_boxes(256, 224) == [(0, 0), (0, 32), (32, 0), (32, 32), (16, 16)]
  image = np.arange(6 * 6, dtype=np.uint8).reshape(6, 6, 1)
  ten = pipeline.EvalCrops(4, True).map({"image": image, "label": 3})
  assert ten["image"].shape == (10, 4, 4, 1) and ten["image"].dtype == np.uint8
  np.testing.assert_array_equal(ten["image"][0], image[:4, :4])
  np.testing.assert_array_equal(ten["image"][3], image[2:, 2:])
  np.testing.assert_array_equal(ten["image"][4], image[1:5, 1:5])
  np.testing.assert_array_equal(ten["image"][5:], ten["image"][:5])  # mirrored on the device
  assert ten["crop"].tolist() == [[0, 0, 0], [0, 2, 0], [2, 0, 0], [2, 2, 0], [1, 1, 0],
                                  [0, 0, 1], [0, 2, 1], [2, 0, 1], [2, 2, 1], [1, 1, 1]]
  views = np.asarray(normalize(ten, jnp.zeros((6, 6, 1)), 1.0))
  np.testing.assert_array_equal(views[5:], views[:5, :, ::-1])
  np.testing.assert_array_equal(views[3], image[2:, 2:])
  centre = pipeline.EvalCrops(4, False).map({"image": image, "label": 3})
  np.testing.assert_array_equal(centre["image"], image[1:5, 1:5])
  assert centre["crop"].tolist() == [1, 1, 0]


def _normalize_reference(image, mean, top, left, flip, lighting, scale, crop):
  """§2 then §4.1 on the host in float64: centre the whole image, crop, mirror, add lighting."""
  centred = image.astype(np.float64) - mean
  patch = centred[top:top + crop, left:left + crop]
  return ((patch[:, ::-1] if flip else patch) + lighting) * scale


def test_train_crops_and_the_device_normalisation_match_a_numpy_reference():
  rng = np.random.default_rng(0)
  image = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
  mean = rng.normal(100, 5, size=(8, 8, 3)).astype(np.float32)
  scale_matrix = np.eye(3, dtype=np.float32) * 4.0
  split = sources.Split(image[None], np.array([1], np.int32))
  crops = pipeline.TrainBatch(pipeline.Augmentation(8, 5, True, 0.1, scale_matrix, seed=0),
                              split, 3)
  batch = crops.map({"index": np.zeros(40, int), "position": np.arange(40)})
  assert batch["image"].dtype == np.uint8 and batch["image"].shape == (40, 5, 5, 3)
  assert batch["label"].tolist() == [1] * 40 and not batch["skipped"].any()
  seen = {tuple(box) for box in batch["crop"].tolist()}
  assert len(seen) > 20 and {f for *_, f in seen} == {0, 1}
  assert {t for t, *_ in seen} == {0, 1, 2, 3} and {l for _, l, _ in seen} == {0, 1, 2, 3}
  got = np.asarray(normalize(batch, jnp.asarray(mean), 0.5))
  for i, (top, left, flip) in enumerate(batch["crop"].tolist()):
    np.testing.assert_array_equal(batch["image"][i], image[top:top + 5, left:left + 5])
    want = _normalize_reference(image, mean, top, left, flip, batch["lighting"][i], 0.5, 5)
    np.testing.assert_allclose(got[i], want, rtol=1e-5, atol=1e-4)


def test_image_files_give_the_crops_of_the_same_images_in_memory_and_stand_ins_for_bad_ones(
    tmp_path):
  rng = np.random.default_rng(3)
  stored = rng.integers(0, 255, (6, 9, 9, 3), dtype=np.uint8)
  paths = []
  for i, array in enumerate(stored):  # PNG: lossless, decodes to the same pixels
    paths.append(str(tmp_path / f"{i}.png"))
    _save(paths[-1], array, "PNG")
  (tmp_path / "5.png").write_bytes(b"\x89PNG broken")
  labels = np.arange(6, dtype=np.int32)
  augmentation = pipeline.Augmentation(9, 6, True, 0.1, np.eye(3, dtype=np.float32), seed=7)
  in_memory = pipeline.TrainBatch(augmentation, sources.Split(stored, labels), 3)
  files = pipeline.TrainBatch(augmentation, sources.FileSplit(tuple(paths), labels), 3)
  batch = {"index": np.array([4, 0, 4, 2, 5]), "position": np.arange(100, 105)}
  want, got = in_memory.map(batch), files.map(batch)
  for key in ("image", "label", "crop", "lighting"):
    np.testing.assert_array_equal(got[key][:4], want[key][:4])
  assert got["skipped"].tolist()[:4] == [0, 0, 0, 0] and got["skipped"][4] >= 1
  stand_in = int(got["label"][4])  # labels are the indices: the image that stood in
  assert stand_in != 5
  assert augmentation.stand_ins(104, 6, 32)[got["skipped"][4] - 1] == stand_in
  top, left, _ = got["crop"][4]
  np.testing.assert_array_equal(got["image"][4], stored[stand_in, top:top + 6, left:left + 6])
  assert not np.array_equal(want["crop"][0], want["crop"][2]) or not np.array_equal(
      want["lighting"][0], want["lighting"][2])  # the same image, used twice: new draws


def test_pca_lighting_adds_p_alpha_sqrt_lambda_with_alpha_of_std_0_1():
  rng = np.random.default_rng(1)
  eigvec, _ = np.linalg.qr(rng.normal(size=(3, 3)))
  stats = Stats(np.zeros((4, 4, 3), np.float32), np.array([400.0, 25.0, 4.0], np.float32),
                eigvec.astype(np.float32), 1)
  np.testing.assert_allclose(stats.lighting_scale, eigvec * np.array([20.0, 5.0, 2.0]), rtol=1e-5)
  aug = pipeline.Augmentation(4, 4, False, 0.1, stats.lighting_scale, seed=0)
  _, shifts = aug.draws(np.arange(4000))
  alphas = shifts @ eigvec / np.array([20.0, 5.0, 2.0])  # p_i are orthonormal
  np.testing.assert_allclose(alphas.std(axis=0), [0.1] * 3, rtol=0.06)
  np.testing.assert_allclose(alphas.mean(axis=0), [0.0] * 3, atol=0.006)
  np.testing.assert_allclose(np.corrcoef(alphas, rowvar=False), np.eye(3), atol=0.06)
  off = pipeline.Augmentation(4, 4, False, 0.0, stats.lighting_scale, seed=0)
  assert not off.draws(np.arange(10))[1].any()


def test_the_published_pca_fallback_has_the_scale_of_a_real_photographs_statistics():
  """The fallback and `python -m alexnet_jax.data.stats` hold one quantity, √λ of 0-255 RGB
  values: the published ImageNet eigenvalues are for 0-1 values, and used as if they were
  √λ in grey levels they fell 2-15x short of computed statistics."""
  import matplotlib
  from PIL import Image

  photo = os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "sample_data",
                       "grace_hopper.jpg")
  with Image.open(photo) as im:
    computed = compute([np.asarray(im.convert("RGB"))[None]])
  fallback = Stats.imagenet_defaults(8)
  ratio = np.sqrt(fallback.eigval) / np.sqrt(computed.eigval)
  assert np.all((ratio > 1 / 2.5) & (ratio < 2.5)), ratio
  assert abs(float(fallback.eigvec[:, 0] @ computed.eigvec[:, 0])) > 0.98  # the luminance axis
  np.testing.assert_allclose(fallback.lighting_scale,
                             fallback.eigvec * np.sqrt(fallback.eigval)[None], rtol=1e-6)
  np.testing.assert_allclose(np.sqrt(fallback.eigval), 255 * np.sqrt([0.2175, 0.0188, 0.0045]),
                             rtol=1e-3)


def test_crop_chunk_shares_one_crop_and_mirror_among_consecutive_images():
  scale = np.eye(3, dtype=np.float32) * 10
  own = pipeline.Augmentation(40, 32, True, 0.1, scale, seed=3)
  chunked = pipeline.Augmentation(40, 32, True, 0.1, scale, seed=3, crop_chunk=32)
  positions = np.arange(256, 384)
  (boxes, light), (own_boxes, own_light) = chunked.draws(positions), own.draws(positions)
  chunks = boxes.reshape(4, 32, 3)
  assert all((chunk == chunk[0]).all() for chunk in chunks)  # one box and mirror per chunk
  np.testing.assert_array_equal(chunks[:, 0], own_boxes[::32])  # the chunk's first image's draws
  assert len({tuple(c[0]) for c in chunks}) > 1
  assert len(np.unique(own_boxes, axis=0)) > 32  # the paper's text: every image its own
  np.testing.assert_array_equal(light, own_light)  # the lighting stays per image
  assert len(np.unique(light[:32], axis=0)) == 32
  config = _synthetic_config()
  config.data.crop_chunk = 4
  batch = next(_build(config).train)
  assert all((c == c[0]).all() for c in batch["crop"].reshape(2, 4, 3))


def test_the_2012_code_divides_training_crops_by_1_plus_the_lighting_coefficient():
  from alexnet_jax.data.normalize import train_pixel_scale

  paper, code = load_config("paper").data, load_config("paper_code").data
  assert (paper.lighting_shrink, paper.crop_chunk) == (False, 1)
  assert (code.lighting_shrink, code.crop_chunk) == (True, 32)
  assert train_pixel_scale(paper) == 1.0 and train_pixel_scale(code) == pytest.approx(1 / 1.1)
  rng = np.random.default_rng(4)
  image = rng.integers(0, 255, (1, 5, 5, 3), dtype=np.uint8)
  mean = rng.normal(100, 5, size=(5, 5, 3)).astype(np.float32)
  noise = rng.normal(0, 10, size=(1, 3)).astype(np.float32)
  batch = {"image": image, "crop": np.zeros((1, 3), np.int32), "lighting": noise}
  got = np.asarray(normalize(batch, jnp.asarray(mean), train_pixel_scale(code)))
  # convdata_jpeg.py: cropped -= mean; cropped += noise * coeff (coeff folded into noise);
  # cropped /= 1 + coeff.
  want = (image[0].astype(np.float64) - mean + noise[0]) / (1 + code.pca_lighting)
  np.testing.assert_allclose(got[0], want, rtol=1e-5, atol=1e-4)


def test_statistics_match_numpy_mean_and_covariance_eigenvectors():
  rng = np.random.default_rng(2)
  base = rng.normal(size=(3, 3))
  pixels = rng.normal(size=(50 * 6 * 6, 3)) @ base * 30 + 120
  images = np.clip(pixels, 0, 255).astype(np.uint8).reshape(50, 6, 6, 3)
  stats = compute([images[:17], images[17:40], images[40:]])
  np.testing.assert_allclose(stats.mean, images.astype(np.float64).mean(0), rtol=1e-5)
  cov = np.cov(images.reshape(-1, 3).astype(np.float64), rowvar=False, bias=True)
  eigval, eigvec = np.linalg.eigh(cov)
  np.testing.assert_allclose(stats.eigval, eigval[::-1], rtol=1e-4)
  for i in range(3):  # eigenvectors up to sign
    assert abs(abs(float(stats.eigvec[:, i] @ eigvec[:, 2 - i])) - 1) < 1e-4
  assert stats.count == 50


def _build(config):
  """The input of a training config, as `train.train_and_evaluate` builds it."""
  m = config.model
  return pipeline.build_input(config.data, crop=m.input_size, channels=m.in_channels,
                              num_classes=m.num_classes, seed=config.seed)


def _synthetic_config():
  config = load_config("tiny")
  config.data.update(dict(name="synthetic", image_size=36, batch_size=8, eval_batch_size=16,
                          synthetic_train_size=40, synthetic_eval_size=37))
  return config


@pytest.mark.parametrize("field,value,message", [
    ("pca_lighting", -0.1, "pca_lighting is the std"),
    ("read_threads", -1, "read_threads and data.prefetch must be >= 0"),
    ("mean", "median", "data.mean must be"),
    ("crop_chunk", 3, "crop_chunk .3. must be >= 1 and divide"),
    ("crop_chunk", 0, "crop_chunk .0. must be >= 1"),
])
def test_invalid_input_settings_are_one_line_errors(field, value, message):
  config = _synthetic_config()
  config.data[field] = value
  with pytest.raises(UserError, match=message):
    _build(config)


def test_evaluation_counts_every_example_once_and_batches_are_full():
  inp = _build(_synthetic_config())
  batches = list(inp.eval_batches(False))
  assert [b["image"].shape for b in batches] == [(16, 32, 32, 3)] * 3
  assert batches[0]["image"].dtype == np.uint8 and batches[0]["crop"].shape == (16, 3)
  assert sum(b["mask"].sum() for b in batches) == 37
  ten = next(iter(inp.eval_batches(True)))
  assert ten["image"].shape == (16, 10, 32, 32, 3)


def test_same_seed_same_batches_and_a_restored_iterator_continues_exactly():
  a, b = (_build(_synthetic_config()) for _ in range(2))
  for _ in range(3):
    x, y = next(a.train), next(b.train)
    np.testing.assert_array_equal(x["image"], y["image"])
  state = a.train.get_state()
  expected = [next(a.train) for _ in range(6)]  # crosses an epoch boundary (5 steps / epoch)
  b.train.set_state(state)
  for want in expected:
    got = next(b.train)
    np.testing.assert_array_equal(got["image"], want["image"])
    np.testing.assert_array_equal(got["label"], want["label"])


def test_a_corrupt_idx_file_is_a_one_line_error(tmp_path):
  for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
    with gzip.open(tmp_path / name, "wb") as f:
      f.write(b"\x00\x00\x08\x03" + (5).to_bytes(4, "big") + b"\x00" * 20)
  with pytest.raises(UserError, match="truncated"):
    sources.fashion_mnist(str(tmp_path), "train", size=32)
  with pytest.raises(UserError, match="apt-get install dataset-fashion-mnist"):
    sources.fashion_mnist(str(tmp_path / "nope"), "train", size=32)


@pytest.mark.skipif(not os.path.exists(FASHION), reason="needs Debian's dataset-fashion-mnist")
def test_fashion_mnist_from_the_debian_package():
  train = sources.fashion_mnist(FASHION, "train", size=32)
  test = sources.fashion_mnist(FASHION, "test", size=32)
  assert train.images.shape == (60000, 32, 32, 1) and test.images.shape == (10000, 32, 32, 1)
  assert train.images[:, :2].max() == 0 and train.images.max() == 255
  assert np.bincount(train.labels).tolist() == [6000] * 10
  with pytest.raises(UserError, match="even padding"):
    sources.fashion_mnist(FASHION, "test", size=31)


# ----------------------------------------------------------------------------- image files

def _save(path, array, fmt, mode=None):
  from PIL import Image

  image = Image.fromarray(array)
  if mode:
    image = image.convert(mode)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  image.save(path, format=fmt)


def _image_folder(root, seed=0):
  """ImageNet's oddities: JPEG, PNG, greyscale, CMYK, a PNG named .JPEG, sizes below and above
  256 in either orientation, and three unreadable files (truncated, text, empty)."""
  rng = np.random.default_rng(seed)
  rgb = lambda h, w: rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
  for split, per_class in (("train", 4), ("val", 2)):
    for c, name in enumerate(("n01", "n02", "n03")):
      folder = os.path.join(root, split, name)
      for i in range(per_class):
        kind = (c * per_class + i) % 5
        path = os.path.join(folder, f"{split}_{c}_{i}.JPEG")
        if kind == 0:
          _save(path, rgb(300, 420), "JPEG")
        elif kind == 1:
          _save(path, rgb(180, 120), "PNG")  # a PNG with a .JPEG name
        elif kind == 2:
          _save(path, rgb(260, 260)[..., 0], "JPEG")  # greyscale
        elif kind == 3:
          _save(path, rgb(400, 280), "JPEG", mode="CMYK")
        else:
          _save(path[:-5] + ".png", rgb(64, 96), "PNG")
  bad = os.path.join(root, "train", "n02")
  _save(os.path.join(bad, "truncated.JPEG"), rgb(300, 300), "JPEG")
  with open(os.path.join(bad, "truncated.JPEG"), "r+b") as f:
    f.truncate(200)
  with open(os.path.join(bad, "text.JPEG"), "w") as f:
    f.write("not an image")
  open(os.path.join(bad, "empty.jpg"), "wb").close()
  with open(os.path.join(bad, "notes.txt"), "w") as f:  # not an image extension: not listed
    f.write("ignored")
  with open(os.path.join(root, "val", "n03", "broken.jpg"), "wb") as f:
    f.write(b"\xff\xd8\xff\xe0 not really")
  return 12 + 3, 6  # train files listed (3 unreadable), val files


def _folder_config(root):
  config = load_config("tiny")
  config.model.update(dict(num_classes=3, input_size=32))
  config.data.update(dict(name="image_folder", data_dir=str(root), image_size=36, batch_size=4,
                          eval_batch_size=4, read_threads=2))
  return config


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
                                  (2000, 1500)])
@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_jpegs_decode_to_the_same_pixels_as_pillow(size, mode):
  import io

  from PIL import Image

  small = np.random.default_rng(size[0]).integers(0, 256, (24, 24, 3), dtype=np.uint8)
  buffer = io.BytesIO()
  Image.fromarray(small).resize(size, Image.BICUBIC).convert(mode).save(buffer, "JPEG")
  channels = 3 if mode == "RGB" else 1
  fast = images.decode(buffer.getvalue(), 256, channels)
  assert fast.shape == (256, 256, channels) and fast.dtype == np.uint8
  np.testing.assert_array_equal(fast, images._decode_with_pillow(buffer.getvalue(), 256, channels))


def test_image_folder_decodes_every_format_and_counts_the_unreadable(tmp_path):
  listed, _ = _image_folder(tmp_path)
  train, names = sources.image_folder(str(tmp_path), "train")
  assert names == ("n01", "n02", "n03") and len(train) == listed
  assert not any(p.endswith(".txt") for p in train.paths)
  decode = images.Decode(36)
  before = images.SKIPPED.count
  out = [decode.map(train[i]) for i in range(len(train))]
  assert images.SKIPPED.count - before == 3
  good = [o for o in out if o is not None]
  assert len(good) == listed - 3
  assert all(o["image"].shape == (36, 36, 3) and o["image"].dtype == np.uint8 for o in good)
  assert [int(o["label"]) for o in good] == sorted(int(o["label"]) for o in good)
  # The file list is cached: a second listing reads it back.
  again, _ = sources.image_folder(str(tmp_path), "train")
  assert again.paths == train.paths


def test_image_folder_pipeline_is_deterministic_and_skips_bad_files(tmp_path):
  _image_folder(tmp_path)
  config = _folder_config(tmp_path)
  a, b = (_build(config) for _ in range(2))
  for _ in range(5):  # 15 files (3 unreadable), batches of 4: crosses an epoch
    x, y = next(a.train), next(b.train)
    assert x["image"].shape == (4, 32, 32, 3) and x["image"].dtype == np.uint8
    np.testing.assert_array_equal(x["image"], y["image"])
    np.testing.assert_array_equal(x["lighting"], y["lighting"])
  skipped = sum(int(next(a.train)["skipped"].sum()) for _ in range(30))
  # 8 passes over the 15 files meet the 3 unreadable ones 24 times, and some stand-ins (drawn
  # from all 15) are unreadable too: ≈ 24 x 15/12 = 30.
  assert 24 <= skipped <= 40
  batches = list(a.eval_batches(True))
  assert sum(int(b["mask"].sum()) for b in batches) == 6
  assert sum(int(b["skipped"].sum()) for b in batches) == 1
  assert batches[0]["image"].shape == (4, 10, 32, 32, 3)
  assert a.stats.count == 0  # no statistics file yet: ImageNet's published values


def test_statistics_command_writes_a_file_that_training_loads(tmp_path, capsys):
  from alexnet_jax.data import stats

  _image_folder(tmp_path)
  config = _folder_config(tmp_path)
  stats.write_statistics(config.data, 3, 3)
  out = capsys.readouterr().out
  assert "eigenvalues:" in out and "images: 12" in out
  written = tmp_path / "alexnet_jax_stats" / "image_folder-36.npz"  # next to the data
  assert f"written: {written}" in out
  inp = _build(config)
  assert inp.stats.count == 12 and inp.stats.mean.shape == (36, 36, 3)
  with open(written, "r+b") as f:
    f.truncate(100)
  with pytest.raises(UserError, match="cannot read the dataset statistics"):
    _build(config)


def test_imagenet_through_tfds_data_source(tmp_path):
  import io

  import tensorflow_datasets as tfds
  from PIL import Image

  rng = np.random.default_rng(4)

  def jpeg(h, w):
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()

  records = {split: [{"image": jpeg(280 + i, 300), "label": (7 * i) % 1000,
                      "file_name": f"{split}_{i}.JPEG"} for i in range(n)]
             for split, n in (("train", 10), ("validation", 5))}
  records["validation"][2]["image"] = b"\xff\xd8 broken"

  def as_data_source(builder, split, decoders=None, **kwargs):
    assert "image" in decoders  # read encoded: decoded in the input workers
    return records[split]

  config = load_config("tiny")
  config.model.update(dict(num_classes=1000, input_size=32))
  config.data.update(dict(name="imagenet2012", data_dir=str(tmp_path), image_size=36,
                          batch_size=4, eval_batch_size=4, read_threads=2))
  with tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE,
                              as_data_source_fn=as_data_source):
    inp = _build(config)
    assert inp.num_train == 10 and inp.num_eval == 5 and len(inp.class_names) == 1000
    assert inp.class_names[0] == "n01440764"  # WordNet ids, from the TFDS metadata
    batch = next(inp.train)
    assert batch["image"].shape == (4, 32, 32, 3) and batch["label"].dtype == np.int32
    evaluated = sum(int(b["mask"].sum()) for b in inp.eval_batches(False))
  assert evaluated == 4  # the broken validation image is skipped, the rest count once


def test_missing_imagenet_names_the_preparation_command(tmp_path):
  config = load_config("paper")
  config.data.data_dir = str(tmp_path / "none")
  with pytest.raises(UserError, match="launch/prepare_imagenet.sh MANUAL_DIR DATA_DIR.*"
                                      "ILSVRC2012_img_train.tar"):
    _build(config)
