"""The GPU node check's report: the goals it judges (the step against PyTorch, the loop against
the step, the decoders, the full network's first epoch and its accuracy, the loop's dispatch
and its batches' transfer), the time 90 ImageNet
epochs (§5) would take, and report.json / report.md as `gpu_check` writes them.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess

from alexnet_jax import train_start
from alexnet_jax import workdir as workdir_lib
from alexnet_jax.configs import paper
from alexnet_jax.data.samples import IMAGENET_TRAIN_SIZE, IMAGENET_VAL_SIZE
from alexnet_jax.train import itstime

PAPER_EPOCHS = round(paper.get_config().num_epochs)  # §5's 90
# configs/fashion_mnist_full.py's goals: its training loss out of ln 10 within the first epoch
# (below this fraction of it), and this validation accuracy (%) after its 30 epochs.
LEAVES_CHANCE = 0.9
FULL_FASHION_ACCURACY = 94.0
NVIMGCODEC_IMG_PER_S = 45_000  # the loop at the big batch with the GPU decoder
PROJECTED_HOURS = 1.2  # 90 ImageNet epochs end to end
DISPATCH_MS = 0.5  # the loop's main thread per step, the input at full speed
TRANSFER_GB_PER_S = 10.0  # the training batches' host-to-device copy
FULL_FASHION_EPOCHS = 30  # configs/fashion_mnist_full.py's num_epochs


def paper_run() -> dict:
  """`configs/paper.py` on ImageNet's 1,281,167 training images as the loop runs it
  (`train_start.steps_of`, `train.itstime`): its steps, its evaluations (each epoch's and the
  last step's) and its checkpoint saves: one every `checkpoint.every_steps` steps but at an
  evaluation, and two at each evaluation (checkpoints/ and best/, the latter when the error
  improved: at most)."""
  config = paper.get_config()
  _, total, eval_every = train_start.steps_of(config, IMAGENET_TRAIN_SIZE)
  evaluations = len(range(eval_every, total + 1, eval_every)) + bool(total % eval_every)
  every = config.checkpoint.every_steps
  periodic = sum(not itstime(s, eval_every, total) for s in range(every, total + 1, every))
  return {"steps": total, "evaluations": evaluations, "checkpoints": periodic + 2 * evaluations}


def projection(report: dict) -> dict:
  """(d) 90 epochs of ImageNet's 1,281,167 training images at the step's speed and at the
  loop's from the store (bf16, the loop's batch); end to end, `configs/paper.py`'s run
  (`paper_run`) beside the loop's training:
  - its evaluations of the 50,000 validation images, each pass at the rate of the loop's own
    evaluation but no faster than its training (the benchmark's pass of a few batches mostly
    reads what the workers made as it started), the last one over ten crops (charged as ten
    passes: it decodes each image once, so at most that); each pass starts its input as the
    loop's evaluation did, or with worker processes only the first and the ten crops' (the
    others read in the processes kept from the pass before);
  - its checkpoint saves, each taking the main thread what a save took in the loop's run.
  'untimed': the parts the loop's record has no figure for (left out of the sum)."""
  step = _find(report, "step", framework="jax", dtype="bfloat16", batch=report["loop_batch"])
  loop = _find(report, "input", bench="end2end", model="alexnet", batch=report["loop_batch"])
  training = lambda record: (PAPER_EPOCHS * IMAGENET_TRAIN_SIZE / record["img_per_s"]
                            if record and record.get("img_per_s") else None)  # seconds
  hours = lambda seconds: None if seconds is None else round(seconds / 3600, 2)
  looping, run = training(loop), paper_run()
  out = {"epochs": PAPER_EPOCHS, "images_per_epoch": IMAGENET_TRAIN_SIZE, **run,
         "hours_at_step_speed": hours(training(step)), "hours_at_loop_speed": hours(looping),
         "evaluation_hours": None, "checkpoint_hours": None, "hours_end_to_end": None}
  if not looping:
    return out
  evaluating = saving = 0.0
  untimed = []
  if "eval_img_per_s" in loop:
    passes = (run["evaluations"] - 1) + 10  # the last evaluation's ten crops
    starts = 2 if loop.get("workers", 0) > 0 else run["evaluations"]
    rate = min(loop["eval_img_per_s"], loop["img_per_s"])
    evaluating = starts * loop["eval_input_start_seconds"] + passes * IMAGENET_VAL_SIZE / rate
    out["evaluation_hours"] = hours(evaluating)
  else:
    untimed.append("its evaluations")
  if "checkpoint_seconds_per_save" in loop:
    saving = run["checkpoints"] * loop["checkpoint_seconds_per_save"]
    out["checkpoint_hours"] = hours(saving)
  else:
    untimed.append("its checkpoint saves")
  out.update(hours_end_to_end=hours(looping + evaluating + saving), untimed=untimed)
  return out


