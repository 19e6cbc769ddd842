"""Learning-rate schedules decided on the host (§5): ÷10 when validation error plateaus.

"The heuristic which we followed was to divide the learning rate by 10 when the validation
error rate stopped improving with the current learning rate. The learning rate was initialized
at 0.01 and reduced three times prior to termination."

`plateau` does that after each validation pass; `steps` (drops at fixed epochs) and `constant`
are there for reproducible runs. The schedule is the one owner of ε: the training loop asks it
to `apply` ε to the optimizer state before each step. It also decides what counts as an
improvement of the validation error (`after_eval`), for the plateaus and for `best/`. Its state
is a small JSON-able dict saved with checkpoints.
"""

from __future__ import annotations

import dataclasses
import math

from alexnet_jax import optim
from alexnet_jax.errors import UserError

KINDS = ("plateau", "steps", "constant")


def validate(schedule_config) -> None:
  """One-line errors for a schedule that cannot run."""
  c = schedule_config
  if c.kind not in KINDS:
    raise UserError(f"schedule.kind must be one of {', '.join(KINDS)}, got {c.kind!r}")
  if not 0 < c.factor < 1:
    raise UserError(f"schedule.factor must be in (0, 1), got {c.factor}")
  if c.patience < 1 or c.max_drops < 0:
    raise UserError("schedule.patience must be >= 1 and schedule.max_drops >= 0")
  if not c.min_delta >= 0:
    raise UserError(f"schedule.min_delta must be >= 0, got {c.min_delta}")
  if any(not e >= 0 for e in c.drop_epochs):
    raise UserError(f"schedule.drop_epochs must be >= 0, got {tuple(c.drop_epochs)}")


@dataclasses.dataclass(frozen=True)
class Outcome:
  """What one validation error did: a new best (by more than `min_delta`), a drop of ε, a
  request to stop."""

  improved: bool = False
  dropped: bool = False
  stop: bool = False


@dataclasses.dataclass
class ScheduleState:
  learning_rate: float
  best_error: float = math.inf
  bad_evals: int = 0
  drops: int = 0


class LearningRateSchedule:
  """Holds the current ε and decides its changes; see the module docstring."""

  def __init__(self, schedule_config, base_learning_rate: float):
    c = schedule_config
    validate(c)
    self.kind, self.factor, self.patience = c.kind, float(c.factor), int(c.patience)
    self.min_delta, self.max_drops = float(c.min_delta), int(c.max_drops)
    self.stop_after_last_drop = bool(c.stop_after_last_drop)
    self.drop_epochs = tuple(sorted(float(e) for e in c.drop_epochs))
    self.base = float(base_learning_rate)
    self.state = ScheduleState(learning_rate=self.base)
    self._applied = None  # the ε last written into the optimizer state by `apply`

  @property
  def learning_rate(self) -> float:
    return self.state.learning_rate

  def advance(self, epoch: float) -> None:
    """Moves the schedule to the step that starts at `epoch`: `steps` drops ε at its epochs."""
    if self.kind == "steps":
      drops = sum(epoch >= e for e in self.drop_epochs)
      if drops != self.state.drops:
        self.state.drops = drops
        self.state.learning_rate = self.base * self.factor ** drops

  def apply(self, opt_state):
    """`opt_state` with the schedule's ε. The loop's optimizer state gets ε only from here: a
    new array when ε has changed since the last call (nothing read back from the device, no
    recompilation); a restored or new optimizer state needs `forget_applied` first."""
    if self._applied == self.learning_rate:
      return opt_state
    self._applied = self.learning_rate
    return optim.set_learning_rate(opt_state, self.learning_rate)

  def rebase(self, base_learning_rate: float) -> None:
    """A new initial ε (a flag given on resume): ε becomes it times factor^drops so far, and
    later drops follow from it."""
    self.base = float(base_learning_rate)
    self.state.learning_rate = self.base * self.factor ** self.state.drops

  def forget_applied(self) -> None:
    """The next `apply` writes ε whatever was applied before (a fresh optimizer state)."""
    self._applied = None

  def after_eval(self, error: float) -> Outcome:
    """Feeds one validation top-1 error: a new best when it is lower than the best so far by
    more than `min_delta`; on `plateau`, ε ÷10 after `patience` evaluations without one (and,
    after the last drop, a stop when `stop_after_last_drop`)."""
    s = self.state
    if error < s.best_error - self.min_delta:
      s.best_error, s.bad_evals = error, 0
      return Outcome(improved=True)
    if math.isfinite(s.best_error):
      s.bad_evals += 1
    if self.kind != "plateau" or s.bad_evals < self.patience:
      return Outcome()
    s.bad_evals = 0
    if s.drops < self.max_drops:
      s.drops += 1
      s.learning_rate *= self.factor
      return Outcome(dropped=True)
    return Outcome(stop=self.stop_after_last_drop)

  def state_dict(self) -> dict:
    d = dataclasses.asdict(self.state)
    d["best_error"] = None if math.isinf(d["best_error"]) else d["best_error"]
    return d

  def load_state_dict(self, d: dict) -> None:
    """The state saved by `state_dict` (keys that earlier versions saved and this one no longer
    keeps, such as 'stop', are ignored)."""
    fields = {f.name for f in dataclasses.fields(ScheduleState)}
    d = {k: v for k, v in d.items() if k in fields}
    d["best_error"] = math.inf if d.get("best_error") is None else d["best_error"]
    self.state = ScheduleState(**d)
    self.forget_applied()
