"""Recorded runs' events (`events.py`): parsed, checked, and when each takes effect."""

import fractions

import pytest

from alexnet_jax import events
from alexnet_jax.errors import UserError

START = "epoch 0: epsW=0.01 epsB=0.02"


def test_an_event_takes_effect_after_its_epochs_or_steps():
  """Mutation: `floor` in place of `ceil` in `steps_done` -> red (half an epoch of 33 images
  in batches of 10 is done after step 2: 16.5 images are not done after 1)."""
  first, half, step = events.parse([START, "epoch 0.5: epsW=0.001", "step 7: fc8.epsW=0.1"])
  assert first.steps_done(100, 10) == 0
  assert half.at == fractions.Fraction(1, 2) and half.steps_done(33, 10) == 2
  assert step.steps_done(33, 10) == 7 and step.rates == (("fc8", "kernel", 0.1),)


def test_a_frozen_layer_changes_only_by_name():
  """Mutation: the frozen-layer guard in `rates_after` dropped -> conv1 unfrozen (red)."""
  parsed = events.parse([START, "epoch 1: conv1.epsW=0", "epoch 2: epsW=0.001",
                         "epoch 3: conv1.epsW=0.5"])
  layers = ("conv1", "fc8")
  after = lambda n: events.rates_after(parsed, [i < n for i in range(4)], layers)
  assert after(3) == {"conv1": {"kernel": 0.0, "bias": 0.02},
                      "fc8": {"kernel": 0.001, "bias": 0.02}}
  assert after(4)["conv1"]["kernel"] == 0.5


@pytest.mark.parametrize("lines,message", [
    (["epoch 1: epsW=0.01 epsB=0.02"], "must start with an event at 0"),
    (["epoch 0: epsW=0.01"], "must give epsW= and epsB= for every layer"),
    ([START, "epoch 2: epsW=0.1", "epoch 1: epsW=0.2"], "is listed after 'epoch 2"),
    ([START, "step 1.5: epsW=0.1"], "a step is a whole number"),
    ([START, "epoch 1..2: epsW=0.1"], "'epoch 1..2: epsW=0.1': 1..2 is not a number"),
    ([START, "epoch 1: conv9.epsW=0.1"], "unknown setting 'conv9.epsW'"),
    ([START, "epoch 1: epsW=-1"], "is not name=number"),
    ([START, "epoch 1: epsW=abc"], "'epsW=abc' is not name=number"),
    ([START, "epoch 1: epsW=inf"], "'epsW=inf' is not name=number .a finite number"),
    ([START, "at 3: epsW=1"], "is not 'epoch E: setting=value"),
    ([START, 3], "3 is not 'epoch E: setting=value"),  # a number from the command line
])
def test_a_schedule_that_cannot_be_replayed_is_one_line(lines, message):
  """Mutations: the time-order check dropped -> the third case red; `epsW=inf` accepted (it
  was: the run diverged at that event) -> red."""
  with pytest.raises(UserError, match=message):
    events.validate(lines)


def test_input_changes_are_placed_on_steps():
  assert events.input_changes([START, "epoch 2: pca_lighting=0"], 40, 10) == {
      "pca_lighting": [(8, 0.0)]}