def _find(report: dict, phase: str, **match) -> dict | None:
  for record in report["phases"].get(phase, {}).get("records", []):
    if all(str(record.get(k, "")).startswith(str(v)) if k == "framework" else record.get(k) == v
           for k, v in match.items()):
      return record
  return None


def goals(report: dict) -> list[dict]:
  """The GPU-only goals, as far as this report measures them."""
  batch = report["loop_batch"]
  step = _find(report, "step", framework="jax", dtype="bfloat16", batch=batch)
  torch = _find(report, "step", framework="torch", dtype="bfloat16", batch=batch)
  compiled = [r for r in report["phases"].get("step", {}).get("records", [])
              if r.get("framework", "").endswith("compile") and r.get("dtype") == "bfloat16"
              and r.get("batch") == batch]
  loop = _find(report, "input", bench="end2end", model="alexnet", batch=batch)
  big = _find(report, "input", bench="end2end", model="alexnet", decoder="nvimgcodec",
              decoded_on="device", batch=report["loop_big_batch"])
  on_gpu = [r for r in report["phases"].get("input", {}).get("decode", [])
            if r["way"].startswith("nvImageCodec in the training process")
            and r.get("device", "cpu") != "cpu"]
  grey = on_gpu[0]["max_abs_diff"] if on_gpu else None
  projected = projection(report)
  hours = projected["hours_end_to_end"]
  train = report["phases"].get("train", {})
  last = (train.get("accuracy_by_epoch") or [None])[-1]
  speedup = compiled[0]["jax_speedup"] if compiled else None
  finished = bool(last) and last["epoch"] >= FULL_FASHION_EPOCHS - 0.5
  dispatch = loop.get("host_ms_per_step", {}).get("dispatch") if loop else None
  crossing = loop.get("transfer_gb_per_s") if loop else None
  fraction = (loop.get("of_step") if loop and "of_step" in loop  # timed in its process
              else round(loop["img_per_s"] / step["img_per_s"], 3) if loop and step else None)
  return [
      {"goal": f"the step >= 2x torch.compile (bf16, batch {batch})", "measured": speedup,
       "met": None if speedup is None else speedup >= 2.0,
       **({} if torch else {"note": "no PyTorch with a GPU here"})},
      {"goal": f"the loop from the store >= 90 % of the step (bf16, batch {batch})",
       "measured": fraction, "met": None if fraction is None else fraction >= 0.9},
      {"goal": f"the loop with nvimgcodec >= {NVIMGCODEC_IMG_PER_S:,} img/s (bf16, batch "
               f"{report['loop_big_batch']})",
       "measured": big and big["img_per_s"],
       "met": None if big is None else big["img_per_s"] >= NVIMGCODEC_IMG_PER_S},
      {"goal": "nvImageCodec on the GPU within 1 grey level of the default decoder",
       "measured": grey, "met": None if grey is None else grey <= 1},
      {"goal": f"{PAPER_EPOCHS} ImageNet epochs end to end (the loop's training, "
               f"evaluations and checkpoint saves) <= {PROJECTED_HOURS:g} h",
       "measured": hours, "met": None if hours is None else hours <= PROJECTED_HOURS,
       **({"note": f"not timed, left out: {' and '.join(projected['untimed'])}"}
          if projected.get("untimed") else {})},
      {"goal": f"the full network's training loss below {LEAVES_CHANCE:g} ln 10 by the end "
               "of its first epoch on Fashion-MNIST",
       "measured": train.get("loss_at_epoch_1"),
       "met": None if train.get("loss_at_epoch_1") is None else
       train["loss_at_epoch_1"] < LEAVES_CHANCE * math.log(10)},
      {"goal": f"the full network >= {FULL_FASHION_ACCURACY:g} % on Fashion-MNIST after its "
               "30 epochs",
       "measured": last and last["accuracy"],
       "met": last["accuracy"] >= FULL_FASHION_ACCURACY if finished else None,
       **({} if finished or not last else
          {"note": f"the run ended at epoch {last['epoch']}"})},
      {"goal": f"the loop's main thread dispatches a step in <= {DISPATCH_MS:g} ms (bf16, batch "
               f"{batch})", "measured": dispatch,
       "met": None if dispatch is None else dispatch <= DISPATCH_MS},
      {"goal": f"the training batches cross to the device at >= {TRANSFER_GB_PER_S:g} GB/s "
               f"(bf16, batch {batch})", "measured": crossing,
       "met": None if crossing is None else crossing >= TRANSFER_GB_PER_S}]


