"""§4.1's augmentation: the ten test crops, the training crops, mirrors and lighting against
NumPy references (through the device normalisation), stand-ins for unreadable files, the
2012 code's crop chunks and shrink, a recorded lighting change."""

import jax.numpy as jnp
import numpy as np
import pytest

from alexnet_jax.data import augment, readers
from alexnet_jax.data.normalize import normalize
from alexnet_jax.data.stats import Stats
from alexnet_jax.errors import UserError
from conftest import build_input, load_config, save_image, synthetic_config


def test_the_ten_crop_boxes_of_section_4_1():
  assert augment.crop_boxes(256, 224) == [(0, 0), (0, 32), (32, 0), (32, 32), (16, 16)]
  image = np.arange(6 * 6, dtype=np.uint8).reshape(6, 6, 1)
  ten = augment.EvalCrops(4, True).map({"image": image, "label": 3})
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
  centre = augment.EvalCrops(4, False).map({"image": image, "label": 3})
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
  split = readers.Split(image[None], np.array([1], np.int32))
  crops = augment.TrainBatch(augment.Augmentation(8, 5, True, 0.1, scale_matrix, seed=0),
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
    save_image(paths[-1], array, "PNG")
  (tmp_path / "5.png").write_bytes(b"\x89PNG broken")
  labels = np.arange(6, dtype=np.int32)
  augmentation = augment.Augmentation(9, 6, True, 0.1, np.eye(3, dtype=np.float32), seed=7)
  in_memory = augment.TrainBatch(augmentation, readers.Split(stored, labels), 3)
  files = augment.TrainBatch(augmentation, readers.FileSplit(tuple(paths), labels), 3)
  batch = {"index": np.array([4, 0, 4, 2, 5]), "position": np.arange(100, 105)}
  want, got = in_memory.map(batch), files.map(batch)
  for key in ("image", "label", "crop", "lighting"):
    np.testing.assert_array_equal(got[key][:4], want[key][:4])
  assert got["skipped"].tolist()[:4] == [0, 0, 0, 0] and got["skipped"][4] >= 1
  stand_in = int(got["label"][4])  # labels are the indices: the image that stood in
  assert stand_in != 5
  assert augmentation.stand_ins(104, 6, 32)[got["skipped"][4] - 1] == stand_in
  # Stand-ins are drawn from every record alike (mutation: always the first record -> red).
  drawn = np.concatenate([augmentation.stand_ins(p, 50, 8) for p in range(400)])
  assert drawn.min() >= 0 and drawn.max() < 50
  assert np.bincount(drawn, minlength=50).min() > 30  # 64 per record expected
  top, left, _ = got["crop"][4]
  np.testing.assert_array_equal(got["image"][4], stored[stand_in, top:top + 6, left:left + 6])
  assert not np.array_equal(want["crop"][0], want["crop"][2]) or not np.array_equal(
      want["lighting"][0], want["lighting"][2])  # the same image, used twice: new draws
  # Every file unreadable: one line after MAX_ATTEMPTS tries, never an endless search.
  # Mutations: the attempts' bound one more (an IndexError past the stand-ins drawn) or one
  # fewer -> red.
  for path in paths:
    open(path, "wb").close()
  decode, tried = files._decode.map, []
  files._decode.map = lambda record: tried.append(record) or decode(record)
  with pytest.raises(UserError, match=f"^{augment.TrainBatch.MAX_ATTEMPTS} unreadable images in "
                                      "a row for one training example: is the dataset damaged"):
    files.map(batch)
  assert len(tried) == augment.TrainBatch.MAX_ATTEMPTS

def test_pca_lighting_adds_p_alpha_sqrt_lambda_with_alpha_of_std_0_1():
  rng = np.random.default_rng(1)
  eigvec, _ = np.linalg.qr(rng.normal(size=(3, 3)))
  stats = Stats(np.zeros((4, 4, 3), np.float32), np.array([400.0, 25.0, 4.0], np.float32),
                eigvec.astype(np.float32), 1)
  np.testing.assert_allclose(stats.lighting_scale, eigvec * np.array([20.0, 5.0, 2.0]), rtol=1e-5)
  aug = augment.Augmentation(4, 4, False, 0.1, stats.lighting_scale, seed=0)
  _, shifts, _ = aug.draws(np.arange(4000))
  alphas = shifts @ eigvec / np.array([20.0, 5.0, 2.0])  # p_i are orthonormal
  np.testing.assert_allclose(alphas.std(axis=0), [0.1] * 3, rtol=0.06)
  np.testing.assert_allclose(alphas.mean(axis=0), [0.0] * 3, atol=0.006)
  np.testing.assert_allclose(np.corrcoef(alphas, rowvar=False), np.eye(3), atol=0.06)
  off = augment.Augmentation(4, 4, False, 0.0, stats.lighting_scale, seed=0)
  assert not off.draws(np.arange(10))[1].any()


# splitmix64's first outputs from state 0 (Steele, Lea & Flood 2014; Vigna's splitmix64.c)
SPLITMIX64_FROM_0 = (0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F,
                     0xF88BB8A8724C81EC)


def test_a_seeds_draws_are_splitmix64_and_its_normals_box_muller():
  """What a seed's batches are, pinned so that no version changes them: seed k's first uniform
  is the top 53 bits of splitmix64's k-th output, each position has 64 streams, the crop and
  mirror are streams 0-2 and the lighting's normals Box-Muller of the streams after them.
  Mutations: a shift or the 64 changed -> red; cos(3πu) for cos(2πu) (the same distribution)
  -> red."""
  first = [augment._uniforms(k, np.array([0]), 1)[0, 0] for k in (1, 2, 3, 4)]
  assert first == [(z >> 11) * 2.0**-53 for z in SPLITMIX64_FROM_0]
  u = augment._uniforms(1, np.array([0, 1]), 65)
  assert u[0, 64] == u[1, 0]
  aug = augment.Augmentation(40, 32, True, 0.5, np.diag([3.0, 2.0, 1.0]).astype(np.float32),
                             seed=7)
  positions = np.array([0, 5, 999, 123_456])
  boxes, lighting, _ = aug.draws(positions)
  u = augment._uniforms(7, positions, 9)
  np.testing.assert_array_equal(boxes, np.c_[np.floor(u[:, :2] * 9), u[:, 2] < 0.5])
  normals = np.sqrt(-2 * np.log(1 - u[:, 3:6])) * np.cos(2 * np.pi * u[:, 6:9])
  np.testing.assert_allclose(lighting, 0.5 * normals * [3.0, 2.0, 1.0], rtol=1e-5)


def test_every_crop_position_and_either_reflection_are_equally_likely():
  """§4.1's "random 224 x 224 patches (and their horizontal reflections)": each of the 33
  offsets down and across and each reflection drawn equally often, and independently (chi-square
  within 5 standard deviations of its mean). Mutations: a mirror with probability 0.3 -> red;
  the last offset never drawn -> red; the same draw for top and left -> red."""
  aug = augment.Augmentation(256, 224, True, 0.0, np.eye(3, dtype=np.float32), seed=5)
  boxes, _, _ = aug.draws(np.arange(70_000))

  def chi_square_is_uniform(values, cells):
    counts = np.bincount(values, minlength=cells)
    assert len(counts) == cells
    expected = len(values) / cells
    chi2 = ((counts - expected) ** 2 / expected).sum()
    return chi2 < (cells - 1) + 5 * np.sqrt(2 * (cells - 1))

  assert chi_square_is_uniform(boxes[:, 0], 33) and chi_square_is_uniform(boxes[:, 1], 33)
  assert chi_square_is_uniform(boxes[:, 2], 2)
  assert chi_square_is_uniform(boxes[:, 0] * 33 + boxes[:, 1], 33 * 33)
  assert chi_square_is_uniform(boxes[:, 0] * 2 + boxes[:, 2], 33 * 2)
  unflipped = augment.Augmentation(256, 224, False, 0.0, np.eye(3, dtype=np.float32), seed=5)
  assert not unflipped.draws(np.arange(1000))[0][:, 2].any()


def test_crop_chunk_shares_one_crop_and_mirror_among_consecutive_images():
  scale = np.eye(3, dtype=np.float32) * 10
  own = augment.Augmentation(40, 32, True, 0.1, scale, seed=3)
  chunked = augment.Augmentation(40, 32, True, 0.1, scale, seed=3, crop_chunk=32)
  positions = np.arange(256, 384)
  (boxes, light, _), (own_boxes, own_light, _) = chunked.draws(positions), own.draws(positions)
  chunks = boxes.reshape(4, 32, 3)
  assert all((chunk == chunk[0]).all() for chunk in chunks)  # one box and mirror per chunk
  np.testing.assert_array_equal(chunks[:, 0], own_boxes[::32])  # the chunk's first image's draws
  assert len({tuple(c[0]) for c in chunks}) > 1
  assert len(np.unique(own_boxes, axis=0)) > 32  # the paper's text: every image its own
  np.testing.assert_array_equal(light, own_light)  # the lighting stays per image
  assert len(np.unique(light[:32], axis=0)) == 32
  pairs = augment.Augmentation(40, 32, True, 0.1, scale, seed=3, crop_chunk=2).draws(positions)
  np.testing.assert_array_equal(pairs[0][::2], pairs[0][1::2])
  config = synthetic_config()
  config.data.crop_chunk = 4
  batch = next(build_input(config).train)
  assert all((c == c[0]).all() for c in batch["crop"].reshape(2, 4, 3))


def test_the_2012_code_divides_training_crops_by_1_plus_the_lighting_coefficient():
  paper, code = load_config("paper").data, load_config("paper_code").data
  assert (paper.lighting_shrink, paper.crop_chunk) == (False, 1)
  assert (code.lighting_shrink, code.crop_chunk) == (True, 32)
  rng = np.random.default_rng(4)
  image = rng.integers(0, 255, (1, 5, 5, 3), dtype=np.uint8)
  mean = rng.normal(100, 5, size=(5, 5, 3)).astype(np.float32)
  scale = np.eye(3, dtype=np.float32) * 10
  aug = augment.Augmentation(5, 5, False, 0.1, scale, seed=0, shrink=True)
  _, noise, shrink = aug.draws(np.arange(1))
  assert shrink.tolist() == [pytest.approx(1 / 1.1)]
  batch = {"image": image, "crop": np.zeros((1, 3), np.int32), "lighting": noise,
           "shrink": shrink}
  got = np.asarray(normalize(batch, jnp.asarray(mean), 1.0))
  # convdata_jpeg.py: cropped -= mean; cropped += noise * coeff (coeff folded into noise);
  # cropped /= 1 + coeff.
  want = (image[0].astype(np.float64) - mean + noise[0]) / (1 + code.pca_lighting)
  np.testing.assert_allclose(got[0], want, rtol=1e-5, atol=1e-4)


def test_a_recorded_lighting_change_takes_effect_at_its_step_with_its_shrink():
  """Run #145's "epoch 67: set color noise to 0": no lighting from that step on, and no
  division by 1 + coeff either (the 2012 code divides only while the noise is on)."""
  scale = np.eye(3, dtype=np.float32) * 10
  aug = augment.Augmentation(5, 5, False, 0.1, scale, seed=0, lighting_changes=((3, 0.0),),
                              batch_size=4, shrink=True)
  _, lighting, shrink = aug.draws(np.arange(20))  # batches of 4: positions 12.. are step 4..
  assert np.abs(lighting[:12]).min() > 0 and not lighting[12:].any()
  np.testing.assert_allclose(shrink, [1 / 1.1] * 12 + [1.0] * 8, rtol=1e-6)
