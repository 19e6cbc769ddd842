"""Training and evaluation: one loop, mesh → input → model/optimizer/shardings/steps
(`train_state.setup_train`) → checkpoint → loop (paper §5: SGD with momentum 0.9, weight decay
5e-4, batch 128, ε ÷10 on plateaus; §3.5: multinomial logistic regression; §4.1: 10-crop
testing).
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import queue
import signal
import sys
import threading
import time
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

import grain

from alexnet_jax import checkpoint, finetune, metrics, models
from alexnet_jax import workdir as workdir_lib
from alexnet_jax.prefetch import DevicePrefetch
from alexnet_jax.data.pipeline import build_input
from alexnet_jax.errors import UserError
from alexnet_jax.schedule import LearningRateSchedule
from alexnet_jax.sharding import DATA, MODEL, mesh_for
from alexnet_jax.train_state import setup_train, validate_optimizer


# ----------------------------------------------------------------------------- helpers

def itstime(step: int, every: int, total: int) -> bool:
  """Whether `step` is one of every `every` steps, or the last one."""
  return step == total or step % every == 0


class _StopRequested:
  """SIGTERM/SIGINT set a flag; the loop finishes its step, saves and exits cleanly."""

  def __init__(self):
    self.signal = None
    self._previous = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
      self._previous[sig] = signal.signal(sig, self._handle)

  def _handle(self, signum, frame):
    del frame
    self.signal = signal.Signals(signum).name

  def restore(self):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


class _Position(grain.DatasetIterator):
  """The input position the loop has reached, as grain's checkpoint handler saves an iterator
  (`get_state`): the prefetched iterator itself is ahead of the loop."""

  def __init__(self, state: dict):
    super().__init__()
    self._state = state

  def __next__(self):
    raise StopIteration

  def get_state(self) -> dict:
    return self._state

  def set_state(self, state: dict) -> None:
    self._state = state


class StepMetrics:
  """The training steps' metrics, brought to the host and checked by a background thread as
  the device finishes each step (the loop's thread never waits on a transfer), then averaged
  over the steps since the last log line.

  Divergence stops the run before anything is saved: a loss that is not finite, or a loss or
  global parameter norm above `divergence_factor` times its running mean (0: finiteness only).
  Every checkpoint is written right after `fetch` has seen every step before it, so the last
  one holds sane values."""

  WATCHED = {"loss": "loss", "param_norm": "parameter norm"}

  def __init__(self, divergence_factor: float = 0.0):
    self._factor = float(divergence_factor)
    self._running = {}  # watched metric -> running mean (exponential, 0.9)
    self._fetched = []  # (step, metrics on the host) since the last summary
    self._queue = queue.Queue()
    self._added = self._done = 0
    self._divergence = None  # (step, what, value, running mean or None): the first one
    self._changed = threading.Condition()
    self._thread = threading.Thread(target=self._run, name="step-metrics", daemon=True)
    self._thread.start()

  def add(self, step: int, step_metrics) -> None:
    self._added += 1
    self._queue.put((step, step_metrics))

  def _run(self) -> None:
    while (item := self._queue.get()) is not None:
      step, values = item
      host = jax.device_get(values)
      with self._changed:
        if self._divergence is None:
          self._divergence = self._check(step, host)
          if self._divergence is None:
            self._fetched.append((step, host))
        self._done += 1
        self._changed.notify_all()

  def _check(self, step: int, values: dict):
    for name, said in self.WATCHED.items():
      value = float(values[name])
      running = self._running.get(name)
      if not np.isfinite(value):
        return step, said, value, None
      if self._factor and running and value > self._factor * running:
        return step, said, value, running
      self._running[name] = value if running is None else 0.9 * running + 0.1 * value
    return None

  def wait(self) -> None:
    """Blocks until every step added so far has been fetched and checked."""
    with self._changed:
      self._changed.wait_for(lambda: self._done == self._added)

  def fetch(self, last_saved: int | None) -> None:
    """Waits for the steps added so far; raises `UserError` if one diverged."""
    self.wait()
    if self._divergence is None:
      return
    step, said, value, running = self._divergence
    kept = (f"the last checkpoint (step {last_saved}) was written before it and is intact"
            if last_saved is not None else "no checkpoint was written")
    what = (f"became {value}" if running is None else
            f"exploded at step {step} ({value:.4g}, more than {self._factor:g} x its running "
            f"mean {running:.4g})")
    at = f" at step {step}" if running is None else ""
    raise UserError(f"the {said} {what}{at}: stopping without saving; {kept}. Lower "
                    "--config.optimizer.learning_rate or check the input data")

  def close(self) -> None:
    self._queue.put(None)
    self._thread.join(timeout=60)

  def summary(self) -> dict | None:
    """Means of the scalar metrics since the last summary, the per-layer norms of the last
    step that has them (keys with '/'); None when no step has run since."""
    if not self._fetched:
      return None
    steps = self._fetched
    out = {k: float(np.mean([m[k] for _, m in steps])) for k in steps[-1][1] if "/" not in k}
    for _, m in steps:
      out.update({k: float(v) for k, v in m.items() if "/" in k})
    self._fetched = []
    return out


def validate(config, mesh) -> None:
  """One-line errors for combinations that cannot run, before anything compiles."""
  data_axis = mesh.shape[DATA]
  for name in ("batch_size", "eval_batch_size"):
    size = config.data[name]
    if size < 1 or size % data_axis:
      raise UserError(f"data.{name}={size} must be a positive multiple of the 'data' mesh axis "
                      f"({data_axis} = {jax.device_count()} devices / model axis "
                      f"{mesh.shape[MODEL]})")
  if config.num_epochs <= 0:
    raise UserError(f"num_epochs must be positive, got {config.num_epochs}")
  if config.eval_every_epochs <= 0:
    raise UserError(f"eval_every_epochs must be positive, got {config.eval_every_epochs}")
  validate_optimizer(config.optimizer)
  for name, value in (("checkpoint.keep", config.checkpoint.keep),
                      ("checkpoint.every_steps", config.checkpoint.every_steps),
                      ("log_every_steps", config.log_every_steps),
                      ("stats_every_steps", config.stats_every_steps)):
    if value < 1:
      raise UserError(f"{name} must be >= 1, got {value}"
                      + (" (0 would delete every checkpoint)" if name == "checkpoint.keep"
                         else ""))
  if config.divergence.factor != 0 and config.divergence.factor <= 1:
    raise UserError(f"divergence.factor must be 0 (off) or > 1, got {config.divergence.factor}")


def _to_global(batch: dict, sharding) -> dict:
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}


def evaluate(eval_step, params, mean, input_, sharding, *, ten_crop: bool) -> dict:
  """{'eval': centre-crop metrics} (+ 'eval_10crop' from the same pass when `ten_crop`)."""
  totals, skipped = None, 0
  for batch in input_.eval_batches(ten_crop):
    skipped += int(batch.pop("skipped").sum())
    sums = eval_step(params, _to_global(batch, sharding), mean)
    totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
  results = {}
  for split, split_sums in jax.device_get(totals).items():
    count = max(float(split_sums.pop("count")), 1.0)
    results[split] = {k: float(v) / count for k, v in split_sums.items()}
    results[split]["skipped_images"] = skipped
  return results


def checkpoint_meta(step: int, steps_per_epoch: float, schedule: LearningRateSchedule, config,
                    input_) -> dict:
  """The JSON saved beside the state: what a resume and inference need besides the arrays,
  and what the run was trained on (a resume on other data is refused)."""
  return {"step": step, "epoch": step / steps_per_epoch, "schedule": schedule.state_dict(),
          "config": config.to_dict(), "class_names": list(input_.class_names),
          "processes": jax.process_count(), "data": _trained_on(config, input_)}


def _trained_on(config, input_) -> dict:
  data = config.data
  return {"name": data.name, "data_dir": data.data_dir, "num_train": input_.num_train,
          "image_size": int(data.image_size), "batch_size": int(data.batch_size)}


def check_resume(meta: dict, saved: dict, *, config, abstract_state, input_, workdir: str) -> None:
  """Raises `UserError` (one line, nothing touched) when a checkpoint does not fit this run:
  another network (the first array that differs), another dataset, another batch size."""
  mine = checkpoint.state_shapes(abstract_state)
  differ = [p for p in sorted(set(mine) | set(saved)) if mine.get(p) != saved.get(p)]
  if differ:
    first = next((p for p in differ if p.startswith("params/")), differ[0])
    shape = lambda d: "absent" if d.get(first) is None else str(d[first])
    raise UserError(
        f"the checkpoints in {workdir} are of another network: {first} is {shape(saved)} there "
        f"and {shape(mine)} in this config ({len(differ)} arrays differ); run the config they "
        f"were trained with, or a new --workdir (--config.init_from.workdir={workdir} to "
        "fine-tune from them)")
  saved_data = meta.get("data") or _data_of_saved_config(meta)
  now = _trained_on(config, input_)
  names_now = list(input_.class_names)
  same = (saved_data["name"] == now["name"] and saved_data.get("image_size") == now["image_size"]
          and meta.get("class_names", names_now) == names_now
          and saved_data.get("num_train", now["num_train"]) == now["num_train"])
  if not same:
    describe = lambda d, n: (f"{d['name']} ({d.get('num_train', '?')} training images, {n} "
                             f"classes, stored at {d.get('image_size', '?')} px)")
    raise UserError(f"the checkpoints in {workdir} were trained on "
                    f"{describe(saved_data, len(meta.get('class_names', [])))}, this run reads "
                    f"{describe(now, len(names_now))}: use the data they were trained on, or a "
                    "new --workdir")
  if saved_data.get("batch_size", now["batch_size"]) != now["batch_size"]:
    raise UserError(f"the checkpoints in {workdir} were trained with data.batch_size="
                    f"{saved_data['batch_size']}, this run has {now['batch_size']}: the steps, "
                    "epochs and input position would not line up; resume with "
                    f"--config.data.batch_size={saved_data['batch_size']}, or use a new --workdir")
  if saved_data.get("data_dir", now["data_dir"]) != now["data_dir"]:
    logging.warning("data.data_dir is %s, the checkpoint's was %s: the same dataset (name, "
                    "classes and size agree), read from its new place", now["data_dir"],
                    saved_data["data_dir"])


def _data_of_saved_config(meta: dict) -> dict:
  """What a checkpoint of an earlier version (no 'data' in its meta) says of its data."""
  data = meta["config"]["data"]
  return {"name": data["name"], "data_dir": data.get("data_dir", ""),
          "image_size": data.get("image_size"), "batch_size": data.get("batch_size")}


def _flat(tree: dict, prefix: str = "") -> dict:
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      out.update(_flat(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = tuple(value) if isinstance(value, list) else value
  return out


def report_resume(meta: dict, config, schedule: LearningRateSchedule) -> None:
  """Says what the resumed run takes from the checkpoint and from this run's config. A
  learning rate given now that differs from the checkpoint's is honoured."""
  step = int(meta["step"])
  saved, now = _flat(meta["config"]), _flat(config.to_dict())
  changed = {k: (saved.get(k), now.get(k)) for k in sorted(set(saved) | set(now))
             if saved.get(k) != now.get(k)}
  lr = changed.pop("optimizer.learning_rate", None)
  if lr is not None:
    schedule.rebase(float(config.optimizer.learning_rate))
    logging.warning("resume: optimizer.learning_rate is %g, the checkpoint's was %g: honoured, "
                    "ε is now %g (after %d drop(s))", lr[1], lr[0], schedule.learning_rate,
                    schedule.state.drops)
  logging.info("resumed from step %d (epoch %.2f): parameters, optimizer state, ε schedule "
               "(ε %g, %d drop(s), best error %s) and input position come from the checkpoint",
               step, meta["epoch"], schedule.learning_rate, schedule.state.drops,
               meta["schedule"].get("best_error"))
  if changed:
    logging.info("resume: this run's config differs from the checkpoint's in %s",
                 "; ".join(f"{k}: {a!r} → {b!r}" for k, (a, b) in changed.items()))


# ----------------------------------------------------------------------------- the loop

def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       setup: Callable = setup_train) -> dict:
  """Trains `config` in `workdir` (resuming from its checkpoints); returns the final eval.
  The workdir is locked for the run (process 0 holds the lock of a multi-process run).
  `setup` builds the state and steps (`train_state.setup_train`; the loop benchmark passes one
  with a trivial step)."""
  workdir = workdir_lib.prepare(workdir)
  lock = workdir_lib.Lock(workdir)
  if jax.process_index() == 0:
    lock.acquire()
  try:
    return _train_and_evaluate(config, workdir, setup)
  finally:
    lock.release()


