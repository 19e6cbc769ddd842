"""Progress (`progress.py`): the host's time per step by part, and the log lines."""

import re
import time

import pytest

from alexnet_jax import progress


def test_an_interval_splits_the_wall_time_into_its_parts(monkeypatch):
  """The next interval starts afresh: its parts from 0, one step its own. Mutations: `other`
  not what is left of the wall time; the parts reset to 1 s; at least 2 steps an interval
  -> red."""
  clock = iter([0.0, 0.0, 1.0, 1.5, 2.0, 4.0, 6.0]).__next__  # start; input 0-1; dispatch
  # 1.5-2; the first interval at 4, the second at 6
  monkeypatch.setattr(time, "perf_counter", clock)
  p = progress.Progress(start=0, total=10, batch_size=8)
  with p.timing("input_wait"):
    pass
  with p.timing("dispatch"):
    pass
  out = p.interval(step=2, transfer_seconds=0.2)  # 4 s for 2 steps
  assert out["img_per_s"] == pytest.approx(4.0)
  assert out["input_wait_fraction"] == pytest.approx(0.25)
  assert out["host_ms/input_wait"] == pytest.approx(500) and out["host_ms/dispatch"] == 250
  assert out["host_ms/other"] == pytest.approx(1250) and out["host_ms/transfer"] == 100
  out = p.interval(step=3)  # 2 s for 1 step, nothing timed
  assert out["img_per_s"] == pytest.approx(4.0) and out["input_wait_fraction"] == 0.0
  assert out["host_ms/input_wait"] == 0.0 and out["host_ms/dispatch"] == 0.0
  assert out["host_ms/other"] == pytest.approx(2000)
  # Since the loop started (the closing summary's): mutation, reset with each interval -> red.
  assert (p.totals["input_wait"], p.totals["dispatch"], p.counts["dispatch"]) == (1.0, 0.5, 1)


def test_track_yields_every_item_and_logs_progress(monkeypatch, caplog):
  """Mutation: the first item dropped -> red."""
  import itertools

  monkeypatch.setattr(time, "time", itertools.count(0.0, 40.0).__next__)  # 40 s a call
  with caplog.at_level("INFO"):
    assert list(progress.track(range(5), 5, "counting", unit="image")) == [0, 1, 2, 3, 4]
  assert any("counting: 1/5 image(s)" in r.getMessage() for r in caplog.records)


def test_on_a_terminal_a_bar_counts_the_steps_with_the_loss_and_evaluations_print_above(
    monkeypatch, capsys):
  """A run in a terminal: tqdm's bar from the resumed step, its loss and rate beside it, each
  evaluation a line of its own; `track` a bar of its own. Mutations: the bar not updated, or
  started at 0; the postfix or the evaluation's line dropped -> red."""
  import sys

  monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
  with progress.Progress(start=2, total=5, batch_size=8) as p:
    p.update(3)
    p.update(4)
    p.log(4, {"epoch": 0.5, "loss": 1.2345, "top1_error": 0.5, "lr": 0.01, "grad_norm": 1.0,
              "img_per_s": 123.4, "input_wait_fraction": 0.0})
    p.log_eval(4, 0.5, {"eval": {"top1_error": 0.25, "top5_error": 0.05, "loss": 0.9}}, 12.34)
  out = capsys.readouterr()
  assert "4/5" in out.err and "loss 1.234 123 img/s" in out.err
  assert out.out.startswith("validation at step 4 (epoch 0.50, 12.3 s): centre crop: top-1 error "
                            "25.00 % (accuracy 75.00 %)")
  assert list(progress.track(range(3), 3, "reading", unit="image")) == [0, 1, 2]
  # erased when done; the bar's width is tqdm's to choose (10 wide in 4.70, 40 in 4.66)
  assert re.search(r"reading:   0%\| +\| 0/3 \[", capsys.readouterr().err)
