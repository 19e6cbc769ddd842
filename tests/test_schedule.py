"""The ε schedules (§5's plateau ÷10 on scripted validation errors, fixed drops, the 2012
code's recorded runs) and the rates they give every parameter."""

import math
import os

import ml_collections
import numpy as np
import pytest

from alexnet_jax import events
from alexnet_jax.errors import UserError
from alexnet_jax.schedule import LearningRateSchedule

LAYERS = {name: ("kernel", "bias") for name in ("conv1", "conv2", "fc8")}


def _config(**kw):
  base = dict(kind="plateau", factor=0.1, patience=2, min_delta=0.01, max_drops=3,
              stop_after_last_drop=True, drop_epochs=(2.0, 4.0), events=())
  base.update(kw)
  return ml_collections.ConfigDict(base)


def _schedule(lr=0.01, bias=1.0, num_train=40, batch_size=10, **kw):
  optimizer = ml_collections.ConfigDict(dict(learning_rate=lr, bias_lr_multiplier=bias))
  return LearningRateSchedule(_config(**kw), optimizer, LAYERS, num_train=num_train,
                              batch_size=batch_size)


def test_plateau_divides_by_ten_after_patience_evaluations_without_improvement():
  s = _schedule()
  errors = [0.9, 0.8, 0.795, 0.79,  # 0.795 and 0.79 improve by < min_delta: drop
            0.7, 0.6, 0.6, 0.6,      # drop 2
            0.5, 0.55, 0.5,          # drop 3
            0.4, 0.45, 0.41]         # after the last drop: stop
  outcomes = [s.after_eval(e) for e in errors]
  assert [o.dropped for o in outcomes] == [False] * 3 + [True] + [False] * 3 + [True] + [
      False] * 2 + [True] + [False] * 3
  assert [o.stop for o in outcomes] == [False] * 13 + [True]
  # A new best (best/) is the lowest error so far; min_delta is the plateau's alone.
  assert [o.improved for o in outcomes] == [True, True, True, True, True, True, False, False,
                                            True, False, False, True, False, False]
  assert math.isclose(s.learning_rate, 1e-5)
  assert s.state.drops == 3 and s.state.best_error == 0.4


def test_at_most_max_drops_and_no_stop_unless_asked():
  s = _schedule(lr=0.1, max_drops=1, stop_after_last_drop=False, patience=1)
  outcomes = [s.after_eval(e) for e in (0.5, 0.5, 0.5, 0.5)]
  assert [o.dropped for o in outcomes] == [False, True, False, False]
  assert not any(o.stop for o in outcomes)
  assert math.isclose(s.learning_rate, 0.01)


def test_after_a_drop_the_next_waits_patience_evaluations_again():
  """Mutation: the count of evaluations without improvement kept across a drop -> red (every
  evaluation after the first drop dropped ε again)."""
  s = _schedule(patience=2, max_drops=3, stop_after_last_drop=False)
  outcomes = [s.after_eval(0.5) for _ in range(8)]
  assert [o.dropped for o in outcomes] == [False, False, True, False, True, False, True, False]
  assert math.isclose(s.learning_rate, 1e-5)


def test_a_new_base_rate_keeps_the_drops_already_taken():
  """`optimizer.learning_rate` given on resume after a drop: the new base, divided as often as
  the old one was. Mutation: the drops divided out instead of kept -> red."""
  s = _schedule(lr=0.01, patience=1)
  assert [s.after_eval(0.5).dropped for _ in range(2)] == [False, True]
  s.rebase(0.02)
  assert math.isclose(s.learning_rate, 0.002) and s.state.drops == 1


def test_state_round_trips_through_json_dict():
  s = _schedule()
  for e in (0.9, 0.9, 0.9):
    s.after_eval(e)
  t = _schedule()
  t.load_state_dict(s.state_dict())
  assert t.state == s.state
  fresh = _schedule()
  fresh.load_state_dict(_schedule().state_dict())
  assert math.isinf(fresh.state.best_error)
  old = {"learning_rate": 0.001, "best_error": 0.5, "bad_evals": 1, "drops": 1, "stop": False}
  fresh.load_state_dict(old)  # a checkpoint of an earlier version
  assert fresh.learning_rate == 0.001 and fresh.state.drops == 1


