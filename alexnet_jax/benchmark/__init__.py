"""Benchmarks that print figures (one JSON line each); tests never assert on time. Each
benchmark is a module of this package (`input_pipeline`, `step`, `levers`, `end2end`,
`transfer`, `decode`, `scaling`).

  python -m alexnet_jax.benchmark input [--root=DIR] [--workers=N] [--seconds=S]
      The training input pipeline (decode, §2 rescale + centre crop, §4.1 random crop, flip,
      PCA lighting, batching) on an ImageFolder tree's originals and on its prepared §2 store
      (`data.prepare`), one reader thread and --workers (one per core), 1, 2, 4, ... up to
      --workers worker processes, with images per CPU-second; beside them, a plain PIL loop
      doing the same work, and what handing a batch over from a worker costs (the input's
      reused shared memory against grain's own). Without --root, generates ImageNet-like JPEGs
      from real photographs first (`generate_imagenet_like`).
  python -m alexnet_jax.benchmark step --config=configs/paper.py [--batch=128]
      [--dtype=bfloat16|float32] [--steps=N]
      The jitted training step (forward, backward, the paper's SGD) on synthetic device data.
      --compare_torch also times the same network in PyTorch (eager and torch.compile) in the
      same run and prints the ratio; --profile ranks the device ops by time (jax.profiler).
  python -m alexnet_jax.benchmark levers --config=configs/paper.py [--batch=128]
      [--dtype=bfloat16] [--steps=N] [--xla_flags=FLAG ...]
      Levers on the training step, each against the step as shipped timed in the same run: the
      step without its global norms (alternating, in this process), and each XLA flag (a child
      `benchmark step` per flag beside one of the shipped step); img/s and the speed-up.
  python -m alexnet_jax.benchmark end2end --config=configs/paper.py [--source=synthetic|jpeg]
      [--prepared] [--null_model] [--root=DIR] [--workers=N] [--steps=N]
      The real training loop: steady images/s, the fraction of time it waits for input, the
      host's milliseconds per step by part, the batches' GB/s to the devices, the decoder and
      the worker processes, the evaluation's images/s and its input's start; with the network,
      its fraction of the step timed alone in the same process; for JPEGs, its ratio to a
      one-thread Pillow decode and crop of them.
      --null_model puts a trivial step in place of the network (the loop's own ceiling).
  python -m alexnet_jax.benchmark transfer --config=configs/paper.py [--batch=128]
      [--seconds=S]
      A training batch crossing to the first device, each way: its fields from pageable host
      memory (the loop's way), packed in one buffer, through JAX's pinned host memory, and in
      place from the input workers' shared memory; GB/s, ms and CPU ms per batch.
  python -m alexnet_jax.benchmark decode --config=configs/paper.py [--batch=128]
      [--root=DIR] [--store=DIR] [--seconds=S]
      A training batch's patches decoded from the prepared store's JPEGs each way: the default
      decoder, nvImageCodec's CPU backend (the input workers'), nvImageCodec in the training
      process on the first device (a GPU's memory where there is one); patches per second and
      the largest difference from the default decoder's pixels, in grey levels.
  python -m alexnet_jax.benchmark scaling --config=configs/tiny.py [--batch=16]
      Scaling on 1, 2, 4, 8 CPU devices on the training mesh at a fixed batch per 'data'
      shard: step time and the bytes of every collective in the compiled step.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time


def emit(record: dict) -> None:
  """One benchmark's figures: a JSON line on stdout."""
  print(json.dumps(record, ensure_ascii=False), flush=True)


def child_output(stdout: str, stderr: str, returncode: int) -> tuple[list[dict], str | None]:
  """What a child process of a benchmark printed: its JSON records (other lines, and lines
  that do not parse, ignored) and, when it failed, its error: the last line of its stderr, or
  its exit status."""
  records = []
  for line in stdout.splitlines():
    if line.startswith("{"):
      try:
        records.append(json.loads(line))
      except ValueError:
        pass
  error = None if returncode == 0 else (
      (stderr.strip().splitlines() or [f"exit status {returncode}"])[-1])
  return records, error


def figure(value: float) -> float:
  """`value` to three significant digits."""
  return float(f"{value:.3g}")


def timed(call, seconds: float, warm: int = 3) -> tuple[float, float, int]:
  """(wall seconds, CPU seconds of this process and its workers, calls) of `call` called
  again and again for `seconds`, after `warm` calls (worker start, first reads, compiling)."""
  for _ in range(warm):
    call()
  start, cpu, n = time.perf_counter(), cpu_seconds(), 0
  while time.perf_counter() - start < seconds:
    call()
    n += 1
  return time.perf_counter() - start, cpu_seconds() - cpu, n


def cpu_seconds() -> float:
  """CPU time of this process (all threads) and its live child processes (Linux /proc)."""
  total = time.process_time()
  for child in multiprocessing.active_children():
    try:
      with open(f"/proc/{child.pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
      total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
      pass
  return total


def jpeg_folder(config, *, root: str, generate: int, val: int, store: str, tmp: str,
                prepared: bool = True) -> None:
  """Points `config.data` at an ImageFolder of JPEGs, `root`'s or else `generate` training and
  `val` validation ones cut from real photographs under `tmp`, read through its prepared §2
  store (`store`, or one under `tmp`; made here) when `prepared`."""
  from alexnet_jax.data import prepare
  from alexnet_jax.data.samples import generate_imagenet_like

  if not root:
    root = os.path.join(tmp, "images")
    generate_imagenet_like(root, generate, classes=config.model.num_classes)
    generate_imagenet_like(root, val, classes=config.model.num_classes, seed=1, split="val")
  config.data.update(dict(name="image_folder", data_dir=root, use_prepared=prepared,
                          prepared_dir=store or os.path.join(tmp, "store")))
  if prepared:
    prepare.prepare(config.data, channels=config.model.in_channels,
                    num_classes=config.model.num_classes, progress=False)


def training_jpegs(config, count: int) -> tuple[list[bytes], int]:
  """The first `count` encoded training images `config.data` reads, and their stored size."""
  from alexnet_jax.data import sources

  split = sources.load(config.data, channels=config.model.in_channels,
                       num_classes=config.model.num_classes).train
  return ([split[i]["encoded"] for i in range(min(len(split), count))],
          sources.stored_size(config.data, split))
