"""`benchmark step`: the jitted training step on synthetic device data, against PyTorch
(eager and torch.compile) in the same run when asked, with a profile of the device ops."""

from __future__ import annotations

import json
import os
import tempfile
import time

from alexnet_jax.benchmark import emit
from alexnet_jax.errors import UserError

# Dense peak FLOP/s by device kind and compute dtype, for the fraction-of-peak column.
PEAK_FLOPS = {("NVIDIA H100 80GB HBM3", "bfloat16"): 989e12,
              ("NVIDIA H100 80GB HBM3", "float32"): 494e12,  # TF32 tensor cores
              ("NVIDIA H200", "bfloat16"): 989e12, ("NVIDIA H200", "float32"): 494e12}


def top_device_ops(trace: dict, steps: int, top: int = 25) -> list[dict]:
  """The device ops of a trace-event file (the `*.trace.json.gz` `jax.profiler` writes) that
  take the most time: [{'op', 'ms_per_step', 'calls_per_step'}], largest first."""
  events = trace["traceEvents"] if isinstance(trace, dict) else trace
  devices = {e["pid"] for e in events if e.get("ph") == "M" and e.get("name") == "process_name"
             and e.get("args", {}).get("name", "").startswith("/device:")}
  totals, calls = {}, {}
  for e in events:
    if e.get("ph") == "X" and e.get("pid") in devices:
      totals[e["name"]] = totals.get(e["name"], 0.0) + float(e.get("dur", 0.0))
      calls[e["name"]] = calls.get(e["name"], 0) + 1
  ranked = sorted(totals, key=totals.get, reverse=True)[:top]
  return [{"op": name, "ms_per_step": round(totals[name] / 1e3 / steps, 4),
           "calls_per_step": round(calls[name] / steps, 2)} for name in ranked]


def _profile(compiled, args, steps: int) -> list[dict]:
  """Runs `steps` more steps under `jax.profiler` and ranks the device ops."""
  import glob
  import gzip

  import jax

  with tempfile.TemporaryDirectory() as tmp:
    jax.profiler.start_trace(tmp)
    state, rest = args[0], args[1:]
    for _ in range(steps):
      state, metrics = compiled(state, *rest)
    jax.block_until_ready(metrics)
    jax.profiler.stop_trace()
    files = glob.glob(os.path.join(tmp, "**", "*.trace.json.gz"), recursive=True)
    if not files:
      return []
    with gzip.open(files[0], "rt", encoding="utf-8") as f:
      return top_device_ops(json.load(f), steps)


def compiled_step(config, batch_size: int, mesh=None, step_norms: bool = True):
  """The training step that training runs (`train_setup.setup_train`: the config's optimizer,
  the training mesh or `mesh`; `step_norms` False: without its global norms), compiled for a
  synthetic batch already on the devices and warmed up: (`run(steps)` -> seconds per step,
  the compiled step, its arguments after the state, {'state': the state after the last
  run})."""
  import jax
  import jax.numpy as jnp
  import numpy as np

  from alexnet_jax import optim
  from alexnet_jax.data import batch as batch_lib
  from alexnet_jax.sharding import mesh_for
  from alexnet_jax.train_setup import setup_train

  setup = setup_train(config, mesh if mesh is not None else mesh_for(config),
                      step_norms=step_norms)
  size, c = config.model.input_size, config.model.in_channels
  key = jax.random.key(0)
  draw = np.random.default_rng(0).integers  # on the host: jax's would compile a sampler
  batch = batch_lib.train(
      draw(0, 256, (batch_size, size, size, c), dtype=np.uint8),
      draw(0, config.model.num_classes, batch_size, dtype=np.int32),
      np.zeros((batch_size, 3), np.int32), np.zeros((batch_size, c), np.float32),
      np.ones(batch_size, np.float32), np.zeros(batch_size, np.int32))
  del batch["skipped"]  # a host-side count: the prefetcher keeps it off the devices
  batch = jax.device_put(batch, setup.batch_sharding)
  stored = config.data.image_size  # the mean image at the stored size, as training has it
  mean = jax.device_put(jnp.full((stored, stored, c), 120.0, jnp.float32), setup.replicated)
  rates = jax.device_put(optim.every_rate(setup.state["params"], config.optimizer.learning_rate),
                         setup.replicated)
  args = (batch, key, mean, rates)
  compiled = setup.train_step.lower(setup.state, *args).compile()
  held = {"state": setup.state}

  def run(steps: int) -> float:
    state = held["state"]
    start = time.perf_counter()
    for _ in range(steps):
      state, metrics = compiled(state, *args)
    jax.block_until_ready(metrics)
    held["state"] = state
    return (time.perf_counter() - start) / max(steps, 1)

  run(3)  # warm-up
  return run, compiled, args, held


