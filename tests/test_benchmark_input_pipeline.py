"""`benchmark input`: originals, the prepared store and a plain PIL loop, compared in one run."""

import os

import numpy as np
import pytest

from alexnet_jax.benchmark import input_pipeline as benchmark


def test_worker_counts_double_up_to_the_cores():
  assert benchmark._worker_counts(1) == [1]
  assert benchmark._worker_counts(2) == [1, 2]
  assert benchmark._worker_counts(6) == [1, 2, 4, 6]
  assert benchmark._worker_counts(16) == [1, 2, 4, 8, 16]


def test_the_input_benchmark_compares_originals_prepared_and_a_pil_loop(capsys):
  records = benchmark.bench_input(root="", generate=16, workers=1, seconds=0.1)
  what = [r["what"] for r in records]
  assert what[0] == "generated ImageNet-like JPEGs" and what[1].startswith("prepare")
  assert "plain PIL loop on the originals, 1 core" in what
  for form in ("originals", "prepared"):
    assert f"pipeline on the {form}, 1 reader thread" in what
  assert [r["workers"] for r in records if "workers" in r] == benchmark._worker_counts(
      os.cpu_count())
  handover = [r for r in records if r["what"].startswith("hand-over")]
  assert [r["what"].split(", ", 1)[1] for r in handover[:3]] == [
      "in-process", "grain's shared memory", "reused shared memory"]
  # Mutation: the ratio taken the other way round -> red.
  assert handover[3]["ratio"] == pytest.approx(
      handover[1]["cpu_ms_per_batch"] / handover[2]["cpu_ms_per_batch"], abs=0.01)
  assert len(capsys.readouterr().out.strip().splitlines()) == len(records)


def test_the_plain_pil_loop_skips_and_counts_an_unreadable_file(tmp_path):
  """`benchmark input --root` died on one corrupt file with a traceback."""
  from PIL import Image

  good = tmp_path / "good.jpg"
  Image.new("RGB", (300, 280), (10, 20, 30)).save(good)
  bad = tmp_path / "bad.jpg"
  bad.write_bytes(b"not a jpeg")
  rate, unreadable = benchmark.plain_pil_loop([str(bad), str(good)], seconds=0.2)
  assert rate > 0 and unreadable >= 1
  # Nothing readable: each file tried once, then it ends (not after its seconds).
  assert benchmark.plain_pil_loop([str(bad), str(bad)], seconds=600) == (0.0, 2)


def test_the_hand_over_rows_from_a_fixed_timing(monkeypatch):
  """Each hand-over row times its own way: made here; made in one worker and handed over
  through grain's shared memory; through the input's reused shared memory (`FromStep`, which
  copies each batch out); each batch of the layout asked for; ms per batch from the timing.
  Mutations: the ways swapped, wall or CPU time per batch inverted -> red."""
  from conftest import fixed_timing

  from alexnet_jax.benchmark import handover

  fixed_timing(monkeypatch, handover)
  ways, taken = [], []
  timed = handover.timed
  monkeypatch.setattr(handover, "timed", lambda call, s: ways.append("timed") or timed(call, s))
  real_in_workers, real_from_step = handover.workers.in_workers, handover.workers.FromStep

  def in_workers(dataset, n):
    ways.append(("grain", n))
    return real_in_workers(dataset, n)

  class FromStep(real_from_step):
    def __init__(self, batches, read, n, layout):
      ways.append(("reused", n))
      super().__init__(batches, read, n, layout)

    def __next__(self):
      taken.append(super().__next__())
      return taken[-1]

  monkeypatch.setattr(handover.workers, "in_workers", in_workers)
  monkeypatch.setattr(handover.workers, "FromStep", FromStep)
  records = handover.bench_handover(0.0, batch=2, crop=8)
  # FromStep starts its workers itself, at its first batch (the last ("grain", 1)).
  assert ways == ["timed", ("grain", 1), "timed", ("reused", 1), "timed", ("grain", 1)]
  assert [r["what"] for r in records[:3]] == [
      f"hand-over of a batch (2x8x8x3), {way}"
      for way in ("in-process", "grain's shared memory", "reused shared memory")]
  assert all((r["ms_per_batch"], r["cpu_ms_per_batch"]) == (50.0, 25.0) for r in records[:3])
  assert records[3]["ratio"] == 1.0
  assert taken[0]["image"].shape == (2, 8, 8, 3) and taken[0]["image"].dtype == np.uint8


def test_the_batches_rates_from_a_fixed_timing(monkeypatch):
  """10 batches of 128 in 0.5 s of wall time and 0.25 s of CPU: 2,560 images/s, 5,120 per
  CPU-second; the input closed after. Mutations: either rate inverted; the input left open."""
  from conftest import fixed_timing

  fixed_timing(monkeypatch, benchmark)
  closed = []

  class Batches:
    def __iter__(self):
      return self

    def __next__(self):
      return {}

    def close(self):
      closed.append(True)

  assert benchmark._time_batches(Batches(), 1.0, 128) == (2560.0, 5120.0)
  assert closed == [True]
