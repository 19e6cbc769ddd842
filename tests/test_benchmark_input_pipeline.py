"""`benchmark input`: originals, the prepared store and a plain PIL loop, compared in one run."""

import os

import numpy as np
import pytest

from alexnet_jax.benchmark import input_pipeline as benchmark
from conftest import fixed_clock, fixed_timing


def test_worker_counts_double_up_to_the_cores():
  assert benchmark._worker_counts(1) == [1]
  assert benchmark._worker_counts(2) == [1, 2]
  assert benchmark._worker_counts(6) == [1, 2, 4, 6]
  assert benchmark._worker_counts(16) == [1, 2, 4, 8, 16]


def test_the_input_benchmark_compares_originals_prepared_and_a_pil_loop(capsys, monkeypatch):
  """Each pipeline row timed as 10 batches of 128 in 0.5 s (0.25 s of CPU): 2,560 images/s,
  5,120 per CPU-second; --workers=0: one reader thread per core; the store in the paper
  config's form. Mutations: the prepared/originals ratio inverted or multiplied; 0 workers
  not taken as the cores; the thread rows in a worker process, or one with 2 threads; a
  pipeline of other patches or batches than the 224-pixel ones of 128 counted; the store's
  quality not the config's -> red."""
  from alexnet_jax.data import pipeline as data_pipeline

  fixed_timing(monkeypatch, benchmark)
  built, real = [], data_pipeline.train_dataset
  monkeypatch.setattr(data_pipeline, "train_dataset", lambda data, *a, **kw: built.append(
      (data.workers, data.read_threads, kw["crop"], kw["local_batch"])) or real(data, *a, **kw))
  records = benchmark.bench_input(root="", generate=16, workers=0, seconds=0.1)
  what = [r["what"] for r in records]
  assert what[0] == "generated ImageNet-like JPEGs"
  assert what[1] == "prepare (§2 form, JPEG quality 90, 420)"
  assert "plain PIL loop on the originals, 1 core" in what
  cores = os.cpu_count()
  pipeline = [r for r in records if r["what"].startswith("pipeline")]
  assert [r["what"] for r in pipeline[:4]] == [
      f"pipeline on the {form}, {n}" for form in ("originals", "prepared")
      for n in ("1 reader thread", f"{cores} reader threads")]
  assert {(r["img_per_s"], r["img_per_cpu_s"]) for r in pipeline} == {(2560.0, 5120.0)}
  ratio, = (r for r in records if r["what"].startswith("prepared / originals"))
  assert ratio["ratio"] == 1.0
  assert [r["workers"] for r in records if "workers" in r] == benchmark._worker_counts(cores)
  assert built == [(0, 1, 224, 128), (0, cores, 224, 128)] * 2 + [
      (n, 1, 224, 128) for n in benchmark._worker_counts(cores)]
  assert [r["what"] for r in pipeline[4:6]] == [
      "pipeline on the prepared, 1 worker process",
      "pipeline on the prepared, 2 worker processes"][:min(cores, 2)]
  handover = [r for r in records if r["what"].startswith("hand-over")]
  assert [r["what"].split(", ", 1)[1] for r in handover[:3]] == [
      "in-process", "grain's shared memory", "reused shared memory"]
  # Mutation: the ratio taken the other way round -> red.
  assert handover[3]["ratio"] == pytest.approx(
      handover[1]["cpu_ms_per_batch"] / handover[2]["cpu_ms_per_batch"], abs=0.01)
  assert len(capsys.readouterr().out.strip().splitlines()) == len(records)


@pytest.mark.parametrize("width,height", [(400, 300), (300, 400)])
def test_the_pil_yardstick_patch_is_a_crop_of_the_stored_image(width, height):
  """The yardstick does the training input's work: its patch is a `crop`-pixel window of the
  §2 stored image (`images.to_stored`: shorter side to 256, centre), at the place its rng
  draws, mirrored when drawn. Mutations: the resize, the centre crop, the window or the
  mirror changed -> red."""
  import io

  from PIL import Image

  from alexnet_jax.data import images

  y, x = np.mgrid[:height, :width]
  pixels = np.stack([x * 255 // (width - 1), y * 255 // (height - 1),
                     (x + y) % 256], -1).astype(np.uint8)
  png = io.BytesIO()
  Image.fromarray(pixels).save(png, format="PNG")
  stored = images.to_stored(Image.fromarray(pixels), 256)
  flips = set()
  for seed in range(6):
    draws = np.random.default_rng(seed)
    top, left = draws.integers(0, 256 - 224 + 1, 2)
    flip = draws.random() < 0.5
    flips.add(flip)
    window = stored[top:top + 224, left:left + 224]
    patch = benchmark.pil_patch(png.getvalue(), np.random.default_rng(seed))
    np.testing.assert_array_equal(patch, window[:, ::-1] if flip else window)
  assert flips == {True, False}


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


def test_the_plain_pil_loops_rate_from_a_fixed_clock(monkeypatch):
  """Each reading of the clock 0.1 s after the last, 0.25 s asked: two images read in 0.4 s."""
  fixed_clock(monkeypatch, benchmark, "perf_counter", 0.1)
  read = []
  monkeypatch.setattr(benchmark, "pil_patch", lambda item, rng, size, crop: read.append(
      (item, size, crop)))
  assert benchmark.plain_pil_loop([b"a", b"b", b"c"], 0.25, 64, 32) == (
      pytest.approx(5.0), 0)
  assert read == [(b"a", 64, 32), (b"b", 64, 32)]


def test_the_hand_over_rows_from_a_fixed_timing(monkeypatch):
  """Each hand-over row times its own way: made here; made in one worker and handed over
  through grain's shared memory; through the input's reused shared memory (`FromStep`, which
  copies each batch out); each batch of the layout asked for; ms per batch from the timing.
  Mutations: the ways swapped, wall or CPU time per batch inverted -> red."""
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