def timed_step(config, batch_size: int, steps: int, mesh=None, profile_steps: int = 0,
               step_norms: bool = True):
  """(seconds per step, FLOPs per step, compiled HLO text, device ops ranked by time when
  `profile_steps`) of the training step that training runs (`compiled_step`), on a synthetic
  batch already on the devices. FLOPs: three times the forward pass's (forward, input and
  weight gradients), counted from the layer shapes; XLA's cost analysis does not see inside
  cuDNN's convolutions. `step_norms` False: the step without its global norms."""
  from alexnet_jax import model_spec

  run, compiled, args, held = compiled_step(config, batch_size, mesh, step_norms)
  flops = 3.0 * model_spec.AlexNetSpec.from_config(config.model).forward_flops() * batch_size
  seconds = run(steps)
  ops = _profile(compiled, (held["state"], *args), profile_steps) if profile_steps else []
  return seconds, flops, compiled.as_text(), ops


def _torch_for_comparison():
  """PyTorch with a CUDA GPU, for --compare_torch; a one-line error when either is missing."""
  try:
    import torch
  except ImportError:
    raise UserError("--compare_torch needs PyTorch (a benchmark-only dependency): "
                    "pip install 'alexnet_jax[benchmark]'") from None
  if not torch.cuda.is_available():
    raise UserError("--compare_torch times PyTorch on a CUDA GPU and none is visible")
  return torch


def bench_step(config, *, batch: int, steps: int, profile: bool, compare_torch: bool) -> None:
  """Prints the jitted training step's speed (and PyTorch's on the same network)."""
  import jax

  from alexnet_jax import model_spec
  from alexnet_jax.sharding import mesh_for

  torch = _torch_for_comparison() if compare_torch else None  # before timing anything
  batch_size = batch or config.data.batch_size
  seconds, flops, _, ops = timed_step(config, batch_size, steps,
                                       profile_steps=10 if profile else 0)
  device = jax.devices()[0]
  achieved = flops / seconds
  peak = PEAK_FLOPS.get((device.device_kind, config.model.dtype))
  emit({"bench": "step", "framework": f"jax {jax.__version__}",
         "device": device.device_kind, "dtype": config.model.dtype, "batch": batch_size,
         "mesh": dict(mesh_for(config).shape),
         "img_per_s": round(batch_size / seconds, 1), "ms_per_step": round(seconds * 1e3, 3),
         "tflop_per_s": round(achieved / 1e12, 3),
         "fraction_of_peak": round(achieved / peak, 4) if peak else None,
         "gflop_per_image": round(flops / batch_size / 1e9, 3)})
  if profile and not ops:
    emit({"profile": "no per-op device events in the trace (XLA's CPU backend records none)"})
  for op in ops:
    emit({"profile": op["op"], "ms_per_step": op["ms_per_step"],
           "calls_per_step": op["calls_per_step"]})
  if torch is None:
    return
  from alexnet_jax import torch_alexnet

  spec = model_spec.AlexNetSpec.from_config(config.model)
  for compiled in (False, True):
    torch_seconds = torch_alexnet.time_training_step(
        spec, batch_size, steps, dtype=config.model.dtype, compile=compiled)
    emit({"bench": "step", "framework": f"torch {torch.__version__}"
           + (" compile" if compiled else " eager"), "device": torch.cuda.get_device_name(),
           "dtype": config.model.dtype, "batch": batch_size,
           "img_per_s": round(batch_size / torch_seconds, 1),
           "ms_per_step": round(torch_seconds * 1e3, 3),
           "jax_speedup": round(torch_seconds / seconds, 3)})
