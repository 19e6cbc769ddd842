"""`benchmark end2end`: the real training loop, its steady images/s, input wait and host
milliseconds per step by part; `null_setup` puts a trivial step in place of the network."""

from __future__ import annotations

import os
import tempfile

import numpy as np

from alexnet_jax.benchmark import emit, figure, jpeg_folder, training_jpegs
from alexnet_jax.data import nvdecode
from alexnet_jax.errors import UserError


def null_setup(config, mesh, **kwargs):
  """`train_setup.setup_train` with trivial jitted steps in place of the network's: each
  takes its whole batch (so the transfer and the input are real), reads a pixel of each image
  and returns constant metrics. The training loop around it is the real one: its ceiling."""
  import jax
  import jax.numpy as jnp

  from alexnet_jax.train_setup import setup_train

  setup = setup_train(config, mesh, **kwargs)

  def step(state, batch, rng, mean, rates):
    del rng, mean, rates
    # One pixel of each image: the batch is on the device whatever the step reads, and the
    # step costs next to nothing (a mean over it took a CPU device 10 ms a step).
    touched = jnp.sum(batch["image"][:, 0, 0, 0].astype(jnp.float32)) * 0.0
    one = jnp.float32(1.0) + touched
    names = ("loss", "top1_error", "top5_error", "grad_norm", "param_norm")
    return {**state, "step": state["step"] + 1}, dict.fromkeys(names, one)

  def eval_step(params, batch, mean):
    del params, mean
    zero, count = jnp.float32(0.0), jnp.sum(batch["mask"].astype(jnp.float32))
    sums = {"loss": zero, "top1_error": zero, "top5_error": zero, "count": count}
    return {"eval": sums} | ({"eval_10crop": sums} if batch["image"].ndim == 5 else {})

  jitted = jax.jit(step, in_shardings=(setup.state_shardings, setup.batch_sharding,
                                       setup.replicated, setup.replicated, setup.replicated),
                   out_shardings=(setup.state_shardings, setup.replicated), donate_argnums=0)
  setup.train_step = setup.train_step_with_stats = jitted
  setup.eval_step = jax.jit(eval_step)
  return setup


PILLOW_SECONDS = 3.0  # the one-thread Pillow yardstick's timing, by default
EVAL_BATCHES = 4  # the validation images made for the evaluation after the timed steps


def _pillow_yardstick(config, seconds: float) -> float:
  """Images/s of a plain Pillow decode and crop, one thread, of the JPEGs the loop reads (the
  prepared store's, or the originals)."""
  from alexnet_jax.benchmark.input_pipeline import plain_pil_loop

  images, stored = training_jpegs(config, 256)
  return plain_pil_loop(images, seconds, size=stored, crop=config.model.input_size)[0]