def _train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, setup_fn) -> dict:
  # --- mesh -----------------------------------------------------------------------------------
  mesh = mesh_for(config)
  validate(config, mesh)
  models.AlexNetSpec.from_config(config.model)  # config errors before any data is read
  logging.info("mesh: %s over %d %s device(s)", dict(mesh.shape), jax.device_count(),
               jax.devices()[0].platform)

  # --- input ----------------------------------------------------------------------------------
  ckpts = checkpoint.Checkpoints(workdir, keep=config.checkpoint.keep)
  model_config = config.model
  input_ = build_input(config.data, crop=model_config.input_size,
                       channels=model_config.in_channels, num_classes=model_config.num_classes,
                       seed=config.seed, process_index=jax.process_index(),
                       process_count=jax.process_count())
  batch_size = config.data.batch_size
  steps_per_epoch = input_.num_train / batch_size
  total_steps = math.ceil(config.num_epochs * steps_per_epoch)
  eval_every = max(1, round(config.eval_every_epochs * steps_per_epoch))
  logging.info("data: %s, %d train / %d eval examples, %d classes, %.1f steps per epoch",
               config.data.name, input_.num_train, input_.num_eval, input_.num_classes,
               steps_per_epoch)

  # --- model, optimizer, shardings, steps -----------------------------------------------------
  fine_tune = None
  if config.init_from.workdir and not ckpts.latest.all_steps():
    fine_tune = lambda params: finetune.transfer(params, config.init_from, mesh)
  setup = setup_fn(config, mesh, init_params=fine_tune)
  schedule = LearningRateSchedule(config.schedule, config.optimizer.learning_rate)
  mean = jax.device_put(input_.stats.mean, setup.replicated)
  rng = jax.random.key(config.seed)

  # --- checkpoint -----------------------------------------------------------------------------
  state = setup.state
  check = functools.partial(check_resume, config=config, abstract_state=state, input_=input_,
                            workdir=workdir)
  restored = ckpts.restore_latest(checkpoint.abstract_like(state), input_.train,
                                  input_.reposition, check)
  if restored is not None:
    state, saved = restored
    schedule.load_state_dict(saved["schedule"])
    report_resume(saved, config, schedule)
  start_step = int(state["step"])
  if jax.process_index() == 0:  # the mean image and RGB PCA, for inference from this workdir
    input_.stats.save(os.path.join(workdir, "data_stats.npz"))
  if start_step >= total_steps:
    ckpts.close()
    if hasattr(input_.train, "close"):
      input_.train.close()
    logging.warning(
        "the run in %s is complete: its checkpoint is at step %d and this config ends at step "
        "%d (num_epochs=%g); results: metrics.jsonl, curves.png, best/ and checkpoints/ there "
        "(raise --config.num_epochs to train further)", workdir, start_step, total_steps,
        config.num_epochs)
    return {}

  def save(step: int) -> None:
    with progress.timing("checkpoint"):
      step_metrics.fetch(last_saved)  # divergence stops here, before the state is saved
      ckpts.save(step, state, checkpoint_meta(step, steps_per_epoch, schedule, config, input_),
                 _Position(batches.get_state()))

  # --- loop -----------------------------------------------------------------------------------
  writer = metrics.MetricWriter(workdir)
  stop = _StopRequested()
  step_metrics = StepMetrics(config.divergence.factor)
  last_saved = start_step if restored is not None else None
  progress = _Progress(start_step, total_steps, batch_size)
  final = {}
  stall_checked = start_step >= config.stall.check_steps
  skipped_images = 0  # unreadable training images this run has skipped (logged by the reader)
  # Batches cross to the devices in a background thread, two ahead of the step.
  batches = DevicePrefetch(input_.train, lambda b: _to_global(b, setup.batch_sharding))

  try:
    for step in range(start_step + 1, total_steps + 1):
      schedule.advance((step - 1) / steps_per_epoch)
      state["opt_state"] = schedule.apply(state["opt_state"])
      with progress.timing("input_wait"):
        batch, skipped = next(batches)
      skipped_images += skipped
      step_fn = (setup.train_step_with_stats if step % config.stats_every_steps == 0
                 else setup.train_step)
      with progress.timing("dispatch"):
        state, values = step_fn(state, batch, rng, mean)
      step_metrics.add(step, values)
      progress.update(step)

      if itstime(step, config.log_every_steps, total_steps):
        with progress.timing("device_wait"):
          step_metrics.wait()
        with progress.timing("metrics"):
          step_metrics.fetch(last_saved)
          summary = step_metrics.summary()
        if summary:
          summary.update(epoch=step / steps_per_epoch, skipped_images=skipped_images,
                         **progress.interval(step, batches.take_transfer()))
          writer.write(step, "train", summary)
          progress.log(step, summary)
          if not stall_checked and step >= config.stall.check_steps:
            stall_checked = True
            _warn_if_stalled(summary["loss"], input_.num_classes, config)

      if itstime(step, eval_every, total_steps):
        step_metrics.fetch(last_saved)
        ten_crop = config.eval.ten_crop_every_eval or (
            step == total_steps and config.eval.ten_crop_final)
        final = evaluate(setup.eval_step, state["params"], mean, input_, setup.batch_sharding,
                         ten_crop=ten_crop)
        for split, values in final.items():
          writer.write(step, split, values)
        result = final["eval"]
        progress.log_eval(step, final)
        improved = result["top1_error"] < schedule.state.best_error
        event = schedule.after_eval(result["top1_error"])
        if improved:
          ckpts.save_best(step, state, checkpoint_meta(step, steps_per_epoch, schedule, config,
                                                       input_) | {"eval": result})
        if event == "drop":
          logging.info("validation error plateaued: learning rate ÷10 → %g (drop %d of %d)",
                       schedule.learning_rate, schedule.state.drops, schedule.max_drops)
        save(step)
        last_saved = step
        progress.interval(step, batches.take_transfer())  # the next interval leaves eval out
        if event == "stop":
          logging.info("validation error stalled after the last drop: stopping at step %d", step)
          break
      elif step % config.checkpoint.every_steps == 0:
        save(step)
        last_saved = step

      if stop.signal:
        logging.warning("%s received: saving step %d and exiting", stop.signal, step)
        if last_saved != step:  # an evaluation step has just been saved
          save(step)
          last_saved = step
        break
  finally:
    batches.close()
    step_metrics.close()
    stop.restore()
    progress.close()
    ckpts.wait()
    ckpts.close()
    writer.close()
    input_close = getattr(input_.train, "close", None)
    if input_close:
      input_close()

  if jax.process_index() == 0 and os.path.exists(writer.path):
    metrics.plot_curves(writer.path, os.path.join(workdir, "curves.png"))
  return final


