"""`benchmark decode`: each way's patches against the default decoder's."""

import numpy as np
import pytest

from alexnet_jax.benchmark import decode as benchmark
from alexnet_jax.data import nvdecode
from conftest import fixed_timing, load_config

pytest.importorskip("nvidia.nvimgcodec", reason="the nvimgcodec extra")


def _config():
  config = load_config("tiny")
  config.model.update(num_classes=4, input_size=32)
  config.data.update(image_size=36)
  return config


def test_every_way_is_compared_with_the_default_decoders_pixels(tmp_path, capsys, monkeypatch):
  """On a CPU every way decodes the default decoder's pixels. A way one grey level off
  everywhere, and one leaving a patch to the host, are seen. Mutations: the difference taken
  against the way's own pixels; the patches left to the host not counted; the workers' way
  decoding another record on the host for a patch it refused (`start + i` -> `- i`) -> red."""
  records = benchmark.bench_decode(_config(), batch=8, generate=12, seconds=0.02,
                                   store=str(tmp_path / "store"))
  assert [r["max_abs_diff"] for r in records] == [0, 0, 0]
  assert [r["left_to_host"] for r in records] == [0, 0, 0]
  assert {r["images_compared"] for r in records} == {12} and records[0]["batch"] == 8
  assert len(capsys.readouterr().out.splitlines()) == 3
  real = nvdecode.DeviceDecoder._decoded

  def off_by_one(self, jpegs, boxes):
    out = [None] + [np.minimum(p, 254) + 1 for p in real(self, jpegs, boxes)[1:]]
    return out

  monkeypatch.setattr(nvdecode.DeviceDecoder, "_decoded", off_by_one)
  real_patches = nvdecode.PatchDecoder.patches

  def one_refused(self, jpegs, boxes, crop):  # the workers' decoder refuses each batch's 4th
    return [None if i == 3 else p for i, p in enumerate(real_patches(self, jpegs, boxes, crop))]

  monkeypatch.setattr(nvdecode.PatchDecoder, "patches", one_refused)
  _, workers, device = benchmark.bench_decode(_config(), batch=8, generate=12, seconds=0.02)
  assert device["max_abs_diff"] == 1 and 0.5 < device["differing_fraction"] < 1
  assert device["left_to_host"] == 2  # the first patch of each of the two batches
  assert workers["max_abs_diff"] == 0 and workers["left_to_host"] == 2  # each its own patch


def test_each_ways_rates_are_its_patches_over_the_time_it_took(monkeypatch):
  """Fewer images than a batch: one batch of 12 patches, timed. Mutations: patches per second
  or CPU ms per batch miswritten (`*` <-> `/`); the second batch timed -> red."""
  fixed_timing(monkeypatch, benchmark)  # 10 batches in 0.5 s of wall time, 0.25 s of CPU
  for record in benchmark.bench_decode(_config(), batch=16, generate=12, seconds=0.02):
    assert (record["batch"], record["img_per_s"], record["cpu_ms_per_batch"]) == (12, 240.0, 25.0)
