"""The input pipeline (§2, §4.1): the device normalisation's mean patch, exact evaluation,
determinism, iterator restore, an image folder's unreadable files."""

import os

import jax.numpy as jnp
import numpy as np
import pytest

from alexnet_jax.data import pipeline
from alexnet_jax.data.normalize import normalize
from alexnet_jax.errors import UserError
from conftest import (build_input, folder_config, image_folder_tree, load_config,
                      synthetic_config, write_idx)


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
  assert not any(b["skipped"].any() for b in [*batches, ten])  # in memory: nothing unreadable

def test_same_seed_same_batches_and_a_restored_iterator_continues_exactly():
  """The position is the steps taken, and a fresh iterator is at step 0. Mutations: the
  position starting at 1 or counting 2 a batch -> red."""
  a, b, c = (build_input(synthetic_config()) for _ in range(3))
  c.train.set_state({"step": 0})
  for _ in range(3):
    x, y, z = next(a.train), next(b.train), next(c.train)
    np.testing.assert_array_equal(x["image"], y["image"])
    np.testing.assert_array_equal(x["image"], z["image"])
  state = a.train.get_state()
  assert state == {"step": 3}
  expected = [next(a.train) for _ in range(6)]  # crosses an epoch boundary (5 steps / epoch)
  b.train.set_state(state)
  for want in expected:
    got = next(b.train)
    np.testing.assert_array_equal(got["image"], want["image"])
    np.testing.assert_array_equal(got["label"], want["label"])


