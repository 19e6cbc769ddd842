"""Recorded runs replayed: a run's log of learning-rate and input changes, as events.

The 2012 code's runs were steered by hand: its layer-params files end with notes such as
`epoch 25: set epsw to 0.001 from 0.01`, and the run the paper reports (#145) is such a log.
`schedule.kind = 'recorded'` replays one: `schedule.events` is a tuple of lines

    'epoch 0: epsW=0.01 epsB=0.02'        every layer's weight and bias ε
    'epoch 66: conv1.epsW=0.00001 pca_lighting=0'
    'step 2400: fc8.epsW=0.01'

`epoch E` takes effect once E epochs are done, `step S` once S steps are (0-based: the notes'
1-based `epoch 25` is `epoch 24` here); the first event must be at 0 and give every rate. A
setting without a layer applies to every layer not frozen (ε 0): the notes' `set epsw to 0.001
from 0.01` leaves a frozen conv1 frozen; a layer is named to change it. `pca_lighting` is the
std of the lighting coefficients α from then on (`data.pca_lighting` before). Pure Python:
the optimizer's schedule (`schedule.py`) and the input pipeline (`data/pipeline.py`) both read
it, and agree on when each event takes effect (`steps_done`).
"""

from __future__ import annotations

import dataclasses
import fractions
import math
import re

from alexnet_jax.errors import UserError

LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "conv6", "fc6", "fc7", "fc8")
RATES = {"epsW": "kernel", "epsB": "bias"}
INPUT = ("pca_lighting",)
_LINE = re.compile(r"^\s*(epoch|step)\s+([0-9.]+)\s*:\s*(.+?)\s*$")


@dataclasses.dataclass(frozen=True)
class Event:
  unit: str  # 'epoch' or 'step'
  at: fractions.Fraction
  rates: tuple[tuple[str | None, str, float], ...]  # (layer or None: every layer, kind, ε)
  inputs: tuple[tuple[str, float], ...]  # (setting, value)
  line: str

  def steps_done(self, num_train: int, batch_size: int) -> int:
    """The steps done when this event takes effect: it applies from the next step on."""
    if self.unit == "step":
      return int(self.at)
    return math.ceil(self.at * num_train / batch_size)


def parse(lines) -> list[Event]:
  """The events of `schedule.events`, in order; a line that does not parse is a `UserError`."""
  events = []
  for line in lines:
    match = _LINE.match(line) if isinstance(line, str) else None
    if not match:
      raise UserError(f"schedule.events: {line!r} is not 'epoch E: setting=value ...' or "
                      "'step S: ...'")
    unit, at, body = match.groups()
    try:
      at = fractions.Fraction(at)
    except ValueError:
      raise UserError(f"schedule.events: {line!r}: {at} is not a number") from None
    if unit == "step" and at.denominator != 1:
      raise UserError(f"schedule.events: {line!r}: a step is a whole number")
    rates, inputs = [], []
    for setting in body.split():
      name, eq, value = setting.partition("=")
      try:
        number = float(value)
      except ValueError:
        number = None
      if not eq or number is None or not (number >= 0 and math.isfinite(number)):
        raise UserError(f"schedule.events: {line!r}: {setting!r} is not name=number (a finite "
                        "number >= 0)")
      layer, _, kind = name.rpartition(".")
      if kind in RATES and (not layer or layer in LAYERS):
        rates.append((layer or None, RATES[kind], number))
      elif name in INPUT:
        inputs.append((name, number))
      else:
        raise UserError(f"schedule.events: {line!r}: unknown setting {name!r} (epsW, epsB, "
                        f"<layer>.epsW, <layer>.epsB with a layer of {', '.join(LAYERS)}; "
                        f"{', '.join(INPUT)})")
    events.append(Event(unit, at, tuple(rates), tuple(inputs), line.strip()))
  return events


def validate(lines) -> None:
  """A recorded schedule: events that parse, the first at 0 giving every layer's rates."""
  events = parse(lines)
  if not events or events[0].at != 0:
    raise UserError("schedule.events must start with an event at 0 ('epoch 0: epsW=... "
                    "epsB=...')")
  for before, after in zip(events, events[1:]):
    if before.unit == after.unit and not after.at > before.at:
      raise UserError(f"schedule.events: {after.line!r} is listed after {before.line!r}: list "
                      "the events in time order, one line for each time")
  given = {(layer, kind) for layer, kind, _ in events[0].rates}
  if not {(None, "kernel"), (None, "bias")} <= given:
    raise UserError(f"schedule.events: the first event ({events[0].line!r}) must give epsW= and "
                    "epsB= for every layer")


def rates_after(events: list[Event], done: list[bool], layers) -> dict[str, dict[str, float]]:
  """{layer: {'kernel': ε, 'bias': ε}} once the events marked `done` have taken effect."""
  rates = {layer: {} for layer in layers}
  for event, fired in zip(events, done):
    if not fired:
      continue
    for layer, kind, value in event.rates:
      for name in ([layer] if layer is not None else layers):
        if name not in rates:
          continue
        if layer is None and rates[name].get(kind) == 0.0:
          continue  # a frozen layer changes only by name
        rates[name][kind] = value
  return rates


def input_changes(lines, num_train: int, batch_size: int) -> dict[str, list[tuple[int, float]]]:
  """{setting: [(steps done, value), ...]} of the input settings the events change."""
  changes = {}
  for event in parse(lines):
    for name, value in event.inputs:
      changes.setdefault(name, []).append((event.steps_done(num_train, batch_size), value))
  return changes
