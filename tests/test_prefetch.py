"""The device prefetcher: batches ahead of the loop, the loop's position for checkpoints."""

import time

import numpy as np
import pytest

from alexnet_jax.prefetch import DevicePrefetch


class _Counting:
  """An iterator of batches whose state is its position, as the training iterator's is."""

  def __init__(self, fail_at=None):
    self.position, self.fail_at = 0, fail_at

  def set_state(self, state):
    self.position = state["next_index"]

  def __next__(self):
    if self.position == self.fail_at:
      raise ValueError("a broken input")
    self.position += 1
    return {"x": np.full(2, self.position), "skipped": np.array([0, self.position % 2])}

  def get_state(self):
    return {"next_index": self.position}


def test_the_state_is_the_loops_position_not_the_iterators():
  source = _Counting()
  batches = DevicePrefetch(source, put=lambda b: {"x": b["x"] * 10}, depth=3)
  try:
    assert batches.get_state() == {"next_index": 0}
    taken = [next(batches) for _ in range(4)]
    assert [int(b["x"][0]) for b, _ in taken] == [10, 20, 30, 40]  # `put` applied, in order
    assert [s for _, s in taken] == [1, 0, 1, 0]  # unreadable-image counts carried along
    assert batches.get_state() == {"next_index": 4}
    # The thread reads `depth` batches ahead into the queue and holds one more while it is
    # full: it stops at 4 + 3 + 1. Mutation: `max(1, depth)` -> `min` -> 6 (red).
    deadline = time.monotonic() + 10
    while source.position < 8 and time.monotonic() < deadline:
      time.sleep(0.01)
    time.sleep(0.05)
    assert source.position == 8
    thread = batches._thread
  finally:
    batches.close()
  assert not thread.is_alive()


def test_the_transfer_time_is_the_threads_time_in_put_and_is_taken_once():
  """What `benchmark end2end` reports as the transfer: the seconds spent in `put` since the
  last `take_transfer`, here 10 ms a batch; a batch without a `skipped` field counts none.
  Mutations: the time starting at 1.0 or reset to 1.0; no `skipped` counted as 1 -> red."""

  class _Plain(_Counting):
    def __next__(self):
      return {"x": super().__next__()["x"]}

  source = _Plain()
  batches = DevicePrefetch(source, put=lambda b: (time.sleep(0.01), b)[1], depth=1)
  try:
    assert [next(batches)[1] for _ in range(3)] == [0, 0, 0]
    deadline = time.monotonic() + 10
    while source.position < 5 and time.monotonic() < deadline:  # 3 taken, 1 queued, 1 held
      time.sleep(0.01)
    time.sleep(0.05)
    assert source.position == 5
    assert 0.05 <= batches.take_transfer() < 0.9
    assert batches.take_transfer() == 0.0  # the thread waits on the full queue: no `put` since
  finally:
    batches.close()


def test_a_restored_position_drops_what_was_read_ahead_and_continues_there():
  source = _Counting()
  batches = DevicePrefetch(source, put=lambda b: b, depth=3)
  try:
    batches.set_state({"next_index": 5})  # before the first batch: the thread has not started
    assert batches._thread is None and source.position == 5
    assert int(next(batches)[0]["x"][0]) == 6
    next(batches)
    batches.set_state({"next_index": 2})  # mid-run: the batches read ahead are dropped
    assert batches.get_state() == {"next_index": 2}
    assert [int(next(batches)[0]["x"][0]) for _ in range(3)] == [3, 4, 5]
  finally:
    batches.close()


def test_an_input_error_is_raised_in_the_loops_thread():
  batches = DevicePrefetch(_Counting(fail_at=2), put=lambda b: b)
  try:
    next(batches)
    next(batches)
    with pytest.raises(ValueError, match="a broken input"):
      next(batches)
  finally:
    batches.close()


class _Lending(_Counting):
  """Lends its batches, as the training iterator does from the workers' shared memory on a
  device: each is overwritten when the next is asked for."""

  def __init__(self):
    super().__init__()
    self.buffer = np.zeros(2, np.int64)

  def lend(self):
    return True

  def __next__(self):
    batch = super().__next__()
    self.buffer[:] = batch["x"]
    return {"x": self.buffer, "skipped": batch["skipped"]}


def test_a_lent_batch_is_on_the_device_before_the_next_is_asked_for(monkeypatch):
  """`put` stands for an asynchronous transfer, its result reading the host bytes until
  `block_until_ready` (here: the copy made). Mutation: the wait for the transfer dropped ->
  the device batches hold the last batch's bytes (red)."""
  import alexnet_jax.prefetch as prefetch

  def completed(arrays):
    arrays["x"] = arrays["x"].copy()
    return arrays

  monkeypatch.setattr(prefetch.jax, "block_until_ready", completed)
  with DevicePrefetch(_Lending(), lambda batch: {"x": batch["x"]}, depth=2) as batches:
    taken = [next(batches)[0]["x"] for _ in range(4)]
  assert [int(x[0]) for x in taken] == [1, 2, 3, 4]


def test_start_prefetch_starts_the_host_input_where_it_can():
  """The loop starts the input workers before the first step compiles (`start_prefetch`); an
  iterator without it is left alone. Mutation: the `is not None` test inverted -> red."""
  started = []

  class _Starting(_Counting):
    def start_prefetch(self):
      started.append(self.position)

  with DevicePrefetch(_Starting(), lambda b: b) as batches:
    batches.start_prefetch()
    assert started == [0] and batches._thread is None  # nothing read yet
  with DevicePrefetch(_Counting(), lambda b: b) as batches:
    batches.start_prefetch()
