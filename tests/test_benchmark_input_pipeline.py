"""`benchmark input`: originals, the prepared store and a plain PIL loop, compared in one run."""

import os

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
