"""Learning-rate schedules decided on the host (§5): ÷10 when validation error plateaus, and the
2012 code's recorded runs replayed.

"The heuristic which we followed was to divide the learning rate by 10 when the validation
error rate stopped improving with the current learning rate. The learning rate was initialized
at 0.01 and reduced three times prior to termination."

`plateau` does that after each validation pass; `steps` (drops at fixed epochs) and `constant`
are there for reproducible runs; `recorded` replays a run's log of per-layer weight and bias
rates (`events`: the 2012 code's run #145 in configs/paper_code.py). The schedule is the one
owner of ε: it gives every parameter its rate (`rates`: ε for kernels, ε ×
`optimizer.bias_lr_multiplier` for biases, or the recorded ones), which the training loop
passes to every step (`rates_on`); the checkpoints hold the schedule's state, not the rates.
It also decides what counts as an improvement of the validation error (`after_eval`), for the
plateaus and for `best/`. Its state is a small JSON-able dict saved with checkpoints; a recorded
schedule's follows from the step.
"""

from __future__ import annotations

import collections
import dataclasses
import math

from absl import logging

import jax
import jax.numpy as jnp

from alexnet_jax import events as events_lib
from alexnet_jax.errors import UserError

KINDS = ("plateau", "steps", "constant", "recorded")


def validate(schedule_config, optimizer_config=None) -> None:
  """One-line errors for a schedule that cannot run."""
  c = schedule_config
  if c.kind not in KINDS:
    raise UserError(f"schedule.kind must be one of {', '.join(KINDS)}, got {c.kind!r}")
  if not 0 < c.factor < 1:
    raise UserError(f"schedule.factor must be in (0, 1), got {c.factor}")
  if c.patience < 1 or c.max_drops < 0:
    raise UserError("schedule.patience must be >= 1 and schedule.max_drops >= 0")
  if not (math.isfinite(c.min_delta) and c.min_delta >= 0):
    raise UserError(f"schedule.min_delta must be a number >= 0, got {c.min_delta}")
  if any(isinstance(e, bool) or not isinstance(e, (int, float)) or not math.isfinite(e)
         or not e >= 0 for e in c.drop_epochs):
    raise UserError(f"schedule.drop_epochs must be numbers >= 0, got {tuple(c.drop_epochs)}")
  if c.kind == "recorded":
    events_lib.validate(c.events)
    if optimizer_config is not None and optimizer_config.bias_lr_multiplier != 1.0:
      raise UserError("schedule.kind=recorded gives the bias rates (epsB) in its events: "
                      "optimizer.bias_lr_multiplier must be 1")


@dataclasses.dataclass(frozen=True)
class Outcome:
  """What one validation error did: a new best (the lowest so far: `best/`), a drop of ε, a
  request to stop."""

  improved: bool = False
  dropped: bool = False
  stop: bool = False


@dataclasses.dataclass
class ScheduleState:
  learning_rate: float
  best_error: float = math.inf  # the lowest validation error so far
  plateau_error: float = math.inf  # the error at the last improvement by more than min_delta
  bad_evals: int = 0  # evaluations since then
  drops: int = 0  # recorded: the events that have taken effect


