"""The batch layout (`data.batch`): what the pipeline yields is what the layout says."""

import numpy as np

from alexnet_jax.data import batch
from conftest import build_input, folder_config, image_folder_tree


def test_the_pipelines_batches_are_the_layouts(tmp_path):
  """`train_layout` (what the workers' shared memory holds) is the batch the pipeline makes.
  Mutations: the pipeline's lighting as float64, or its 'shrink' field dropped -> red; the
  layout's crop boxes as int64 -> red."""
  image_folder_tree(tmp_path)
  inp = build_input(folder_config(tmp_path))
  train = next(inp.train)
  inp.train.close()
  assert tuple(train) == batch.TRAIN_FIELDS
  b, c = 4, 3
  want = {"image": ((b, 32, 32, c), np.uint8), "label": ((b,), np.int32),
          "crop": ((b, 3), np.int32), "lighting": ((b, c), np.float32),
          "shrink": ((b,), np.float32), "skipped": ((b,), np.int32)}
  assert {k: (v.shape, v.dtype) for k, v in train.items()} == want
  assert {k: (shape, np.dtype(dtype)) for k, (shape, dtype)
          in batch.train_layout(b, 32, c).items()} == want
  for ten_crop, views in ((False, ()), (True, (10,))):
    evaluation = list(inp.eval_batches(ten_crop))
    assert all(tuple(e) == batch.EVAL_FIELDS for e in evaluation)
    assert evaluation[0]["image"].shape == (b, *views, 32, 32, c)
    assert evaluation[0]["crop"].shape == (b, *views, 3)
    assert sum(int(e["mask"].sum()) for e in evaluation) == 6  # 7 val files, 1 unreadable


def test_an_encoded_batch_is_its_layout():
  """What `TrainBatch` sends when the device decodes (`encoded_train`) is
  `encoded_train_layout`. Mutations: the JPEG ends as int32 in the pipeline -> red; the
  layout's 'skipped' dropped -> red."""
  from alexnet_jax.data import augment

  split = type("Store", (), {"encoded": True, "stored_form": True, "__len__": lambda self: 3,
                             "__getitem__": lambda self, i: {"encoded": bytes([i] * (10 + i)),
                                                             "label": np.int32(i)}})()
  augmentation = augment.Augmentation(36, 32, True, 0.1, np.eye(3), seed=0)
  cut = augment.TrainBatch(augmentation, split, 3, decoder="nvimgcodec", jpeg_capacity=64)
  encoded = cut.map({"index": np.array([2, 0]), "position": np.array([5, 6])})
  layout = batch.encoded_train_layout(2, 64, 3)
  assert {k: (v.shape, v.dtype) for k, v in encoded.items()} == {
      k: (shape, np.dtype(dtype)) for k, (shape, dtype) in layout.items()}
  assert encoded["jpeg_end"].tolist() == [12, 22] and encoded["index"].tolist() == [2, 0]
  assert bytes(encoded["jpeg"][:22]) == bytes([2] * 12 + [0] * 10)
  assert encoded["label"].tolist() == [2, 0]


def test_jpegs_fill_their_buffer_to_the_last_byte_and_one_that_does_not_fit_is_not_sent():
  """Mutation: a JPEG that fills the buffer exactly left out -> red."""
  jpegs = [b"abc", b"defgh", b"ij"]
  buffer, ends = batch.packed_jpegs(jpegs, 8)
  assert ends.tolist() == [3, 8, 8] and bytes(buffer) == b"abcdefgh"  # the third is not sent
  buffer, ends = batch.packed_jpegs(jpegs, 7)
  assert ends.tolist() == [3, 3, 5] and bytes(buffer[:5]) == b"abcij"


def test_an_evaluation_batch_is_padded_with_masked_zeros():
  """Mutation: the mask set for the padding too -> red."""
  records = {"image": np.full((2, 4, 4, 1), 7, np.uint8), "label": np.array([3, 5], np.int32),
             "crop": np.ones((2, 3), np.int32), "skipped": np.array([0, 1], np.int32)}
  padded = batch.evaluation(records, 4, (), 4, 1)
  assert padded["mask"].tolist() == [True, True, False, False]
  assert padded["label"].tolist() == [3, 5, 0, 0] and padded["skipped"].tolist() == [0, 1, 0, 0]
  assert (padded["image"][:2] == 7).all() and not padded["image"][2:].any()
  assert not batch.evaluation(None, 3, (10,), 4, 1)["mask"].any()