@pytest.mark.parametrize("reshuffle", [True, False])
def test_each_epoch_is_a_new_order_or_the_first_ones_again(reshuffle):
  """grain's shuffle anew each epoch, or (`data.reshuffle_each_epoch=False`, the 2012 code's
  data provider) the first epoch's order every epoch; either way each epoch holds every record
  once and the augmentation is drawn anew. Mutations: the `reseed_each_epoch` argument dropped;
  the position taken modulo the split's length (the same lighting each epoch) -> red."""
  config = synthetic_config()  # 40 records, batches of 8: 5 steps an epoch
  config.data.update(dict(image_size=32, flip=False, reshuffle_each_epoch=reshuffle))
  train = build_input(config).train  # crops of 32 from images of 32: the patch is the record
  epochs = [[next(train) for _ in range(5)] for _ in range(3)]
  images = [np.concatenate([b["image"] for b in e]).reshape(40, -1) for e in epochs]
  lighting = [np.concatenate([b["lighting"] for b in e]) for e in epochs]
  records = lambda e: sorted(map(bytes, e))
  assert len(set(records(images[0]))) == 40
  assert records(images[0]) == records(images[1]) == records(images[2])
  assert [np.array_equal(images[0], e) for e in images[1:]] == [not reshuffle] * 2
  assert not np.array_equal(lighting[0], lighting[1])
  assert load_config("paper").data.reshuffle_each_epoch
  assert not load_config("paper_code").data.reshuffle_each_epoch


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
  Mutations: only {'step'} read -> the old position is refused; the step's checks joined by
  `and` (a negative step taken, a string a TypeError) -> red."""
  a, b = (build_input(synthetic_config()) for _ in range(2))
  a.train.set_state({"step": 3})
  b.train.set_state({"next_index": 3, "worker_count": 0})
  np.testing.assert_array_equal(next(a.train)["image"], next(b.train)["image"])
  for bad in ({"workers_state": {}}, {"step": -1}, {"step": "3"}, {"step": 2.0}, [3]):
    with pytest.raises(UserError, match="not an input position"):
      b.train.set_state(bad)


def test_data_the_network_cannot_take_is_one_line_before_a_batch_is_read(tmp_path):
  """Crops larger than the stored images (the stored size itself is taken), a split without
  images, batch sizes that do not divide over the processes (either one alone), the wrong
  channel count, and labels beyond the classes (a damaged label file: it named the class count
  twice, as if it were the mismatch). Mutations: `crop >= stored`, the empty check or the
  process check joined by `and`, the label check dropped or made `top > num_classes` -> red."""
  config = synthetic_config()
  config.model.input_size = 37
  with pytest.raises(UserError, match=r"^model.input_size 37 is larger than the stored "
                                      r"images \(36\)$"):
    build_input(config)
  config.model.input_size = 36
  assert next(build_input(config).train)["image"].shape == (8, 36, 36, 3)
  config = synthetic_config()
  config.data.synthetic_eval_size = 0
  with pytest.raises(UserError, match=r"has an empty split \(40 train, 0 eval examples\)"):
    build_input(config)
  for batch, eval_batch in ((8, 12), (12, 8)):
    config = synthetic_config()
    config.data.update(dict(batch_size=batch, eval_batch_size=eval_batch))
    with pytest.raises(UserError, match="must divide evenly over 8 processes"):
      build_input(config, process_index=0, process_count=8)

  for prefix, labels in (("train", [0, 3, 9, 10]), ("t10k", [1, 2, 3, 4])):
    write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", np.zeros((4, 28, 28)))
    write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.array(labels))
  config = load_config("fashion_mnist")
  config.data.update(dict(data_dir=str(tmp_path), batch_size=2, eval_batch_size=2))
  with pytest.raises(UserError, match=r"^fashion_mnist has a label 10 but 10 classes \(0 to 9\): "
                                      "its label files are damaged$"):
    build_input(config)
  config.model.in_channels = 3
  with pytest.raises(UserError, match="in_channels is 3 but fashion_mnist images have 1 channel$"):
    build_input(config)
  config.model.in_channels, config.model.num_classes = 1, 7
  with pytest.raises(UserError, match="num_classes is 7 but fashion_mnist has 10 classes"):
    build_input(config)


def test_reader_threads_are_one_a_core_here_one_a_worker_process_or_as_asked(monkeypatch):
  """`data.read_threads` 0 is one thread per core in the training process and one in each
  worker process (which is a core's reader already); grain's buffer holds at least a batch
  a thread. Mutations: two threads a worker; one worker read with a thread per core; 2 threads
  where the core count is unknown -> red."""
  monkeypatch.setattr(os, "cpu_count", lambda: 6)
  data = load_config("tiny").data
  data.read_threads, data.prefetch = 0, 2
  for workers, threads in ((0, 6), (1, 1), (3, 1)):
    options = pipeline._read_options(data, workers)
    assert (options.num_threads, options.prefetch_buffer_size) == (threads, max(2, threads))
  data.read_threads = 3
  assert pipeline._read_options(data, 4).num_threads == 3
  monkeypatch.setattr(os, "cpu_count", lambda: None)
  data.read_threads = 0
  assert pipeline._read_options(data, 0).num_threads == 1


def test_two_processes_shares_make_up_the_one_process_batches_and_evaluation():
  """Each process of a 2-process run reads its half of every global batch: process 0's and
  process 1's batches side by side are the one-process batches, crops and mirrors included;
  evaluation reads each image once in one of them, both running the same number of steps.
  Mutations: `process_count > 1` -> `> 2` (each process the whole global batch's first
  half); the share's offset `p * local` dropped; every process evaluating the shard of
  process 0 -> red."""
  config = synthetic_config()
  one = build_input(config)
  two = [build_input(config, process_index=p, process_count=2) for p in (0, 1)]
  for _ in range(3):
    whole, halves = next(one.train), [next(inp.train) for inp in two]
    assert set(whole) == set(halves[0])
    for key in whole:
      np.testing.assert_array_equal(np.concatenate([h[key] for h in halves]), whole[key],
                                    err_msg=key)

  def examples(inp):
    return sorted((int(b["label"][i]), b["image"][i].tobytes())
                  for b in inp.eval_batches(False) for i in np.flatnonzero(b["mask"]))

  assert two[0].eval_steps == two[1].eval_steps
  assert len(examples(one)) == 37
  assert sorted(examples(two[0]) + examples(two[1])) == examples(one)