def test_fixed_step_drops_and_constant_give_every_parameter_its_rate():
  s = _schedule(lr=1.0, bias=2.0, kind="steps")  # 4 steps an epoch: drops after 8 and 16

  def at(schedule, steps_done):
    schedule.advance(steps_done)
    return schedule.rates()

  assert [at(s, d)["conv1/kernel"] for d in (0, 7, 8, 12, 17)] == pytest.approx(
      [1.0, 1.0, 0.1, 0.1, 0.01])
  assert s.rates()["fc8/bias"] == pytest.approx(0.02)  # × optimizer.bias_lr_multiplier
  assert not s.after_eval(0.9).dropped and not s.after_eval(0.9).dropped  # evaluations do not drop
  c = _schedule(lr=0.3, kind="constant")
  assert not any(c.after_eval(0.5).dropped for _ in range(5))
  assert set(at(c, 100).values()) == {0.3}


def test_the_device_rates_change_only_when_a_rate_does():
  import jax

  s = _schedule(lr=1.0, kind="steps")
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  first = s.rates_on(device)
  assert s.rates_on(device) is first  # unchanged: nothing is copied to the device again
  s.advance(8)
  second = s.rates_on(device)
  assert second is not first and float(second["conv2/kernel"]) == pytest.approx(0.1)


RECORDED = ("epoch 0: epsW=0.01 epsB=0.02", "step 3: fc8.epsW=0.05",
            "epoch 1.5: conv1.epsW=0 conv1.epsB=0 pca_lighting=0", "epoch 2: epsW=0.001")


def test_a_recorded_schedule_replays_its_events_at_their_steps():
  s = _schedule(kind="recorded", events=RECORDED)  # 4 steps an epoch
  assert s.rates() == {"conv1/kernel": 0.01, "conv1/bias": 0.02, "conv2/kernel": 0.01,
                       "conv2/bias": 0.02, "fc8/kernel": 0.01, "fc8/bias": 0.02}
  assert s.advance(2) == [] and s.advance(3) == ["step 3: fc8.epsW=0.05"]
  assert s.rates()["fc8/kernel"] == 0.05 and s.rates()["conv2/kernel"] == 0.01
  assert s.learning_rate == 0.01  # the logs' one `lr`: the kernels' most common rate
  assert s.advance(6) == ["epoch 1.5: conv1.epsW=0 conv1.epsB=0 pca_lighting=0"]
  assert s.learning_rate == 0.05  # 0, 0.01, 0.05 once each: the largest
  s.advance(8)
  rates = s.rates()
  # "epsW=0.001" reaches every layer that is not frozen: conv1 stays 0 (the 2012 notes'
  # "set epsw to 0.00001 from 0.0001" leaves the frozen conv1 alone); epsB is untouched.
  assert rates["conv1/kernel"] == 0.0 and rates["conv1/bias"] == 0.0
  assert rates["conv2/kernel"] == rates["fc8/kernel"] == 0.001 and rates["fc8/bias"] == 0.02
  assert s.learning_rate == 0.001
  again = _schedule(kind="recorded", events=RECORDED)  # a resume: the step decides
  again.load_state_dict(s.state_dict())
  again.advance(8)
  assert again.rates() == rates
  assert events.input_changes(RECORDED, 40, 10) == {"pca_lighting": [(6, 0.0)]}


def test_an_event_at_step_1_takes_effect_after_the_first_step_not_before_it():
  s = _schedule(kind="recorded", events=("epoch 0: epsW=0.01 epsB=0.02", "step 1: epsW=0.5"))
  assert s.rates()["conv2/kernel"] == 0.01
  assert s.advance(0) == [] and s.advance(1) == ["step 1: epsW=0.5"]
  assert s.rates()["conv2/kernel"] == 0.5


@pytest.mark.parametrize("kw,message", [
    (dict(kind="cosine"), "schedule.kind"),
    (dict(drop_epochs=(30.0, "60")), r"drop_epochs must be numbers >= 0, got \(30.0, '60'\)"),
    (dict(drop_epochs=(None,)), r"drop_epochs must be numbers >= 0, got \(None,\)"),
    (dict(kind="recorded", events=()), "must start with an event at 0"),
    (dict(kind="recorded", events=("epoch 0: epsW=0.01",)), "must give epsW= and epsB="),
    (dict(kind="recorded", events=("epoch 0: epsw=0.01 epsB=0.02",)), "unknown setting 'epsw'"),
    (dict(kind="recorded", events=("epoch 0: epsW=0.01 epsB=0.02", "epoch 3: conv9.epsW=0")),
     "unknown setting 'conv9.epsW'"),
    (dict(kind="recorded", events=("at 0: epsW=0.01 epsB=0.02",)), "is not 'epoch E"),
    # Out of time order or twice at one time: they fired by list position ('epoch 2' at 1).
    (dict(kind="recorded", events=("epoch 0: epsW=0.01 epsB=0.02", "epoch 2: epsW=0.001",
                                   "epoch 1: epsW=0.0001")), "is listed after 'epoch 2"),
    (dict(kind="recorded", events=("epoch 0: epsW=0.01 epsB=0.02", "epoch 1: epsW=0.001",
                                   "epoch 1: conv1.epsW=0")), "is listed after 'epoch 1"),
    # Across units: epoch 1 of 40 images in batches of 10 is step 4.
    (dict(kind="recorded", events=("epoch 0: epsW=0.01 epsB=0.02", "epoch 1: epsW=0.001",
                                   "step 3: epsW=0.0001")), "takes effect at step 3, not after"),
    (dict(kind="recorded", events=("epoch 0: epsW=0.01 epsB=0.02", "step 0: epsW=0.001")),
     "'step 0: epsW=0.001' takes effect at step 0, not after 'epoch 0"),
    # A layer this network lacks (LAYERS: conv1, conv2, fc8) was ignored.
    (dict(kind="recorded", events=("epoch 0: epsW=0.01 epsB=0.02", "epoch 1: conv6.epsW=0")),
     "rates of conv6, which this network does not have"),
])
def test_an_invalid_schedule_is_a_one_line_error(kw, message):
  with pytest.raises(UserError, match=message):
    _schedule(**kw)
  with pytest.raises(UserError, match="bias_lr_multiplier must be 1"):
    _schedule(bias=2.0, kind="recorded", events=RECORDED)


