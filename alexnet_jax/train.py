"""Training and evaluation: the one loop (paper §5: SGD with momentum 0.9, weight decay 5e-4,
batch 128, ε ÷10 on plateaus; §3.5: multinomial logistic regression; §4.1: ten-crop testing).

mesh → input → state and steps (`train_setup.setup_train`) → checkpoint (all four built by
`train_start.start`) → loop. The services it uses each live in a module of their own: the
checkpoints (`checkpoint`, their metadata `checkpoint_meta`), the ε schedule (`schedule`),
the metrics on their way to the host (`step_metrics`) and out (`metrics`), the progress lines
(`progress`), the device prefetcher that holds the input position (`prefetch`), the stop
request (`signals`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
from typing import Callable, Iterable

import jax
import ml_collections
from absl import logging

from alexnet_jax import checkpoint, checkpoint_meta, distributed, finetune, metrics, profiling
from alexnet_jax import train_start, validation
from alexnet_jax import evaluation as evaluation_lib
from alexnet_jax import workdir as workdir_lib
from alexnet_jax.data import spawning
from alexnet_jax.errors import UserError, out_of_memory
from alexnet_jax.progress import Progress
from alexnet_jax.run_summary import closing_summary
from alexnet_jax.schedule import log_events
from alexnet_jax.signals import StopRequest
from alexnet_jax.step_metrics import StepMetrics
from alexnet_jax.train_setup import setup_train


@dataclasses.dataclass(frozen=True)
class RunResult:
  """What `train_and_evaluate` did: the last evaluation ({'eval': ..., 'eval_10crop': ...};
  {} when there was none), the step reached, whether the run reached the config's end (not
  stopped by SIGTERM/SIGINT), the identity of the data it was trained on, and the time its
  loop took ({'loop_seconds', 'evaluation_seconds', 'checkpoint_seconds': the main thread's
  part of its saves, 'checkpoints': the saves, best/'s included}; {} when it ran none)."""

  evaluation: dict
  step: int
  complete: bool
  data: dict
  timing: dict = dataclasses.field(default_factory=dict)


# Steps dispatched ahead of the device at most. Unbounded, 2 processes x 4 CPU devices hung in
# XLA:CPU's collectives some 50 steps ahead; the device needs 2 or 3 to keep busy.
IN_FLIGHT_STEPS = 8


def itstime(step: int, every: int, total: int) -> bool:
  """Whether `step` is one of every `every` steps, or the last one."""
  return step == total or step % every == 0


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       setup: Callable = setup_train,
                       overridden: Iterable[str] | None = None,
                       validated: bool = False) -> RunResult:
  """Trains `config` in `workdir` (resuming from its checkpoints). The workdir is locked for
  the run (process 0 holds the lock of a multi-process run). `setup` builds the state and
  steps (`train_setup.setup_train`; the loop benchmark passes one with a trivial step).
  `overridden`: the config fields given on the command line, which fine-tuning keeps
  (`finetune.inherit`; None: none). `validated`: the caller has run `validation.validate`
  (the command line has)."""
  spawning.stop_if_spawning()
  if not validated:
    validation.validate(config)
  created = bool(workdir) and not os.path.lexists(os.path.abspath(workdir))
  workdir = workdir_lib.prepare(workdir)
  lock = workdir_lib.Lock(workdir) if jax.process_index() == 0 else contextlib.nullcontext()
  try:
    with lock:
      return _train_and_evaluate(config, workdir, setup, overridden)
  except UserError:
    if created and jax.process_count() == 1:
      workdir_lib.remove_unused(workdir)
    raise


def _train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, setup_fn,
                        overridden) -> RunResult:
  resuming = bool(checkpoint.saved_steps(workdir))
  if config.init_from.workdir:  # the source's network and input, or the run's own
    config = finetune.inherit(config, workdir if resuming else config.init_from.workdir,
                              overridden)
  with contextlib.ExitStack() as resources:
    return _loop(train_start.start(config, workdir, setup_fn, resuming, resources), resources)


