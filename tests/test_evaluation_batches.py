"""The evaluation batches: the chunks they are made of, and the worker processes a run's
evaluations keep from one pass to the next."""

import itertools
import multiprocessing

import numpy as np

from alexnet_jax.data.evaluation_batches import chunk_size
from conftest import build_input, folder_config, image_folder_tree, ring_blocks


def test_an_evaluation_chunk_holds_at_most_a_quarter_of_a_batch_of_patches():
  """A worker's 4 slots of evaluation chunks take the shared memory of one training batch:
  a chunk is the largest divisor of the batch with at most a quarter of its patches in centre
  crops. Mutations: chunks of the whole batch; ten crops counted as one patch; a size that
  does not divide the batch -> red."""
  assert [chunk_size(b, v) for b, v in ((128, ()), (128, (10,)), (256, (10,)), (100, ()),
                                        (4, (10,)))] == [32, 2, 4, 25, 1]


def _assert_same(got: list[dict], want: list[dict]) -> None:
  assert len(got) == len(want)
  for a, b in zip(got, want):
    assert set(a) == set(b)
    for key in b:
      np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def _children() -> set:
  return set(multiprocessing.active_children())


def test_kept_workers_read_the_next_passes_without_starting_again(tmp_path):
  """Passes asked to keep their 2 worker processes: the next pass reads in the same two,
  bitwise the batches read here (the unreadable image's place empty in each), and a pass not
  asked to keep them stops them, each left after its last batch as an evaluation leaves it.
  A pass of the other kind (ten crops) stops the centre crop's; `Input.close` stops those
  kept. Mutations: `keep` ignored (a new pair each pass); the workers kept only once the
  pass is asked for a batch past its last; a kept reading that is not endless (the second
  pass finds it exhausted); the other kind's not stopped; `Input.close` leaving the
  evaluation's -> red."""
  image_folder_tree(tmp_path)
  config = folder_config(tmp_path)
  config.data.workers = 0
  here = build_input(config)
  want, want_ten = list(here.eval_batches(False)), list(here.eval_batches(True))
  assert sum(int(b["skipped"].sum()) for b in want) == 1
  config.data.workers = 2
  before, children = ring_blocks(), _children()
  inp = build_input(config)
  try:
    running = []
    for keep in (True, True, False):
      batches = inp.eval_batches(False, keep=keep)
      _assert_same(list(itertools.islice(batches, inp.eval_steps)), want)
      batches.close()  # as an evaluation leaves a pass: after its last batch
      running.append(_children() - children)
    assert len(running[0]) == 2 and running[1] == running[0] and not running[2]
    assert not ring_blocks() - before
    list(inp.eval_batches(False, keep=True))
    centre = _children() - children
    _assert_same(list(inp.eval_batches(True, keep=True)), want_ten)
    assert len(centre) == 2 and not centre & _children()
    assert len(_children() - children) == 2 and ring_blocks() - before
    inp.close()
    assert _children() <= children and not ring_blocks() - before
  finally:
    inp.close()


def test_a_kept_pass_left_unfinished_stops_its_workers_and_the_next_starts_afresh(tmp_path):
  """A pass asked to keep its workers but left after its first batch (an evaluation
  stopped by a signal, or failing) stops them: the next pass is whole, from its first
  example. Mutation: the workers kept however the pass ended -> the next pass reads on from
  where the first stopped (red)."""
  image_folder_tree(tmp_path)
  config = folder_config(tmp_path)
  config.data.workers = 0
  want = list(build_input(config).eval_batches(False))
  config.data.workers = 2
  children = _children()
  inp = build_input(config)
  try:
    batches = inp.eval_batches(False, keep=True)
    next(batches)
    batches.close()
    assert _children() <= children
    _assert_same(list(inp.eval_batches(False, keep=True)), want)
  finally:
    inp.close()
