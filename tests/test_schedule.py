"""The plateau ÷10 controller (§5) on scripted validation errors."""

import math

import ml_collections
import pytest

from alexnet_jax.errors import UserError
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
  outcomes = [s.after_eval(e) for e in errors]
  assert [o.dropped for o in outcomes] == [False] * 3 + [True] + [False] * 3 + [True] + [
      False] * 2 + [True] + [False] * 3
  assert [o.stop for o in outcomes] == [False] * 13 + [True]
  # A new best is an improvement by more than min_delta: the one definition best/ uses too.
  assert [o.improved for o in outcomes] == [True, True, False, False, True, True, False, False,
                                            True, False, False, True, False, False]
  assert math.isclose(s.learning_rate, 1e-5)
  assert s.state.drops == 3 and s.state.best_error == 0.4


def test_at_most_max_drops_and_no_stop_unless_asked():
  s = LearningRateSchedule(_config(max_drops=1, stop_after_last_drop=False, patience=1), 0.1)
  outcomes = [s.after_eval(e) for e in (0.5, 0.5, 0.5, 0.5)]
  assert [o.dropped for o in outcomes] == [False, True, False, False]
  assert not any(o.stop for o in outcomes)
  assert math.isclose(s.learning_rate, 0.01)


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
  old = {"learning_rate": 0.001, "best_error": 0.5, "bad_evals": 1, "drops": 1, "stop": False}
  fresh.load_state_dict(old)  # a checkpoint of an earlier version
  assert fresh.learning_rate == 0.001 and fresh.state.drops == 1


def test_fixed_step_drops_and_constant():
  s = LearningRateSchedule(_config(kind="steps"), 1.0)

  def at(schedule, epoch):
    schedule.advance(epoch)
    return schedule.learning_rate

  assert [at(s, e) for e in (0.0, 1.99, 2.0, 3.0, 4.5)] == pytest.approx(
      [1.0, 1.0, 0.1, 0.1, 0.01])
  assert not s.after_eval(0.9).dropped and not s.after_eval(0.9).dropped  # evaluations do not drop
  c = LearningRateSchedule(_config(kind="constant"), 0.3)
  assert not any(c.after_eval(0.5).dropped for _ in range(5)) and at(c, 10.0) == 0.3


def test_the_schedule_is_the_one_owner_of_the_learning_rate():
  from alexnet_jax import optim

  import jax.numpy as jnp

  s = LearningRateSchedule(_config(kind="steps"), 1.0)
  tx = optim.paper_sgd(0.5)
  opt_state = tx.init({"w": jnp.zeros(3)})
  opt_state = s.apply(opt_state)
  assert optim.get_learning_rate(opt_state) == 1.0  # the schedule's, not the optimizer's
  assert s.apply(opt_state) is opt_state  # unchanged: nothing is copied
  s.advance(2.0)
  opt_state = s.apply(opt_state)
  assert optim.get_learning_rate(opt_state) == pytest.approx(0.1)
  restored = tx.init({"w": jnp.zeros(3)})  # e.g. from a checkpoint: ε 0.5 inside
  s.forget_applied()
  assert optim.get_learning_rate(s.apply(restored)) == pytest.approx(0.1)


def test_invalid_schedule_is_a_one_line_error():
  with pytest.raises(UserError, match="schedule.kind"):
    LearningRateSchedule(_config(kind="cosine"), 0.01)
