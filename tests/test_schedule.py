"""The plateau ÷10 controller (§5) on scripted validation errors."""

import math

import ml_collections
import pytest

from alexnet_jax.cli import UserError
from alexnet_jax.schedule import LearningRateSchedule


def _config(**kw):
  base = dict(kind="plateau", factor=0.1, patience=2, min_delta=0.01, max_drops=3,
              stop_after_last_drop=True, drop_epochs=(2.0, 4.0))
  base.update(kw)
  return ml_collections.ConfigDict(base)


def test_plateau_divides_by_ten_after_patience_evaluations_without_improvement():
  s = LearningRateSchedule(_config(), 0.01)
  errors = [0.9, 0.8, 0.795, 0.79,  # 0.795 and 0.79 improve by < min_delta: drop
            0.7, 0.6, 0.6, 0.6,      # drop 2
            0.5, 0.55, 0.5,          # drop 3
            0.4, 0.45, 0.41]         # after the last drop: stop
  events = [s.after_eval(e) for e in errors]
  assert events == [None, None, None, "drop", None, None, None, "drop", None, None, "drop",
                    None, None, "stop"]
  assert math.isclose(s.learning_rate, 1e-5)
  assert s.state.drops == 3 and s.state.stop and s.state.best_error == 0.4


def test_at_most_max_drops_and_no_stop_unless_asked():
  s = LearningRateSchedule(_config(max_drops=1, stop_after_last_drop=False, patience=1), 0.1)
  events = [s.after_eval(e) for e in (0.5, 0.5, 0.5, 0.5)]
  assert events == [None, "drop", None, None]
  assert math.isclose(s.learning_rate, 0.01) and not s.state.stop


def test_state_round_trips_through_json_dict():
  s = LearningRateSchedule(_config(), 0.01)
  for e in (0.9, 0.9, 0.9):
    s.after_eval(e)
  t = LearningRateSchedule(_config(), 0.01)
  t.load_state_dict(s.state_dict())
  assert t.state == s.state
  fresh = LearningRateSchedule(_config(), 0.01)
  fresh.load_state_dict(LearningRateSchedule(_config(), 0.01).state_dict())
  assert math.isinf(fresh.state.best_error)


def test_fixed_step_drops_and_constant():
  s = LearningRateSchedule(_config(kind="steps"), 1.0)
  assert [s.at_epoch(e) for e in (0.0, 1.99, 2.0, 3.0, 4.5)] == pytest.approx(
      [1.0, 1.0, 0.1, 0.1, 0.01])
  assert s.after_eval(0.9) is None and s.after_eval(0.9) is None  # evaluations do not drop
  c = LearningRateSchedule(_config(kind="constant"), 0.3)
  assert [c.after_eval(0.5) for _ in range(5)] == [None] * 5 and c.at_epoch(10.0) == 0.3


def test_invalid_schedule_is_a_one_line_error():
  with pytest.raises(UserError, match="schedule.kind"):
    LearningRateSchedule(_config(kind="cosine"), 0.01)