def _run_145(epochs=90.0):
  """Run #145's recorded schedule on the tiny network, one step an epoch."""
  from alexnet_jax.configs import paper_code
  from conftest import small_config

  config = small_config(epochs=epochs)
  config.data.update(dict(synthetic_train_size=16, batch_size=16, lighting_shrink=True))
  config.optimizer.decay_on = "kernels"
  config.schedule.update(dict(kind="recorded", events=paper_code.RUN_145))
  config.update(dict(eval_every_epochs=45.0, log_every_steps=6, stats_every_steps=1000))
  config.eval.ten_crop_final = False
  config.checkpoint.update(dict(every_steps=72, keep=4))
  return config


@pytest.mark.slow
def test_run_145_replayed_end_to_end_on_the_tiny_network(tmp_path, caplog):
  """conv1 frozen after epoch 72, biases still moving at 0.02 after the last drop, the colour
  noise off after epoch 67, every event logged, and a kill between two events resumes bitwise."""
  from absl import logging as absl_logging

  from alexnet_jax import metrics, train
  from conftest import assert_same_params, build_input, saved_state, sigterm_at_step

  straight = str(tmp_path / "straight")
  with caplog.at_level("INFO"):
    absl_logging.use_python_logging()
    train.train_and_evaluate(_run_145(), straight)
  fired = [r.getMessage() for r in caplog.records if "recorded event" in r.getMessage()]
  assert len(fired) == 5 and "step 25 (epoch 24.00)" in fired[0] and "conv1.epsW=0 " in fired[3]
  at = lambda step: saved_state(straight, step)["params"]
  for key in ("kernel", "bias"):  # frozen: not a bit moves from step 72 on
    np.testing.assert_array_equal(at(72)["conv1"][key], at(90)["conv1"][key])
  moved = lambda layer, key: float(np.abs(at(90)[layer][key] - at(72)[layer][key]).max())
  # epsB 0.02 to the end: fc8's bias moves by ≈ 0.03 over these 18 steps; at a bias rate that
  # had followed the weights' down to 2e-5 it would move by ≈ 1e-4.
  assert moved("fc8", "bias") > 0.005 and moved("fc7", "bias") > 0.001
  assert moved("fc8", "bias") > 20 * moved("fc8", "kernel") > 0
  rows = {r["step"]: r for r in metrics.read_metrics(os.path.join(straight, "metrics.jsonl"))
          if r["split"] == "train"}
  assert rows[90]["lr/conv2/bias"] == 0.02 and rows[90]["lr/conv2/kernel"] == pytest.approx(1e-5)
  assert rows[90]["lr/conv1/kernel"] == 0.0 and rows[90]["lr"] == pytest.approx(1e-5)
  assert rows[24]["lr"] == 0.01 and rows[30]["lr"] == pytest.approx(0.001)
  batches = build_input(_run_145()).train  # the colour noise: on up to step 66, off from 67
  batches.set_state({"step": 64})
  lighting = [next(batches)["lighting"] for _ in range(4)]  # steps 65 to 68
  assert np.abs(lighting[1]).min() > 0 and not lighting[2].any() and not lighting[3].any()
  # A kill (SIGTERM) at step 60, between the events of epochs 50 and 66, then the same run.
  resumed = str(tmp_path / "resumed")
  with sigterm_at_step(60):
    assert not train.train_and_evaluate(_run_145(), resumed).complete
  train.train_and_evaluate(_run_145(), resumed)
  assert_same_params(resumed, straight, step=90)


