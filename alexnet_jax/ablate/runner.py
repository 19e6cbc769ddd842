"""What every study shares: a run of one (variant, seed) trained unless finished, the study's
progress, its curves, tables and figures."""

from __future__ import annotations

import contextlib
import functools
import json
import time
from typing import Sequence

import ml_collections
from absl import logging

from alexnet_jax import configuration, figures, train
from alexnet_jax import workdir as workdir_lib
from alexnet_jax.data import identity as identity_lib
from alexnet_jax.data import sources
from alexnet_jax.data.identity import Identity
from alexnet_jax.errors import UserError


def load_config(path: str, variant: str, overrides: Sequence[str]):
  """`--config=path:variant --config.<override>...`: `configuration.load`, the command line's
  loader (overrides 'a.b=value', later ones win)."""
  return configuration.load(f"{path}:{variant}" if variant else path, overrides)


class Runs:
  """A study's progress: before each run, its place among the study's runs and, once one has
  trained, the time left at the pace so far."""

  def __init__(self, total: int):
    self.total, self.index, self.trained, self.seconds = total, 0, 0, 0.0

  def begin(self, label: str, workdir: str, finished: bool) -> None:
    self.index += 1
    left = self.total - self.index + 1
    eta = (f"; about {self.seconds / self.trained * left / 60:.1f} min left"
           if self.trained and not finished else "")
    logging.info("study run %d of %d: %s in %s%s%s", self.index, self.total, label, workdir,
                 " (finished earlier: its result is read)" if finished else "", eta)

  def trained_for(self, seconds: float) -> None:
    self.trained += 1
    self.seconds += seconds


def run_one(config_path: str, variant: str, seed: int, workdir: str,
            overrides: Sequence[str], runs: Runs) -> dict:
  """The final evaluation of one (variant, seed), trained unless already finished. A run's
  `result.json` is written only when it reached its end (a run stopped by SIGTERM/SIGINT stops
  the study, which the same command continues), with the identity of its data: a finished run
  of other data than the study reads now is refused."""
  config = load_config(config_path, variant, overrides)
  config.seed = seed
  run = workdir_lib.RunDir(workdir)
  saved = _read_result(run.read_result())
  runs.begin(f"{variant or 'baseline'} seed {seed}", workdir, finished=saved is not None)
  if saved is not None:
    if saved.get("data"):
      differ = identity_lib.same_data(Identity.from_dict(saved["data"]), _identity(config),
                                      "study")
      if differ:
        raise UserError(f"{workdir} was trained on other data than this study reads "
                        f"({'; '.join(differ)}): use a new --workdir for the study")
    return saved["evaluation"]
  start = time.time()
  result = train.train_and_evaluate(config, workdir,
                                    overridden=[o.split("=", 1)[0] for o in overrides])
  runs.trained_for(time.time() - start)
  if not result.complete or not result.evaluation:
    raise UserError(f"the study stopped: the run in {workdir} was interrupted at step "
                    f"{result.step}; run the same command to continue it")
  run.write_result({"evaluation": result.evaluation, "step": result.step, "data": result.data})
  return result.evaluation


def _read_result(saved) -> dict | None:
  """A finished run's result ({'evaluation', 'step', 'data'}) from its `result.json`; an
  earlier version's (the evaluation alone) without its data; None when there is none or it
  holds no evaluation (an interrupted run of an earlier version wrote one: it is run again)."""
  if isinstance(saved, dict) and "evaluation" in saved and saved["evaluation"]:
    return saved
  if isinstance(saved, dict) and "eval" in saved:
    return {"evaluation": saved}
  return None


@functools.lru_cache(maxsize=None)
def _identity_of(data_json: str, channels: int, num_classes: int) -> Identity:
  data = ml_collections.ConfigDict(json.loads(data_json))
  return sources.load(data, channels=channels, num_classes=num_classes).identity


def _identity(config) -> Identity:
  """The identity of the data `config` reads (once per data section in a study)."""
  return _identity_of(json.dumps(config.data.to_dict(), sort_keys=True),
                      int(config.model.in_channels), int(config.model.num_classes))


def write_lines(path: str, lines: list[str]) -> None:
  with workdir_lib.output_file(path) as f:
    f.write("\n".join(lines) + "\n")


@contextlib.contextmanager
def figure(path: str, figsize: tuple[float, float] = (6, 4)):
  """Yields the axes of a new figure, saved as a PNG at `path` when the block ends."""
  with figures.figure(path, figsize=figsize) as (_, ax):
    yield ax


def with_spread(mean: float, std: float, seeds: int) -> str:
  """'m ± s' over seeds; one seed has no spread to show."""
  return f"{mean:.2f} ± {std:.2f}" if seeds > 1 else f"{mean:.2f}"


def train_curve(run_dir: str, key: str) -> list[tuple[int, float]]:
  """(step, value) of the train loop's log intervals in `run_dir`, by step (a run resumed from a
  checkpoint logs the steps after it again: the last record of a step counts)."""
  from alexnet_jax import metrics

  by_step = {r["step"]: r[key]
             for r in metrics.run_rows(run_dir) if r["split"] == "train" and key in r}
  return sorted(by_step.items())
