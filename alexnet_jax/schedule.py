"""Learning-rate schedules decided on the host (§5): ÷10 when validation error plateaus.

"The heuristic which we followed was to divide the learning rate by 10 when the validation
error rate stopped improving with the current learning rate. The learning rate was initialized
at 0.01 and reduced three times prior to termination."

`plateau` does that after each validation pass; `steps` (drops at fixed epochs) and `constant`
are there for reproducible runs. The state is a small JSON-able dict saved with checkpoints.
"""

from __future__ import annotations

import dataclasses
import math

from alexnet_jax.cli import UserError

KINDS = ("plateau", "steps", "constant")


@dataclasses.dataclass
class ScheduleState:
  learning_rate: float
  best_error: float = math.inf
  bad_evals: int = 0
  drops: int = 0
  stop: bool = False


class LearningRateSchedule:
  """Holds the current ε and decides its changes; see the module docstring."""

  def __init__(self, schedule_config, base_learning_rate: float):
    c = schedule_config
    if c.kind not in KINDS:
      raise UserError(f"schedule.kind must be one of {', '.join(KINDS)}, got {c.kind!r}")
    if not 0 < c.factor < 1:
      raise UserError(f"schedule.factor must be in (0, 1), got {c.factor}")
    if c.patience < 1 or c.max_drops < 0:
      raise UserError("schedule.patience must be >= 1 and schedule.max_drops >= 0")
    self.kind, self.factor, self.patience = c.kind, float(c.factor), int(c.patience)
    self.min_delta, self.max_drops = float(c.min_delta), int(c.max_drops)
    self.stop_after_last_drop = bool(c.stop_after_last_drop)
    self.drop_epochs = tuple(sorted(float(e) for e in c.drop_epochs))
    self.base = float(base_learning_rate)
    self.state = ScheduleState(learning_rate=self.base)

  @property
  def learning_rate(self) -> float:
    return self.state.learning_rate

  def at_epoch(self, epoch: float) -> float:
    """ε for the step starting at `epoch` (only `steps` depends on it)."""
    if self.kind == "steps":
      drops = sum(epoch >= e for e in self.drop_epochs)
      if drops != self.state.drops:
        self.state.drops = drops
        self.state.learning_rate = self.base * self.factor ** drops
    return self.state.learning_rate

  def after_eval(self, error: float) -> str | None:
    """Feeds one validation top-1 error; returns 'drop' or 'stop' when that happens."""
    s = self.state
    if error < s.best_error - self.min_delta:
      s.best_error, s.bad_evals = error, 0
      return None
    if math.isfinite(s.best_error):
      s.bad_evals += 1
    if self.kind != "plateau" or s.bad_evals < self.patience:
      return None
    s.bad_evals = 0
    if s.drops < self.max_drops:
      s.drops += 1
      s.learning_rate *= self.factor
      return "drop"
    if self.stop_after_last_drop:
      s.stop = True
      return "stop"
    return None

  def state_dict(self) -> dict:
    d = dataclasses.asdict(self.state)
    d["best_error"] = None if math.isinf(d["best_error"]) else d["best_error"]
    return d

  def load_state_dict(self, d: dict) -> None:
    d = dict(d)
    d["best_error"] = math.inf if d.get("best_error") is None else d["best_error"]
    self.state = ScheduleState(**d)
