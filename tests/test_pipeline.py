"""The input pipeline (§2, §4.1): crops, mirrors and lighting against NumPy references, the
device normalisation, exact evaluation, determinism and iterator restore."""


import jax.numpy as jnp
import numpy as np
import pytest

from alexnet_jax.data import pipeline, readers
from alexnet_jax.data.normalize import normalize
from alexnet_jax.data.stats import Stats
from alexnet_jax.errors import UserError
from conftest import (build_input, folder_config, image_folder_tree, load_config,
                      save_image, synthetic_config)


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
  split = readers.Split(image[None], np.array([1], np.int32))
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
    save_image(paths[-1], array, "PNG")
  (tmp_path / "5.png").write_bytes(b"\x89PNG broken")
  labels = np.arange(6, dtype=np.int32)
  augmentation = pipeline.Augmentation(9, 6, True, 0.1, np.eye(3, dtype=np.float32), seed=7)
  in_memory = pipeline.TrainBatch(augmentation, readers.Split(stored, labels), 3)
  files = pipeline.TrainBatch(augmentation, readers.FileSplit(tuple(paths), labels), 3)
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
  _, shifts, _ = aug.draws(np.arange(4000))
  alphas = shifts @ eigvec / np.array([20.0, 5.0, 2.0])  # p_i are orthonormal
  np.testing.assert_allclose(alphas.std(axis=0), [0.1] * 3, rtol=0.06)
  np.testing.assert_allclose(alphas.mean(axis=0), [0.0] * 3, atol=0.006)
  np.testing.assert_allclose(np.corrcoef(alphas, rowvar=False), np.eye(3), atol=0.06)
  off = pipeline.Augmentation(4, 4, False, 0.0, stats.lighting_scale, seed=0)
  assert not off.draws(np.arange(10))[1].any()


def test_crop_chunk_shares_one_crop_and_mirror_among_consecutive_images():
  scale = np.eye(3, dtype=np.float32) * 10
  own = pipeline.Augmentation(40, 32, True, 0.1, scale, seed=3)
  chunked = pipeline.Augmentation(40, 32, True, 0.1, scale, seed=3, crop_chunk=32)
  positions = np.arange(256, 384)
  (boxes, light, _), (own_boxes, own_light, _) = chunked.draws(positions), own.draws(positions)
  chunks = boxes.reshape(4, 32, 3)
  assert all((chunk == chunk[0]).all() for chunk in chunks)  # one box and mirror per chunk
  np.testing.assert_array_equal(chunks[:, 0], own_boxes[::32])  # the chunk's first image's draws
  assert len({tuple(c[0]) for c in chunks}) > 1
  assert len(np.unique(own_boxes, axis=0)) > 32  # the paper's text: every image its own
  np.testing.assert_array_equal(light, own_light)  # the lighting stays per image
  assert len(np.unique(light[:32], axis=0)) == 32
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
  aug = pipeline.Augmentation(5, 5, False, 0.1, scale, seed=0, shrink=True)
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
  aug = pipeline.Augmentation(5, 5, False, 0.1, scale, seed=0, lighting_changes=((3, 0.0),),
                              batch_size=4, shrink=True)
  _, lighting, shrink = aug.draws(np.arange(20))  # batches of 4: positions 12.. are step 4..
  assert np.abs(lighting[:12]).min() > 0 and not lighting[12:].any()
  np.testing.assert_allclose(shrink, [1 / 1.1] * 12 + [1.0] * 8, rtol=1e-6)


def test_the_2012_codes_mean_patch_is_the_centre_of_the_mean_image_for_every_crop():
  """convdata_jpeg.py subtracts `data_mean_crop`, the mean image's centre patch, from every
  training crop and every test view, whatever its position and mirror; Caffe (and 'crop')
  subtracts the patch at the crop's own position."""
  rng = np.random.default_rng(6)
  image = rng.integers(0, 255, (2, 4, 4, 1), dtype=np.uint8)
  mean = rng.normal(100, 20, size=(8, 8, 1)).astype(np.float32)
  batch = {"image": image, "crop": np.array([[0, 4, 0], [4, 0, 1]], np.int32)}
  centre = np.asarray(normalize(batch, jnp.asarray(mean), 1.0, centre_mean=True))
  own = np.asarray(normalize(batch, jnp.asarray(mean), 1.0))
  np.testing.assert_allclose(centre[0], image[0] - mean[2:6, 2:6], rtol=1e-6)
  np.testing.assert_allclose(centre[1], image[1][:, ::-1] - mean[2:6, 2:6], rtol=1e-6)
  np.testing.assert_allclose(own[0], image[0] - mean[0:4, 4:8], rtol=1e-6)
  np.testing.assert_allclose(own[1], (image[1] - mean[4:8, 0:4])[:, ::-1], rtol=1e-6)
  assert load_config("paper_code").data.mean_patch == "centre"
  assert load_config("paper").data.mean_patch == "crop"


def test_evaluation_counts_every_example_once_and_batches_are_full():
  inp = build_input(synthetic_config())
  batches = list(inp.eval_batches(False))
  assert [b["image"].shape for b in batches] == [(16, 32, 32, 3)] * 3
  assert batches[0]["image"].dtype == np.uint8 and batches[0]["crop"].shape == (16, 3)
  assert sum(b["mask"].sum() for b in batches) == 37
  ten = next(iter(inp.eval_batches(True)))
  assert ten["image"].shape == (16, 10, 32, 32, 3)

def test_same_seed_same_batches_and_a_restored_iterator_continues_exactly():
  a, b = (build_input(synthetic_config()) for _ in range(2))
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

def test_image_folder_pipeline_is_deterministic_and_skips_bad_files(tmp_path):
  image_folder_tree(tmp_path)
  config = folder_config(tmp_path)
  a, b = (build_input(config) for _ in range(2))
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
  # No statistics file yet: a small folder's are computed at the start, from its 12 readable
  # training images (mutation: ImageNet's published fallback kept for small folders -> red).
  assert a.stats.count == 12


def test_an_input_position_of_an_earlier_version_restores_and_a_bad_one_is_one_line():
  """Checkpoints of earlier versions hold grain's in-process state (`next_index`: the step).
  Mutation: only {'step'} read -> the old position is refused (red)."""
  a, b = (build_input(synthetic_config()) for _ in range(2))
  a.train.set_state({"step": 3})
  b.train.set_state({"next_index": 3, "worker_count": 0})
  np.testing.assert_array_equal(next(a.train)["image"], next(b.train)["image"])
  with pytest.raises(UserError, match="not an input position"):
    b.train.set_state({"workers_state": {}})