def _warn_if_stalled(loss: float, num_classes: int, config) -> None:
  chance = math.log(num_classes)
  if abs(loss - chance) < config.stall.band * chance:
    logging.warning(
        "training looks stalled: loss %.3f is still within %.0f%% of ln(%d) = %.3f after %d "
        "steps. The paper's init (std 0.01, biases of 1) is known to sit here (Caffe issues "
        "#401, #3243; docs/fidelity.md, 'The paper's initialisation'). Try "
        "--config.model.init_bias.fc6=0.1 --config.model.init_bias.fc7=0.1 (Caffe's "
        "bvlc_alexnet), a larger --config.model.init_std, or a smaller "
        "--config.optimizer.learning_rate.", loss, 100 * config.stall.band, num_classes,
        chance, config.stall.check_steps)


class _Progress:
  """A tqdm bar on a terminal; periodic log lines (img/s, ETA) otherwise."""

  # The main thread's time per step, by part: waiting for input, dispatching the step, waiting
  # for the device to finish the steps whose metrics a log line needs, fetching and checking
  # those metrics and writing the log line, checkpoints; the rest of the loop is "other".
  PARTS = ("input_wait", "dispatch", "device_wait", "metrics", "checkpoint")

  def __init__(self, start: int, total: int, batch_size: int):
    self.start, self.total, self.batch_size = start, total, batch_size
    self.t0, self.s0, self.last = time.time(), start, start
    self.seconds = dict.fromkeys(self.PARTS, 0.0)  # since the last interval
    self._interval_start = (time.perf_counter(), start)
    self.bar = None
    if sys.stderr.isatty() and jax.process_index() == 0:
      from tqdm import tqdm

      self.bar = tqdm(total=total, initial=start, unit="step", dynamic_ncols=True)

  def rate(self) -> float:
    """Images per second since this run started (compilation included)."""
    elapsed = time.time() - self.t0
    return (self.last - self.s0) * self.batch_size / elapsed if elapsed > 0 else 0.0

  @contextlib.contextmanager
  def timing(self, part: str):
    start = time.perf_counter()
    try:
      yield
    finally:
      self.seconds[part] += time.perf_counter() - start

  def interval(self, step: int, transfer_seconds: float = 0.0) -> dict:
    """Since the last call: images/s, the fraction of the loop's time spent waiting for the
    input pipeline (the device idles for want of data), and the host's milliseconds per step
    by part (`host_ms/*`; `transfer` is the prefetch thread's, beside the main thread)."""
    now = time.perf_counter()
    (then, first), self._interval_start = self._interval_start, (now, step)
    elapsed, steps = max(now - then, 1e-9), max(step - first, 1)
    parts, self.seconds = self.seconds, dict.fromkeys(self.PARTS, 0.0)
    out = {"img_per_s": (step - first) * self.batch_size / elapsed,
           "input_wait_fraction": min(parts["input_wait"] / elapsed, 1.0)}
    out.update({f"host_ms/{k}": 1e3 * v / steps for k, v in parts.items()})
    out["host_ms/other"] = 1e3 * max(elapsed - sum(parts.values()), 0.0) / steps
    out["host_ms/transfer"] = 1e3 * transfer_seconds / steps
    return out

  def update(self, step: int) -> None:
    self.last = step
    if self.bar:
      self.bar.update(1)

  def log(self, step: int, summary: dict) -> None:
    overall, rate = self.rate(), summary["img_per_s"]
    eta = (self.total - step) * self.batch_size / overall if overall else float("nan")
    text = (f"step {step}/{self.total} epoch {summary['epoch']:.2f} loss {summary['loss']:.4f} "
            f"top1 {summary['top1_error']:.4f} lr {summary['lr']:.3g} "
            f"|g| {summary['grad_norm']:.3g} {rate:.0f} img/s (input wait "
            f"{100 * summary['input_wait_fraction']:.0f}%) ETA {eta / 60:.1f} min")
    if summary.get("skipped_images"):
      text += f" ({summary['skipped_images']} unreadable images skipped)"
    if self.bar:
      self.bar.set_postfix_str(f"loss {summary['loss']:.3f} {rate:.0f} img/s")
    else:
      logging.info(text)

  def log_eval(self, step: int, final: dict) -> None:
    parts = [f"{split}: top-1 {r['top1_error']:.4f} top-5 {r['top5_error']:.4f} loss "
             f"{r['loss']:.4f}" + (f" ({r['skipped_images']} unreadable skipped)"
                                   if r.get("skipped_images") else "")
             for split, r in final.items()]
    message = f"eval at step {step}: " + "; ".join(parts)
    if self.bar:
      self.bar.write(message)
    logging.info(message)

  def close(self) -> None:
    if self.bar:
      self.bar.close()
