"""The shared memory the input workers hand their batches over in: reused slots, a writer that
waits for a slot its reader still holds, one-line errors, nothing left behind."""

import pickle
import threading

import numpy as np
import pytest

from alexnet_jax.data import batch as batch_lib
from alexnet_jax.data import ring
from alexnet_jax.errors import UserError
from conftest import ring_blocks

LAYOUT = batch_lib.train_layout(4, 8, 3)


def _batch(value: int) -> dict:
  return {name: np.full(shape, value, dtype) for name, (shape, dtype) in LAYOUT.items()}


def test_a_writer_reuses_its_slots_and_waits_for_one_still_read():
  """Batches go round 2 slots; the third waits until the reader releases the first slot, then
  takes it. Mutation: `_wait` skipped -> the third overwrites a held slot (red)."""
  batches = ring.BatchRing(LAYOUT, workers=1, slots=2)
  try:
    writer = pickle.loads(pickle.dumps(batches.writer()))  # as grain hands it to a worker
    first, second = writer.map(_batch(1)), writer.map(_batch(2))
    assert (first.slot, second.slot) == (0, 1)
    for ticket, value in ((first, 1), (second, 2)):
      for name, view in batches.views(ticket).items():
        np.testing.assert_array_equal(view, _batch(value)[name], err_msg=name)
    third = []
    thread = threading.Thread(target=lambda: third.append(writer.map(_batch(3))))
    thread.start()
    thread.join(0.3)
    assert thread.is_alive() and not third  # slot 0 is held
    assert int(batches.views(first)["label"][0]) == 1
    batches.release(first)
    thread.join(10)
    assert third == [ring.Ticket(0, 0)]
    assert int(batches.views(third[0])["image"].max()) == 3
    assert int(batches.views(second)["label"][0]) == 2  # the held slot untouched
  finally:
    batches.release_all()
    batches.close()


def test_release_all_frees_a_writer_waiting_for_a_slot():
  """What a stopping pipeline does so that a worker waiting for a slot goes on (to be
  stopped). Mutation: `release_all` setting the flags to 1 -> the writer waits on (red)."""
  batches = ring.BatchRing(LAYOUT, workers=1, slots=1)
  try:
    writer = batches.writer()
    writer.map(_batch(1))
    waiting = []
    thread = threading.Thread(target=lambda: waiting.append(writer.map(_batch(2))), daemon=True)
    thread.start()
    thread.join(0.3)
    assert thread.is_alive()
    batches.release_all()
    thread.join(10)
    assert waiting == [ring.Ticket(0, 0)]
  finally:
    batches.release_all()
    batches.close()


def test_a_waiting_writer_polls_ever_less_often_up_to_a_cap(monkeypatch):
  """A worker whose slots are full is ahead: it polls at first every 0.2 ms, each wait twice
  the last, up to 5 ms (not 8 % of a core each while it waits). Mutations: a fixed 0.2 ms
  poll; no cap -> red."""
  batches = ring.BatchRing(LAYOUT, workers=1, slots=1)
  try:
    writer = batches.writer()
    first = writer.map(_batch(1))
    slept = []

    def sleep(seconds):
      slept.append(seconds)
      if len(slept) == 8:
        batches.release(first)

    monkeypatch.setattr(ring.time, "sleep", sleep)
    assert writer.map(_batch(2)) == ring.Ticket(0, 0)
    assert slept == pytest.approx([0.0002, 0.0004, 0.0008, 0.0016, 0.0032, 0.005, 0.005, 0.005])
  finally:
    batches.release_all()
    batches.close()


def test_each_field_of_a_slot_starts_on_a_page_of_its_own():
  """Fields of odd sizes (a 4-example int32 label: 16 bytes) still begin on 4,096-byte
  boundaries, in every slot, and no two share a page. Mutations: `_ALIGN` 4097 and the first
  offset 1 -> red."""
  batches = ring.BatchRing(LAYOUT, workers=2, slots=3)
  try:
    for worker in range(2):
      for slot in range(3):
        views = batches.views(ring.Ticket(worker, slot))
        spans = sorted((v.ctypes.data, v.ctypes.data + v.nbytes) for v in views.values())
        assert all(start % 4096 == 0 for start, _ in spans), spans
        assert all(end <= start for (_, end), (start, _) in zip(spans, spans[1:]))
  finally:
    batches.close()


def test_a_batch_not_of_the_layout_is_refused():
  batches = ring.BatchRing(LAYOUT, workers=1)
  try:
    writer = batches.writer()
    wrong = _batch(0) | {"image": np.zeros((4, 9, 8, 3), np.uint8)}
    with pytest.raises(ValueError, match=r"image is uint8\(4, 9, 8, 3\)"):
      writer.map(wrong)
    with pytest.raises(ValueError, match="fields"):
      writer.map({k: v for k, v in _batch(0).items() if k != "shrink"})
  finally:
    batches.close()


def test_too_little_shared_memory_is_one_line_naming_the_settings(monkeypatch):
  """Mutation: the space check dropped -> the blocks are created, and a worker would die of
  SIGBUS on its first batch where /dev/shm is small (red: no error)."""
  monkeypatch.setattr(ring, "_shm_free_bytes", lambda: 2**20)
  with pytest.raises(UserError, match=r"need \d+ MiB of shared memory .* /dev/shm has 1 MiB "
                                      r"free: lower data.workers or data.batch_size"):
    ring.BatchRing(batch_lib.train_layout(128, 227, 3), workers=14)


def test_shared_memory_that_cannot_be_created_is_one_line_and_leaves_nothing(monkeypatch):
  """The third block refused (a /dev/shm that is not writable, or its inodes spent): one line,
  and the two blocks made before it removed. Mutations: the error let through; the blocks
  made left behind (no `close`) -> red."""
  made, create = [], ring.shared_memory.SharedMemory

  def third_refused(name, create_, size):
    if len(made) == 2:
      raise PermissionError(13, "Permission denied")
    made.append(create(name, create=create_, size=size))
    return made[-1]

  before = ring_blocks()
  monkeypatch.setattr(ring.shared_memory, "SharedMemory",
                      lambda name, create, size: third_refused(name, create, size))
  with pytest.raises(UserError, match=r"^cannot create the input workers' shared memory: "
                                      r"\[Errno 13\] Permission denied$"):
    ring.BatchRing(LAYOUT, workers=3)
  assert len(made) == 2 and not ring_blocks() - before


def test_closing_leaves_nothing_in_dev_shm():
  """Mutations: `close` without the unlink -> the blocks stay (red); the views over the
  block's own mapping -> reading the held view crashes the process (red)."""
  before = ring_blocks()
  batches = ring.BatchRing(LAYOUT, workers=3)
  made = ring_blocks() - before
  assert len(made) == 3
  held = batches.views(batches.writer().map(_batch(5)))
  batches.close()
  assert not ring_blocks() & made
  assert int(held["label"][0]) == 5  # a view still held keeps its memory (it used to crash)