# ----------------------------------------------------------------------------- the files

def device_name() -> str:
  """The GPU's name, driver and memory as nvidia-smi reports them."""
  if shutil.which("nvidia-smi"):
    answer = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                             "--format=csv,noheader"], capture_output=True, text=True)
    if answer.returncode == 0 and answer.stdout.strip():
      return answer.stdout.strip().splitlines()[0]
  return "no NVIDIA GPU (nvidia-smi absent); jax's devices: see the step records"


def write(report: dict, out: str) -> None:
  """report.json and report.md in `out`, replaced whole (a reader never sees half of one)."""
  for name, text in (("report.json", json.dumps(report, indent=1)),
                     ("report.md", markdown(report))):
    with workdir_lib.output_file(os.path.join(out, name)) as f:
      f.write(text)


def _table(records: list[dict], keys: tuple[str, ...]) -> list[str]:
  rows = [r for r in records if any(k in r for k in keys)]
  if not rows:
    return []
  lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
  return lines + ["| " + " | ".join(str(r.get(k, "")) for k in keys) + " |" for r in rows]


def markdown(report: dict) -> str:
  phases = report["phases"]
  lines = [f"# GPU node check, {report['started']}", "",
           f"Device: {report['device']}. Host: {report['host']}, {report['cpus']} CPU cores. "
           f"Time box: {report['minutes']} min{' (smoke mode)' if report['smoke'] else ''}.", "",
           "Versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()), ""]
  for name, title in (("step", "(a) The training step"), ("input", "(b) The store and the loop"),
                      ("train", "(c) The full network on Fashion-MNIST"),
                      ("projection", "(d) 90 epochs")):
    if name not in phases:
      lines += [f"## {title}", "", "not run (the time box ended first)", ""]
      continue
    phase = phases[name]
    lines += [f"## {title}", ""]
    if "commands" in phase:
      lines += [f"{phase['seconds']} s. Commands:", "", "```", *phase["commands"], "```", ""]
    records = phase.get("records", [])
    if name == "step":
      lines += _table(records, ("framework", "device", "dtype", "batch", "img_per_s",
                                "ms_per_step", "fraction_of_peak", "jax_speedup"))
      lines += [""] + _table(phase.get("levers", []), ("lever", "dtype", "batch", "img_per_s",
                                                       "shipped_img_per_s", "speedup", "error"))
    if name == "input":
      lines += [f"Images: {phase.get('images')}", "", f"Prepare: {phase.get('prepare')}", ""]
      lines += _table(records, ("model", "source", "decoder", "decoded_on", "workers",
                                "transfer", "batch",
                                "img_per_s", "of_step", "transfer_gb_per_s",
                                "input_wait_fraction", "host_ms_per_step", "eval_img_per_s"))
      lines += [""] + _table(phase.get("transfer", []), ("way", "batch", "mb_per_batch",
                                                         "gb_per_s", "cpu_ms_per_batch"))
      lines += [""] + _table(phase.get("decode", []), ("way", "batch", "img_per_s",
                                                       "cpu_ms_per_batch", "max_abs_diff",
                                                       "differing_fraction", "left_to_host"))
    if name in ("train", "projection"):
      lines += ["```", json.dumps({k: v for k, v in phase.items() if k not in
                                   ("commands", "records", "errors")}, indent=1), "```"]
    lines += [f"- error: {e}" for e in phase.get("errors", [])] + [""]
  lines += ["## Goals", "", "| goal | measured | met |", "|---|---|---|"]
  lines += [f"| {g['goal']} | {g['measured']} | "
            f"{g['met']}{'; ' + g['note'] if 'note' in g else ''} |"
            for g in report.get("goals", [])]
  return "\n".join(lines) + "\n"
