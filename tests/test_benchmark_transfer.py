"""`benchmark transfer`: every way of crossing, each figure from the same bytes."""

import numpy as np
import pytest

from alexnet_jax.benchmark import transfer as benchmark
from conftest import fixed_timing, load_config


def test_each_way_moves_the_batch_and_its_figures_agree(capsys, monkeypatch):
  """16 patches of 32x32x3 bytes and their label, box, lighting and shrink (the host-side
  'skipped' stays). Every way puts the same bytes on the first device. Mutations: a way's
  device copy of the first batch's fields taken from another batch -> red; one image's bytes
  counted for the batch -> red; the second device -> red."""
  import jax

  host = benchmark._host_batch(benchmark.batch_lib.device_layout(16, 32, 3))
  packed = np.concatenate([v.reshape(-1).view(np.uint8) for v in host.values()])
  real, checked = jax.device_put, []

  def checked_put(x, sharding):  # checked at once: some alias the ring's memory
    assert sharding.device_set == {jax.devices()[0]}
    out = real(x, sharding)
    if isinstance(out, dict):
      for key, want in host.items():
        np.testing.assert_array_equal(np.asarray(out[key]), want, err_msg=key)
    else:
      np.testing.assert_array_equal(np.asarray(out), packed)
    checked.append(1)
    return out

  monkeypatch.setattr(jax, "device_put", checked_put)
  records = benchmark.bench_transfer(load_config("tiny"), batch=16, seconds=0.05)
  assert len(capsys.readouterr().out.strip().splitlines()) == len(records) == 4
  crossing = 16 * (32 * 32 * 3 + 4 + 12 + 12 + 4)
  for record in records:
    assert record["mb_per_batch"] == pytest.approx(crossing / 1e6, rel=0.005)
    assert record["gb_per_s"] == pytest.approx(
        record["mb_per_batch"] / record["ms_per_batch"], rel=0.02)
  assert len(checked) > 4 * 4


def test_each_ways_rates_are_its_bytes_over_the_time_it_took(monkeypatch):
  """Mutations: GB/s, ms or CPU ms per batch miswritten (`*` <-> `/`) -> red."""
  fixed_timing(monkeypatch, benchmark)  # 10 batches in 0.5 s of wall time, 0.25 s of CPU
  crossing = 16 * (32 * 32 * 3 + 4 + 12 + 12 + 4)
  for record in benchmark.bench_transfer(load_config("tiny"), batch=16, seconds=0.05):
    assert (record["ms_per_batch"], record["cpu_ms_per_batch"]) == (50.0, 25.0)
    assert record["gb_per_s"] == pytest.approx(crossing * 20 / 1e9, rel=0.005)
