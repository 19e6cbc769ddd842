"""The one evaluation loop (`evaluation.py`): sums over batches, means over the readable
images, the unreadable ones counted, the kept softmax of the readable ones in order."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from alexnet_jax import evaluation
from alexnet_jax.errors import UserError


def _sums(params, batch, mean):
  """An eval step's sums over the batch's readable examples, and each example's 'softmax'."""
  del params, mean
  mask = batch["mask"].astype(jnp.float32)
  sums = {"loss": jnp.sum(batch["loss"] * mask), "top1_error": jnp.sum(batch["top1"] * mask),
          "top5_error": jnp.float32(0.0), "count": jnp.sum(mask)}
  return {"eval": sums}, {"eval": jnp.stack([batch["loss"], batch["top1"]], axis=-1)}


def _batch(loss, top1, mask, skipped):
  return {"loss": np.float32(loss), "top1": np.float32(top1), "label": np.arange(len(loss)),
          "mask": np.asarray(mask), "skipped": np.asarray(skipped)}


def test_the_figures_are_means_over_the_readable_images_of_every_batch():
  """Two batches, one padded example and 3 unreadable images: the means are the sums over the
  4 readable images, over 4. Mutations: the count of 1 refused as if 0 (`count == 1`); the
  skipped counted from 1 -> red."""
  sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  batches = lambda: [_batch([1.0, 2.0, 3.0], [1, 0, 1], [True, True, True], [2, 0, 0]),
                     _batch([5.0, 9.0, 0.0], [0, 0, 0], [True, False, False], [1, 0, 0])]
  results, kept = evaluation.evaluate(_sums, None, None, iter(batches()), 2, sharding,
                                      what="test", keep="eval")
  assert results == {"eval": {"loss": 11.0 / 4, "top1_error": 0.5, "top5_error": 0.0,
                              "skipped_images": 3}}
  np.testing.assert_array_equal(kept["labels"], [0, 1, 2, 0])
  np.testing.assert_array_equal(kept["probs"][:, 0], [1.0, 2.0, 3.0, 5.0])
  sums_only = lambda *args: _sums(*args)[0]  # an eval step without `with_probs`
  one, none = evaluation.evaluate(sums_only, None, None, iter(batches()[1:]), 1, sharding,
                                  what="t")
  assert one["eval"]["loss"] == 5.0 and none is None
  unreadable = _batch([0.0], [0], [False], [4])
  with pytest.raises(UserError, match=r"no evaluation image could be read \(4 unreadable\)"):
    evaluation.evaluate(sums_only, None, None, iter([unreadable]), 1, sharding, what="t")


def test_the_timing_parts_the_inputs_start_and_the_first_batch_from_the_rate(monkeypatch):
  """On a clock the batches and the step move: the input's first batch comes after 5 s, the
  first step takes 10 (compiling), each later batch 1 s to come and 2 to evaluate; 3, 1 and 2
  readable images. The pass: 21 s, 5 s of input start, (1 + 2) images in the 6 s after the
  first batch; the input's close after the last batch (4 s: its processes stopping) in the
  pass's time, not in the rate. Mutations, each red: the input's start taken at the first
  batch's end; the rate over the whole pass; the first batch's images counted in it; one
  batch's pass over its own images and whole time (not 0 images in 0 s); the input closed
  before the rate's end; not closed."""
  now = [0.0]
  monkeypatch.setattr(evaluation, "_clock", lambda: now[0])
  sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])

  def batches(masks):
    try:
      for i, mask in enumerate(masks):
        now[0] += 5.0 if i == 0 else 1.0
        yield _batch([1.0] * 3, [0] * 3, mask, [0])
    finally:
      now[0] += 4.0

  def step(*args):
    now[0] += 10.0 if now[0] == 5.0 else 2.0
    return _sums(*args)[0]

  masks = [[True, True, True], [False, True, False], [True, False, True]]
  timing = {}
  evaluation.evaluate(step, None, None, batches(masks), 3, sharding, what="t", timing=timing)
  assert timing == {"seconds": 25.0, "input_start_seconds": 5.0, "images": 6.0,
                    "img_per_s": 0.5}
  now[0], one = 0.0, {}
  evaluation.evaluate(step, None, None, batches(masks[:1]), 1, sharding, what="t", timing=one)
  assert one == {"seconds": 19.0, "input_start_seconds": 5.0, "images": 3.0, "img_per_s": 0.2}
