"""What the training loop runs on (`start`): the checkpoints, the mesh, the input, the model,
optimizer and steps (`train_setup`), the ε schedule, the batches on their way to the devices,
and the state, fresh or restored with its input position.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os

import jax
import ml_collections
from absl import logging

from alexnet_jax import checkpoint, checkpoint_meta, finetune
from alexnet_jax import workdir as workdir_lib
from alexnet_jax.data.pipeline import build_input, position_train_iterator
from alexnet_jax.data.stats import Stats
from alexnet_jax.errors import UserError
from alexnet_jax.prefetch import DevicePrefetch
from alexnet_jax.schedule import LearningRateSchedule
from alexnet_jax.sharding import check_batch_sizes, mesh_for, to_global


@dataclasses.dataclass
class Run:
  """What the loop runs on (`start` builds it)."""

  config: ml_collections.ConfigDict
  workdir: str
  ckpts: checkpoint.Checkpoints
  input_: object  # data.pipeline.Input
  setup: object  # train_setup.TrainSetup
  schedule: LearningRateSchedule
  batches: DevicePrefetch
  mean: jax.Array
  rng: jax.Array
  state: dict
  saved: dict  # the restored checkpoint's meta ({} for a fresh run)
  start_step: int
  total_steps: int
  eval_every: int
  steps_per_epoch: float


def steps_of(config, num_train: int) -> tuple[float, int, int]:
  """`config`'s steps per epoch over `num_train` training images, its last step and the steps
  between its evaluations."""
  steps_per_epoch = num_train / config.data.batch_size
  total_steps = config.num_steps or math.ceil(config.num_epochs * steps_per_epoch)
  return steps_per_epoch, total_steps, max(1, round(config.eval_every_epochs * steps_per_epoch))


def start(config, workdir: str, setup_fn, resuming: bool,
          resources: contextlib.ExitStack) -> Run:
  """Everything the loop runs on, in `resources`: the checkpoints, the mesh, the input, the
  model, optimizer and steps, the ε schedule, the batches on their way to the devices, and
  the state (restored from the newest checkpoint that fits, with the input position)."""
  ckpts = resources.enter_context(checkpoint.Checkpoints(workdir, keep=config.checkpoint.keep))

  # --- mesh ---------------------------------------------------------------------------------
  mesh = mesh_for(config)
  check_batch_sizes(config.data, mesh)
  logging.info("mesh: %s over %d %s device(s)", dict(mesh.shape), jax.device_count(),
               jax.devices()[0].platform)

  # --- input --------------------------------------------------------------------------------
  # A resumed run keeps its own statistics: the data's may have been computed again since.
  stats_path = workdir_lib.RunDir(workdir).stats
  own_stats = Stats.load(stats_path) if resuming and os.path.exists(stats_path) else None
  model_config = config.model
  input_ = build_input(config.data, crop=model_config.input_size,
                       channels=model_config.in_channels, num_classes=model_config.num_classes,
                       seed=config.seed, process_index=jax.process_index(),
                       process_count=jax.process_count(), stats=own_stats,
                       events=config.schedule.events if config.schedule.kind == "recorded"
                       else ())
  resources.callback(input_.close)
  batch_size = config.data.batch_size
  if batch_size > input_.num_train:
    raise UserError(f"data.batch_size {batch_size} is larger than the {input_.num_train} "
                    "training images: an epoch would be less than one step; set "
                    f"--config.data.batch_size to at most {input_.num_train} (a small "
                    "dataset's recipe: README, 'Fine-tuning a small dataset')")
  steps_per_epoch, total_steps, eval_every = steps_of(config, input_.num_train)
  logging.info("data: %s, %d train / %d eval examples, %d classes, %.1f steps per epoch",
               input_.identity.describe(), input_.num_train, input_.num_eval,
               input_.num_classes, steps_per_epoch)

  # --- model, optimizer, shardings, steps ---------------------------------------------------
  fine_tune = None
  if config.init_from.workdir and not resuming:
    fine_tune = lambda params: finetune.transfer(params, config.init_from, mesh)
  setup = setup_fn(config, mesh, init_params=fine_tune)
  frozen = tuple(layer for layer in setup.state["params"]
                 if layer not in config.init_from.new_layers) if (
                     config.init_from.workdir and config.init_from.freeze_copied) else ()
  schedule = LearningRateSchedule(config.schedule, config.optimizer, setup.state["params"],
                                  num_train=input_.num_train, batch_size=batch_size,
                                  frozen=frozen)
  mean = jax.device_put(input_.stats.mean, setup.replicated)
  rng = jax.random.key(config.seed)
  # Batches cross to the devices in a background thread, two ahead of the step; the
  # prefetcher is the iterator whose position the checkpoints save and restore.
  batches = resources.enter_context(
      DevicePrefetch(input_.train,
                     lambda b: to_global(b, setup.batch_sharding, config.data.transfer)))

  # --- checkpoint ---------------------------------------------------------------------------
  state = setup.state
  def check(meta, saved_shapes):
    checkpoint_meta.check_resume(meta, saved_shapes, shapes=checkpoint.state_shapes(state),
                                 config=config, identity=input_.identity, workdir=workdir)

  restored = ckpts.restore_latest(checkpoint.abstract_like(state), batches,
                                  lambda step: position_train_iterator(batches, step), check)
  saved = {}
  if restored is not None:
    state, saved = restored
    schedule.load_state_dict(saved["schedule"])
    checkpoint_meta.report_resume(saved, config, schedule)
    if input_.dataset_stats.fingerprint != input_.stats.fingerprint:
      logging.warning("the dataset's statistics differ from this run's (computed again since it "
                      "started?): the run keeps its own, %s", stats_path)
  start_step = int(state["step"])
  if jax.process_index() == 0 and (own_stats is None or restored is None):
    input_.stats.save(stats_path)  # the run's statistics, for its resumes and inference
  return Run(config, workdir, ckpts, input_, setup, schedule, batches, mean, rng, state,
              saved, start_step, total_steps, eval_every, steps_per_epoch)