@pytest.mark.slow
def test_a_plateau_run_resumed_after_a_drop_keeps_its_rate_and_count(tmp_path):
  """§5's rule across a kill: ε dropped at the evaluation of step 8 (no improvement by 0.5),
  a SIGTERM at step 10, the same command; the resumed run keeps ε/10 and, its one drop
  taken, stops at the evaluation of step 12 as the straight run does (of 16 steps), bitwise;
  `best/` keeps the lowest error's step. Mutations: the schedule's state not restored on
  resume (ε back to its base, the count lost); `best/` written at every evaluation; the stop
  not ending the run (reported as cut short) -> red."""
  from alexnet_jax import metrics, train
  from conftest import assert_same_params, sigterm_at_step, small_config

  def config():
    c = small_config(epochs=4.0)
    c.schedule.update(dict(kind="plateau", patience=1, min_delta=0.5, max_drops=1,
                           stop_after_last_drop=True))
    c.eval_every_epochs = 1.0
    return c

  straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
  result = train.train_and_evaluate(config(), straight)
  assert result.complete and result.step == 12
  with sigterm_at_step(10):
    assert not train.train_and_evaluate(config(), resumed).complete
  result = train.train_and_evaluate(config(), resumed)
  assert result.complete and result.step == 12
  lr = {r["step"]: r["lr"] for r in metrics.run_rows(resumed) if r["split"] == "train"}
  assert lr[8] == 0.01 and lr[10] == lr[12] == pytest.approx(0.001)  # logged before the eval
  assert_same_params(resumed, straight, step=12)
  for run in (straight, resumed):  # the first evaluation's error was never bettered
    assert os.listdir(os.path.join(run, "best")) == ["4"]


def test_the_paper_configs_plateau_rule_tells_a_plateau_from_the_evaluations_noise():
  """configs/paper.py's defaults on noisy synthetic validation curves (noise std 0.2 points, a
  50,000-image top-1 error's): 30 epochs of slow real progress (0.25 points an epoch) rarely
  drop ε; a flat curve drops it within a few evaluations. Mutation: the old defaults
  (patience 1, min_delta 0) -> red (they drop on most progressing curves)."""
  import numpy as np

  from conftest import load_config

  config = load_config("paper")
  rng = np.random.default_rng(0)

  def first_drop(errors):
    s = LearningRateSchedule(config.schedule, config.optimizer, LAYERS, num_train=40,
                             batch_size=10)
    return next((i for i, e in enumerate(errors) if s.after_eval(float(e)).dropped), None)

  epochs, noise = np.arange(30), lambda: rng.normal(0, 0.002, 30)
  progressing = [first_drop(0.5 - 0.0025 * epochs + noise()) for _ in range(200)]
  flat = [first_drop(0.4 + noise()) for _ in range(200)]
  assert sum(d is not None for d in progressing) <= 10  # at most 5 % of the curves
  assert np.percentile([30 if d is None else d for d in flat], 90) <= 8


@pytest.mark.slow
def test_the_loop_takes_each_event_after_its_step_and_logs_its_epoch(tmp_path, caplog):
  """4 steps an epoch, an event at epoch 1: steps 1-4 at the first ε, from step 5 on the
  second; its log line gives the epoch done (1.00), as the validation's does. Mutations: the
  schedule advanced to the step after (the event two steps early), either epoch multiplied by
  the steps per epoch -> red."""
  from absl import logging as absl_logging

  from alexnet_jax import metrics, train
  from conftest import small_config

  config = small_config(epochs=2.0)  # train rows at steps 2, 4, 6, 8
  config.optimizer.decay_on = "kernels"
  config.schedule.update(dict(kind="recorded", events=("epoch 0: epsW=0.01 epsB=0.01",
                                                       "epoch 1: epsW=0.001 epsB=0.001")))
  config.eval.ten_crop_final = False
  with caplog.at_level("INFO"):
    absl_logging.use_python_logging()
    train.train_and_evaluate(config, str(tmp_path))
  fired = [r.getMessage() for r in caplog.records if "recorded event" in r.getMessage()]
  assert len(fired) == 1 and fired[0].startswith("step 5 (epoch 1.00): recorded event"), fired
  assert any(r.getMessage().startswith("validation at step 8 (epoch 2.00, ")
             for r in caplog.records)
  rows = [r for r in metrics.read_metrics(str(tmp_path / "metrics.jsonl"))
          if r["split"] == "train"]
  assert [(r["step"], r["lr"]) for r in rows] == [
      (2, 0.01), (4, 0.01), (6, pytest.approx(0.001)), (8, pytest.approx(0.001))]