def _loop(run: train_start.Run, resources: contextlib.ExitStack) -> RunResult:
  """Steps from the run's state to its end: logs, evaluations, ε drops, checkpoints, and the
  stop on a signal, divergence or input that cannot be read any more."""
  config, workdir, ckpts, input_, setup, schedule, batches = (
      run.config, run.workdir, run.ckpts, run.input_, run.setup, run.schedule, run.batches)
  mean, rng, state, saved, start_step = run.mean, run.rng, run.state, run.saved, run.start_step
  total_steps, eval_every, steps_per_epoch = run.total_steps, run.eval_every, run.steps_per_epoch
  batch_size = config.data.batch_size
  def result(evaluation: dict, step: int, stopped_by: str | None,
             during_evaluation: bool = False, timed: dict | None = None) -> RunResult:
    if jax.process_index() == 0:
      best = ckpts.best.all_steps()
      print(closing_summary(workdir, evaluation=evaluation, step=step,
                            total_steps=total_steps, stopped_by=stopped_by,
                            best_step=max(best) if best else None,
                            during_evaluation=during_evaluation, timed=timed),
            flush=True)
    return RunResult(evaluation, step, step >= total_steps and not during_evaluation,
                     input_.identity.to_dict(), timed or {})

  # A checkpoint saved when its step's evaluation failed (input, device memory): evaluated first.
  unevaluated = (bool(saved) and "evaluation" not in saved
                 and itstime(start_step, eval_every, total_steps))
  if start_step >= total_steps and not unevaluated:
    logging.warning(
        "the run in %s is complete: its checkpoint is at step %d and this config ends at step "
        "%d (num_epochs=%g); results: metrics.jsonl, curves.png, best/ and checkpoints/ there "
        "(raise --config.num_epochs to train further)", workdir, start_step, total_steps,
        config.num_epochs)
    return result(saved.get("evaluation", {}), start_step, None)

  # --- loop ---------------------------------------------------------------------------------
  writer = resources.enter_context(metrics.MetricWriter(workdir))
  if start_step == 0:
    writer.write_config(config)
  stop = resources.enter_context(StopRequest(
      distributed.stop_agreed if jax.process_count() > 1 else None))
  step_metrics = resources.enter_context(StepMetrics(config.divergence.factor))
  progress = resources.enter_context(Progress(start_step, total_steps, batch_size))
  trace = resources.enter_context(profiling.StepTrace(
      profiling.trace_dir(workdir_lib.RunDir(workdir).tensorboard, jax.process_index()),
      config.profile, start_step, total_steps))
  evaluation, evaluating = {}, 0.0  # the last evaluation; the seconds spent in them
  stall_checked = start_step >= config.stall.check_steps
  skipped_images = 0  # unreadable training images this run has skipped (logged by the reader)
  step = start_step

  def meta(step: int, **evaluated) -> dict:
    return checkpoint_meta.build(
        step, epoch=step / steps_per_epoch, schedule_state=schedule.state_dict(),
        config=config, data=input_.identity, processes=jax.process_count(), **evaluated)

  def write(step: int, split: str, values: dict) -> None:
    try:
      writer.write(step, split, values)
    except UserError:
      ckpts.wait()  # a checkpoint write that failed first (a full disk) is the one to report
      raise

  def save(step: int, **evaluated) -> None:
    with progress.timing("checkpoint"):
      step_metrics.fetch(ckpts.last_saved)  # divergence stops here, before the state is saved
      ckpts.save(step, state, meta(step, **evaluated), batches)

  @contextlib.contextmanager
  def saved_if_it_fails(step: int, evaluation: bool = False):
    """Input that cannot be read any more, or an evaluation that runs out of device memory,
    stops the run with `step` saved (the input position included: nothing is lost)."""
    try:
      yield
    except (UserError, RuntimeError) as e:
      xla = out_of_memory(e) if evaluation else None
      if not isinstance(e, UserError) and xla is None:
        raise
      if step > start_step and ckpts.last_saved != step:
        save(step)
        ckpts.wait()
      kept = ckpts.last_saved if ckpts.last_saved is not None else "none"
      if xla is None:
        raise UserError(f"{e}; step {kept} is saved: run the same command to continue once the "
                        "data can be read") from None
      raise UserError(f"the evaluation ran out of device memory ({xla}); step {kept} is saved: "
                      "run the same command with a smaller --config.data.eval_batch_size (now "
                      f"{config.data.eval_batch_size}) to continue") from None

  interrupted = False  # a stop request has left an evaluation

  def evaluated(step: int) -> bool:
    """`step`'s evaluation, its ε schedule decision, best/ and checkpoint; whether the run ends
    at `step`: the schedule's stop, or a stop request during the evaluation (in a run of one
    process: several agree on stops at the ends of steps only), which saves the step without
    it, for the next start to run first."""
    nonlocal evaluation, evaluating, interrupted, total_steps
    step_metrics.fetch(ckpts.last_saved)
    ten_crop = config.eval.ten_crop_every_eval or (
        step == total_steps and config.eval.ten_crop_final)
    timing = {}
    try:
      with saved_if_it_fails(step, evaluation=True):
        evaluation, _ = evaluation_lib.evaluate(
            setup.eval_step, state["params"], mean,
            input_.eval_batches(ten_crop, keep=step < total_steps),
            input_.eval_steps, setup.batch_sharding,
            what="validation, ten crops" if ten_crop else "validation",
            stopped=(lambda: stop.signal is not None) if jax.process_count() == 1 else None,
            timing=timing, transfer=config.data.transfer)
    except evaluation_lib.Interrupted:
      logging.warning("stopping on %s during step %d's evaluation: saving step %d without it "
                      "and exiting (the same command evaluates it first)", stop.signal, step,
                      step)
      if ckpts.last_saved != step:
        save(step)
      interrupted = True
      return True
    evaluating += timing["seconds"]
    for split, values in evaluation.items():
      write(step, split, {**values, **timing})
    progress.log_eval(step, step / steps_per_epoch, evaluation, timing["seconds"])
    outcome = schedule.after_eval(evaluation["eval"]["top1_error"])
    if outcome.improved:
      with progress.timing("checkpoint"):
        ckpts.save_best(step, state, meta(step, evaluation=evaluation))
    if outcome.dropped:
      logging.info("validation error plateaued: learning rate ÷10 → %g (drop %d of %d)",
                   schedule.learning_rate, schedule.state.drops, schedule.max_drops)
    if ckpts.last_saved != step:  # (a step saved without its evaluation keeps its checkpoint)
      save(step, evaluation=evaluation)
    progress.interval(step, batches.take_transfer())  # the next interval leaves eval out
    if outcome.stop:
      logging.info("validation error stalled after the last drop: stopping at step %d", step)
      total_steps = step  # the run's end
    return outcome.stop

  def finish(step: int) -> RunResult:
    ckpts.wait()
    if jax.process_index() == 0 and os.path.exists(writer.path):
      metrics.plot_curves(writer.path, workdir_lib.RunDir(workdir).curves,
                          config.model.num_classes)
    return result(evaluation, step, stop.signal if step < total_steps or interrupted else None,
                  during_evaluation=interrupted,
                  timed={"loop_seconds": progress.elapsed(), "evaluation_seconds": evaluating,
                         "checkpoint_seconds": progress.totals["checkpoint"],
                         "checkpoints": progress.counts["checkpoint"]})

  if unevaluated:
    logging.info("step %d was saved without its evaluation: evaluating it first", start_step)
    if evaluated(start_step) or start_step == total_steps:
      return finish(start_step)
  batches.start_prefetch()  # the input's workers start while the step compiles
  logging.info("compiling the training step (the first step waits for it)")
  for step in range(start_step + 1, total_steps + 1):
    trace.begin(step)
    with progress.timing("input_wait"), saved_if_it_fails(step - 1):
      batch, skipped = next(batches)
    skipped_images += skipped
    log_events(schedule.advance(step - 1), step, (step - 1) / steps_per_epoch, schedule)
    step_fn = (setup.train_step_with_stats if step % config.stats_every_steps == 0
               else setup.train_step)
    with progress.timing("dispatch"):
      state, values = step_fn(state, batch, rng, mean, schedule.rates_on(setup.replicated))
    step_metrics.add(step, values)
    with progress.timing("device_wait"):
      step_metrics.behind(IN_FLIGHT_STEPS)
    progress.update(step)

    if itstime(step, config.log_every_steps, total_steps):
      with progress.timing("device_wait"):
        step_metrics.wait()
      with progress.timing("metrics"):
        step_metrics.fetch(ckpts.last_saved)
        summary = step_metrics.summary()
      if summary:
        summary.update(epoch=step / steps_per_epoch, skipped_images=skipped_images,
                       lr=schedule.learning_rate, **_per_layer_rates(schedule.rates()),
                       **progress.interval(step, batches.take_transfer()))
        write(step, "train", summary)
        progress.log(step, summary)
        if not stall_checked and step >= config.stall.check_steps:
          stall_checked = True
          _warn_if_stalled(summary["loss"], input_.num_classes, config)

    if itstime(step, eval_every, total_steps):
      if evaluated(step):
        break
    elif step % config.checkpoint.every_steps == 0:
      save(step)
    trace.end(step, state)

    if stop.stop_at(step):
      logging.warning("stopping on %s: saving step %d and exiting (the same command resumes)",
                      stop.signal, step)
      if ckpts.last_saved != step:  # an evaluation step has just been saved
        save(step)
      break
  return finish(step)