def bench_end2end(config, *, source: str, root: str, generate: int, batch: int, workers: int,
                  steps: int, null_model: bool = False, prepared: bool = False,
                  store: str = "", decoder: str = "",
                  pillow_seconds: float = PILLOW_SECONDS) -> dict:
  """The real training loop (`train.train_and_evaluate`) for `steps` steps on the synthetic
  source or on JPEGs (`root`'s, or generated from real photographs; `prepared`: read through
  the prepared §2 store): steady-state images/s, the fraction of the loop's time spent
  waiting for input and the host's milliseconds per step by part, from the loop's own metrics
  after the first (compiling) interval; the batches' host-to-device GB/s; with the network,
  the step alone timed after it in the same process and the loop's fraction of it; the
  evaluation after the timed steps (`EVAL_BATCHES` batches of made images, or `root`'s): its
  images/s after its first batch and its input's start; the main thread's seconds per
  checkpoint save, over the run's saves (its last step's, in checkpoints/ and best/: the
  network's whole state, the null model's too, each the first of its kind); for JPEGs, the
  loop's ratio to a one-thread Pillow decode and crop of the same JPEGs timed in the same run
  for `pillow_seconds` (0: not timed).
  `null_model`: a trivial step in place of the network (`null_setup`), so the figures are the
  loop's own ceiling. `store`: the prepared store's folder, kept (prepared once and reused by
  later runs). Prints and returns the record."""
  from alexnet_jax import metrics, train
  from alexnet_jax.benchmark.step import timed_step
  from alexnet_jax.data import batch as batch_lib
  from alexnet_jax.data import readers
  from alexnet_jax.data import workers as workers_lib

  batch = batch or config.data.batch_size
  if steps < 8:
    raise UserError(f"end2end needs --steps >= 8 (4 log intervals of 2 steps), got {steps}")
  if not pillow_seconds >= 0:
    raise UserError(f"--pillow_seconds must be >= 0 (0: no yardstick), got {pillow_seconds}")
  with tempfile.TemporaryDirectory() as tmp:
    if source == "jpeg":
      jpeg_folder(config, root=root, generate=generate, val=EVAL_BATCHES * batch, store=store,
                  tmp=tmp, prepared=prepared)
      size = len(readers.image_folder(config.data.data_dir, "train")[0])
    else:
      config.data.update(dict(name="synthetic", synthetic_train_size=generate,
                              synthetic_eval_size=EVAL_BATCHES * batch))
      size = generate
    config.data.update(dict(batch_size=batch, eval_batch_size=batch))
    pillow = (_pillow_yardstick(config, pillow_seconds) if source == "jpeg" and pillow_seconds
              else None)
    if workers:
      config.data.workers = workers
    if decoder:
      config.data.decoder = decoder
    config.num_epochs = steps * batch / size
    config.eval_every_epochs = config.num_epochs  # one evaluation, after the timed steps
    config.log_every_steps = steps // 4
    config.stats_every_steps = 10 * steps
    config.eval.ten_crop_final = False
    config.checkpoint.every_steps = 10 * steps
    workdir = os.path.join(tmp, "workdir")
    timing = train.train_and_evaluate(config, workdir,
                                      **({"setup": null_setup} if null_model else {})).timing
    logged = metrics.run_rows(workdir)
    evaluated = [r for r in logged if r["split"] == "eval"][-1]
    rows = [r for r in logged if r["split"] == "train"][1:]
  mean = lambda key, digits=3: round(float(np.mean([r[key] for r in rows])), digits)
  record = {"bench": "end2end", "source": source + (" (prepared)" if prepared else ""),
            "model": "null" if null_model else "alexnet", "batch": batch,
            "dtype": config.model.dtype, "decoder": config.data.decoder,
            "decoded_on": "device" if nvdecode.decodes_on_device(config.data, prepared)
                          else "host",
            "transfer": config.data.transfer,
            "workers": workers_lib.input_workers(config.data, encoded=source == "jpeg"),
            "steps": steps,
            "img_per_s": mean("img_per_s", 1), "input_wait_fraction": mean("input_wait_fraction"),
            "host_ms_per_step": {k.split("/")[1]: mean(k) for k in sorted(rows[0])
                                 if k.startswith("host_ms/")},
            "eval_img_per_s": round(evaluated["img_per_s"], 1),
            "eval_input_start_seconds": round(evaluated["input_start_seconds"], 3),
            "checkpoints": timing["checkpoints"],
            "checkpoint_seconds_per_save": round(timing["checkpoint_seconds"]
                                                 / max(timing["checkpoints"], 1), 3)}
  crossing = sum(int(np.prod(shape)) * np.dtype(dtype).itemsize for shape, dtype
                 in batch_lib.device_layout(batch, config.model.input_size,
                                            config.model.in_channels).values())
  transfer_ms = record["host_ms_per_step"].get("transfer", 0.0)
  record["transfer_gb_per_s"] = figure(crossing / transfer_ms / 1e6) if transfer_ms else None
  if not null_model:  # the step alone, on device data, in this process
    seconds = timed_step(config, batch, max(4, steps // 4))[0]
    record.update(step_img_per_s=round(batch / seconds, 1),
                  of_step=figure(record["img_per_s"] * seconds / batch))
  if pillow:
    record.update(pillow_1_thread_img_per_s=round(pillow, 1),
                  vs_pillow_1_thread=round(record["img_per_s"] / pillow, 2))
  emit(record)
  return record