class LearningRateSchedule:
  """Holds every parameter's ε and decides its changes; see the module docstring. `layers`:
  the network's parameters ({layer: {'kernel', 'bias'}}, arrays or shapes); `num_train` and
  `batch_size` place the epochs on steps."""

  def __init__(self, schedule_config, optimizer_config, layers: dict, *, num_train: int,
               batch_size: int, frozen: tuple[str, ...] = ()):
    c = schedule_config
    validate(c, optimizer_config)
    self.kind, self.factor, self.patience = c.kind, float(c.factor), int(c.patience)
    self.min_delta, self.max_drops = float(c.min_delta), int(c.max_drops)
    self.stop_after_last_drop = bool(c.stop_after_last_drop)
    self.base = float(optimizer_config.learning_rate)
    self.bias_multiplier = float(optimizer_config.bias_lr_multiplier)
    self.params = {layer: tuple(kinds) for layer, kinds in layers.items()}
    self.frozen = frozenset(frozen)  # layers at ε 0 throughout (a fine-tune's copied backbone)
    self.num_train, self.batch_size = int(num_train), int(batch_size)
    self.drop_steps = sorted(math.ceil(e * self.num_train / self.batch_size)
                             for e in c.drop_epochs)
    self.events = events_lib.parse(c.events) if self.kind == "recorded" else []
    self.event_steps = [e.steps_done(self.num_train, self.batch_size) for e in self.events]
    for i in range(1, len(self.events)):
      if not self.event_steps[i] > self.event_steps[i - 1]:
        raise UserError(f"schedule.events: {self.events[i].line!r} takes effect at step "
                        f"{self.event_steps[i]}, not after {self.events[i - 1].line!r} (step "
                        f"{self.event_steps[i - 1]}): list the events in time order, one line "
                        "for each step")
    missing = sorted({layer for e in self.events for layer, _, _ in e.rates
                      if layer is not None and layer not in self.params})
    if missing:
      raise UserError(f"schedule.events set rates of {', '.join(missing)}, which this network "
                      f"does not have (its layers: {', '.join(self.params)})")
    self.state = ScheduleState(learning_rate=self.base)
    self._applied = None  # (rates, their device arrays) last given by `rates_on`
    if self.kind == "recorded":
      self._follow_events(0)

  # --- the rates ----------------------------------------------------------------------------

  def rates(self) -> dict[str, float]:
    """{'layer/kernel': ε, 'layer/bias': ε} for every parameter, now (0 for a frozen layer)."""
    if self.kind == "recorded":
      recorded = events_lib.rates_after(self.events, [i < self.state.drops
                                                      for i in range(len(self.events))],
                                        list(self.params))
      rates = {f"{layer}/{kind}": recorded[layer][kind] for layer, kinds in self.params.items()
               for kind in kinds}
    else:
      eps = self.state.learning_rate
      rates = {f"{layer}/{kind}": eps * (self.bias_multiplier if kind == "bias" else 1.0)
               for layer, kinds in self.params.items() for kind in kinds}
    return {k: 0.0 if k.split("/")[0] in self.frozen else v for k, v in rates.items()}

  @property
  def learning_rate(self) -> float:
    """The weights' ε of most layers (the largest of the most common): the one `lr` of the
    logs; `rates` has every parameter's."""
    if self.kind != "recorded":
      return self.state.learning_rate
    kernels = collections.Counter(v for k, v in self.rates().items() if k.endswith("/kernel"))
    top = max(kernels.values())
    return max(v for v, n in kernels.items() if n == top)

  def advance(self, steps_done: int) -> list[str]:
    """Moves the schedule to the step after `steps_done` steps: `steps` drops ε at its epochs,
    `recorded` takes the events due; returns the lines of the events that took effect."""
    if self.kind == "steps":
      drops = sum(steps_done >= s for s in self.drop_steps)
      if drops != self.state.drops:
        self.state.drops = drops
        self.state.learning_rate = self.base * self.factor ** drops
    if self.kind == "recorded":
      return self._follow_events(steps_done)
    return []

  def _follow_events(self, steps_done: int) -> list[str]:
    due = sum(steps_done >= s for s in self.event_steps)
    fired = [e.line for e in self.events[self.state.drops:due]]
    self.state.drops = due
    self.state.learning_rate = self.learning_rate
    return fired

  def rates_on(self, sharding) -> dict:
    """The rates as arrays on the devices (`sharding`: replicated), what the training step takes
    as its `rates`: the same arrays until a rate changes (nothing read back from the device, no
    recompilation)."""
    rates = self.rates()
    if self._applied is None or self._applied[0] != rates:
      self._applied = rates, jax.device_put(
          {k: jnp.asarray(v, jnp.float32) for k, v in rates.items()}, sharding)
    return self._applied[1]

  def rebase(self, base_learning_rate: float) -> None:
    """A new initial ε (a flag given on resume): ε becomes it times factor^drops so far, and
    later drops follow from it. A recorded schedule's rates are its events': refused."""
    if self.kind == "recorded":
      raise UserError("optimizer.learning_rate does not set a recorded schedule's rates (its "
                      "schedule.events do): drop the flag")
    self.base = float(base_learning_rate)
    self.state.learning_rate = self.base * self.factor ** self.state.drops

  # --- validation ---------------------------------------------------------------------------

  def after_eval(self, error: float) -> Outcome:
    """Feeds one validation top-1 error: a new best when it is the lowest so far; on
    `plateau`, ε ÷10 after `patience` evaluations none of which improved on the error of the
    last improvement by more than `min_delta` (and, after the last drop, a stop when
    `stop_after_last_drop`). `min_delta` is what tells a plateau from the evaluations' noise
    (docs/fidelity.md, "ε ÷10 on plateaus")."""
    s = self.state
    improved = error < s.best_error
    s.best_error = min(s.best_error, error)
    if error < s.plateau_error - self.min_delta:
      s.plateau_error, s.bad_evals = error, 0
      return Outcome(improved=improved)
    if math.isfinite(s.plateau_error):
      s.bad_evals += 1
    if self.kind != "plateau" or s.bad_evals < self.patience:
      return Outcome(improved=improved)
    s.bad_evals = 0
    if s.drops < self.max_drops:
      s.drops += 1
      s.learning_rate *= self.factor
      return Outcome(improved=improved, dropped=True)
    return Outcome(improved=improved, stop=self.stop_after_last_drop)

  # --- checkpoints --------------------------------------------------------------------------

  def state_dict(self) -> dict:
    d = dataclasses.asdict(self.state)
    for key in ("best_error", "plateau_error"):
      d[key] = None if math.isinf(d[key]) else d[key]
    return d

  def load_state_dict(self, d: dict) -> None:
    """The state saved by `state_dict` (keys that earlier versions saved and this one no longer
    keeps, such as 'stop', are ignored). A recorded schedule's rates follow from the step
    (`advance`). Earlier versions kept one error for both: it is the plateau's too."""
    fields = {f.name for f in dataclasses.fields(ScheduleState)}
    d = {k: v for k, v in d.items() if k in fields}
    d.setdefault("plateau_error", d.get("best_error"))
    for key in ("best_error", "plateau_error"):
      d[key] = math.inf if d.get(key) is None else d[key]
    self.state = ScheduleState(**d)


def log_events(lines: list[str], step: int, epoch: float, schedule: LearningRateSchedule) -> None:
  """One log line per recorded event that took effect before `step`."""
  for line in lines:
    logging.info("step %d (epoch %.2f): recorded event %r: weights' ε %g%s", step, epoch, line,
                 schedule.learning_rate,
                 "" if len(set(schedule.rates().values())) == 1 else
                 " (per layer: " + ", ".join(f"{k} {v:g}" for k, v in schedule.rates().items()
                                             if not k.endswith("/bias")) + ")")
