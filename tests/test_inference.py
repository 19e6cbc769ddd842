"""Inference from a trained workdir (`inference.py`): restore, predict, ten crops."""


import numpy as np

from alexnet_jax import inference
from conftest import sample_images


def test_restore_predict_is_deterministic_and_ten_crop_is_the_mean_of_its_views(straight_run,
                                                                              tmp_path):
  workdir, _ = straight_run
  trained = inference.load(workdir)
  assert trained.step == 8 and trained.class_names == tuple(str(i) for i in range(10))
  good, stored, bad = trained.read_images(sample_images(str(tmp_path)))
  assert len(good) == 5 and not bad and stored.shape == (5, 36, 36, 3)
  one = trained.predict(stored)
  again = trained.predict(stored, batch_size=3)
  np.testing.assert_allclose(one["probs"], again["probs"], rtol=1e-5, atol=1e-6)
  assert one["probs"].shape == (5, 10) and one["fc7"].shape == (5, 256)
  (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not a JPEG")
  unread, none_read, said = trained.read_images([str(tmp_path / "broken.jpg")])
  assert unread == [] and none_read.shape == (0, 36, 36, 3) and len(said) == 1
  none = trained.predict(none_read)  # no image: empty arrays of the same widths
  assert none["probs"].shape == (0, 10) and none["fc7"].shape == (0, 256)
  np.testing.assert_allclose(one["probs"].sum(-1), 1.0, rtol=1e-5)
  assert (one["fc7"] >= 0).all()  # post-ReLU
  ten = trained.predict(stored, ten_crop=True)["probs"]
  np.testing.assert_allclose(ten.sum(-1), 1.0, rtol=1e-5)
  # The ten-crop softmax is the mean of the ten views' softmaxes, the centre view among them.
  from alexnet_jax.data import augment

  views = np.stack([augment.EvalCrops(32, True).map({"image": s, "label": 0})["image"]
                    for s in stored])
  per_view = np.stack([_predict_crops(trained, views[:, v], v) for v in range(10)], axis=1)
  np.testing.assert_allclose(ten, per_view.mean(axis=1), rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(per_view[:, 4], one["probs"], rtol=1e-4, atol=1e-6)


def test_predict_all_in_batches_keeps_each_images_row_and_marks_the_unreadable(straight_run):
  """More images than a batch (5 in batches of 2), one unreadable: each row the image's own,
  in order, the unreadable one NaN and not valid. Mutations: a full batch not cleared after
  it is predicted; the last, partial batch dropped; the validity of another row -> red."""
  trained = inference.load(straight_run[0])
  stored = np.random.default_rng(0).integers(0, 255, (5, 36, 36, 3), np.uint8)
  image_at = lambda i: None if i == 3 else stored[i]
  out = inference.predict_all(trained, 5, image_at, batch=2)
  assert out["valid"].tolist() == [True, True, True, False, True]
  assert np.isnan(out["probs"][3]).all() and np.isnan(out["fc7"][3]).all()
  whole = trained.predict(stored[[0, 1, 2, 4]])
  np.testing.assert_allclose(out["probs"][[0, 1, 2, 4]], whole["probs"], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(out["fc7"][[0, 1, 2, 4]], whole["fc7"], rtol=1e-5, atol=1e-5)


def _predict_crops(trained, crops, view):
  """Probabilities of already-cut crops (view index of §4.1's ten) through the same step."""
  import jax

  boxes = [(0, 0), (0, 4), (4, 0), (4, 4), (2, 2)]
  top, left = boxes[view % 5]
  n, padded = len(crops), 8  # a multiple of the 'data' axis
  images = np.concatenate([crops, np.repeat(crops[:1], padded - n, axis=0)])
  batch = {"image": images,
           "crop": np.tile([top, left, view // 5], (padded, 1)).astype(np.int32)}
  out = trained._predict(trained.params, jax.device_put(batch, trained._batch_sharding),
                         trained._mean)
  return np.asarray(out["probs"])[:n]
