"""The one validation pass of a loaded config: each section by the validator of the module that
owns it, the run's own fields here. `cli.run` calls it for every tool given a `--config`,
`train.train_and_evaluate` for callers from Python (the command line's run is not validated
twice: `main` says its config was)."""

from __future__ import annotations

import math

import ml_collections

from alexnet_jax import (checkpoint, configuration, finetune, model_spec, optim, profiling,
                         schedule, sharding, step_metrics)
from alexnet_jax.configs import paper
from alexnet_jax.data import pipeline
from alexnet_jax.errors import UserError


def validate(config: ml_collections.ConfigDict) -> None:
  """The one validation pass of a loaded config: each section by its owner's validator, the
  run's own fields here. Raises `UserError` (one line) for the first value that cannot work."""
  _validate_fields(config)
  model_spec.AlexNetSpec.from_config(config.model)
  sharding.validate(config.mesh)
  pipeline.validate(config.data)
  optim.validate(config.optimizer)
  schedule.validate(config.schedule, config.optimizer)
  finetune.validate(config.init_from)
  checkpoint.validate(config.checkpoint)
  step_metrics.validate(config.divergence)
  profiling.validate(config.profile)
  _validate_run(config)


def _validate_fields(config) -> None:
  """Every field the defaults have (`configs/paper.py`): a config written from scratch rather
  than from them lacks some."""
  fields = configuration.flat(config)
  missing = [path for path in configuration.flat(paper.get_config()) if path not in fields]
  if missing:
    shown = ", ".join(missing[:6]) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
    raise UserError(f"the config lacks the fields {shown}: a config starts from "
                    "configs/paper.py's get_config() (or another shipped config) and changes "
                    "fields of it")


def _validate_run(config) -> None:
  """The run's own fields: seed, length, evaluation, logging and stall-check cadence."""
  if not isinstance(config.seed, int) or config.seed < 0:
    raise UserError(f"seed must be an integer >= 0, got {config.seed}")
  for name in ("num_epochs", "eval_every_epochs"):
    if not (math.isfinite(config[name]) and config[name] > 0):
      raise UserError(f"{name} must be a positive number, got {config[name]}")
  if not isinstance(config.num_steps, int) or config.num_steps < 0:
    raise UserError(f"num_steps must be an integer >= 0 (0: num_epochs decides), got "
                    f"{config.num_steps}")
  for name in ("log_every_steps", "stats_every_steps"):
    if config[name] < 1:
      raise UserError(f"{name} must be >= 1, got {config[name]}")
  if config.stall.check_steps < 0 or not (math.isfinite(config.stall.band)
                                          and config.stall.band >= 0):
    raise UserError(f"stall.check_steps and stall.band must be >= 0, got "
                    f"{config.stall.check_steps} and {config.stall.band}")
