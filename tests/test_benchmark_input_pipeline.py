"""`benchmark input`: originals, the prepared store and a plain PIL loop, compared in one run."""


from alexnet_jax.benchmark import input_pipeline as benchmark


def test_the_input_benchmark_compares_originals_prepared_and_a_pil_loop(capsys):
  records = benchmark.bench_input(root="", generate=16, workers=1, seconds=0.1)
  what = [r["what"] for r in records]
  assert what[0] == "generated ImageNet-like JPEGs" and what[1].startswith("prepare")
  assert "plain PIL loop on the originals, 1 core" in what
  for form in ("originals", "prepared"):
    assert f"pipeline on the {form}, 1 reader thread" in what
  assert "ratio" in records[-1] and records[-1]["ratio"] > 0
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
