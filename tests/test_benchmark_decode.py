"""`benchmark decode`: each way's patches against the default decoder's."""

import numpy as np
import pytest

from alexnet_jax.benchmark import decode as benchmark
from alexnet_jax.data import nvdecode
from conftest import load_config

pytest.importorskip("nvidia.nvimgcodec", reason="the nvimgcodec extra")


def _config():
  config = load_config("tiny")
  config.model.update(num_classes=4, input_size=32)
  config.data.update(image_size=36)
  return config


def test_every_way_is_compared_with_the_default_decoders_pixels(tmp_path, capsys, monkeypatch):
  """On a CPU every way decodes the default decoder's pixels. A way one grey level off
  everywhere, and one leaving a patch to the host, are seen. Mutations: the difference taken
  against the way's own pixels -> red; the patches left to the host not counted -> red."""
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
  device = benchmark.bench_decode(_config(), batch=8, generate=12, seconds=0.02)[2]
  assert device["max_abs_diff"] == 1 and 0.5 < device["differing_fraction"] < 1
  assert device["left_to_host"] == 2  # the first patch of each of the two batches