def _per_layer_rates(rates: dict[str, float]) -> dict[str, float]:
  """{'lr/conv1/kernel': ε, ...} when the parameters' rates differ, else nothing (`lr` says it)."""
  return {f"lr/{k}": v for k, v in rates.items()} if len(set(rates.values())) > 1 else {}


def _warn_if_stalled(loss: float, num_classes: int, config) -> None:
  chance = math.log(num_classes)
  if abs(loss - chance) < config.stall.band * chance:
    logging.warning(
        "training looks stalled: loss %.3f is still within %.0f%% of ln(%d) = %.3f after %d "
        "steps: the network's output barely depends on the image. The input scale first: "
        "data.pixel_scale is %g (the 2012 code fed raw 0-255 values less the mean, 1); then "
        "the init (std %s, biases of 1 damp the image's part) and a bfloat16 compute dtype "
        "(model.dtype is %s). `python -m alexnet_jax.diagnose` with this run's --config flags "
        "names the layer where the image's signal falls below what the dtype resolves "
        "(docs/fidelity.md, 'The paper's initialisation').", loss, 100 * config.stall.band,
        num_classes, chance, config.stall.check_steps, config.data.pixel_scale,
        "/".join(f"{v:g}" for v in dict(config.model.init_std).values()), config.model.dtype)
