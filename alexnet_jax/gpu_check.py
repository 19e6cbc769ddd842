"""The acceptance check of a GPU node, run by `launch/gpu_check.sh`: the training step against
PyTorch, the prepared store and the training loop reading it, a short training run of the full
network, and the time 90 ImageNet epochs (§5) would take. Each phase runs in child processes
within its share of the time box and is written to report.json and report.md as soon as it
ends: a phase cut short keeps what it finished.

  python -m alexnet_jax.gpu_check --out=DIR [--minutes=9] [--fashion_mnist=DIR] [--smoke]

--smoke runs every phase at tiny sizes on whatever jax finds (the CPU in CI), in seconds.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from absl import flags

from alexnet_jax import cli
from alexnet_jax import workdir as workdir_lib
from alexnet_jax.data.samples import IMAGENET_TRAIN_SIZE
from alexnet_jax.errors import UserError

PAPER_EPOCHS = 90
# configs/fashion_mnist_full.py's goals: its training loss out of ln 10 within the first epoch
# (below this fraction of it), and this validation accuracy (%) after its 30 epochs.
LEAVES_CHANCE = 0.9
FULL_FASHION_ACCURACY = 94.0
NVIMGCODEC_IMG_PER_S = 45_000  # the loop at the big batch with the GPU decoder
PROJECTED_HOURS = 1.2  # 90 ImageNet epochs end to end
FULL_FASHION_EPOCHS = 30  # configs/fashion_mnist_full.py's num_epochs
VERSIONS = ("jax", "jaxlib", "jax-cuda12-plugin", "jax-cuda13-plugin", "flax", "optax",
            "orbax-checkpoint", "grain", "numpy", "torch")


@dataclasses.dataclass(frozen=True)
class Sizes:
  """What each phase runs: the GPU's sizes, or the smoke test's."""
  step_config: str
  step_cases: tuple[tuple[int, str], ...]
  step_steps: int
  images: int
  classes: int  # the loop config's
  photographs: bool  # ImageNet-like crops of real photographs, or smooth synthetic images
  loop_config: str
  loop_batch: int
  loop_steps: int
  loop_big_batch: int  # the loop again at this batch, for the decoders
  train_config: str
  train_overrides: tuple[str, ...]
  shares: tuple[float, float, float]  # of the time box: step, input, train
  lever_flags: tuple[str, ...] | None = None  # `benchmark levers`'s XLA flags (None: its own)


GPU = Sizes("configs/paper.py", ((128, "bfloat16"), (512, "bfloat16"), (128, "float32"),
                                 (512, "float32")), 100,
            2500, 1000, True, "configs/paper.py", 128, 200, 512,
            "configs/fashion_mnist_full.py", ("eval.ten_crop_final=false",),
            (0.3, 0.35, 0.35))
SMOKE = Sizes("configs/tiny.py", ((4, "bfloat16"),), 2,
              48, 10, False, "configs/tiny.py", 4, 8, 8,
              "configs/fashion_mnist.py", ("num_epochs=0.02", "eval.ten_crop_final=false",
                                          "eval_every_epochs=0.02"),
              (0.4, 0.3, 0.3), ())  # no flags: `benchmark levers`'s test times one


# ----------------------------------------------------------------------------- children

def _child(argv: list[str], deadline: float, log) -> tuple[list[dict], str | None]:
  """Runs `python -m ...argv` until it ends or `deadline`: the JSON lines it printed and an
  error (its last stderr line, or 'timed out'); the child's own process group is killed at the
  deadline, workers included."""
  command = [sys.executable, "-m", *argv]
  log(" ".join(command))
  left = deadline - time.monotonic()
  if left <= 1:
    return [], "no time left in this phase's share"
  process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
  try:
    out, err = process.communicate(timeout=left)
    error = None if process.returncode == 0 else (
        (err.strip().splitlines() or [f"exit status {process.returncode}"])[-1])
  except subprocess.TimeoutExpired:
    os.killpg(process.pid, signal.SIGKILL)
    out, err = process.communicate()
    error = f"timed out after {left:.0f} s"
  records = []
  for line in out.splitlines():
    if line.startswith("{"):
      try:
        records.append(json.loads(line))
      except ValueError:
        pass
  return records, error


# ----------------------------------------------------------------------------- phases

def phase_step(sizes: Sizes, deadline: float, log) -> dict:
  """(a) The jitted training step at each batch and dtype, PyTorch beside it where it has a GPU;
  after the first case, the levers on it (`benchmark levers`)."""
  torch = importlib.util.find_spec("torch") is not None and not sizes is SMOKE
  result = {"records": [], "levers": [], "errors": []}
  for i, (batch, dtype) in enumerate(sizes.step_cases):
    step = [f"--config={sizes.step_config}", f"--batch={batch}", f"--dtype={dtype}",
            f"--steps={sizes.step_steps}"]
    records, error = _child(["alexnet_jax.benchmark", "step", *step,
                             *(["--compare_torch"] if torch else [])], deadline, log)
    result["records"] += records
    if error:
      result["errors"].append(f"batch {batch} {dtype}: {error}")
    if i == 0:
      flags = (["--xla_flags=" + f for f in sizes.lever_flags or ("",)]
               if sizes.lever_flags is not None else [])
      records, error = _child(["alexnet_jax.benchmark", "levers", *step, *flags], deadline, log)
      result["levers"] += records
      if error:
        result["errors"].append(f"levers: {error}")
  return result


def phase_input(sizes: Sizes, work: str, deadline: float, log) -> dict:
  """(b) `prepare` on generated photographs, then the training loop reading that store, and
  with a trivial step in place of the network (the loop's own ceiling)."""
  from alexnet_jax.data import samples

  root, store = os.path.join(work, "images"), os.path.join(work, "store")
  start = time.monotonic()
  photographs = sizes.photographs and importlib.util.find_spec("skimage") is not None
  make = samples.generate_imagenet_like if photographs else samples.generate_jpegs
  made = make(root, sizes.images, classes=sizes.classes) or {}
  make(root, max(sizes.images // 10, sizes.classes, sizes.loop_batch), classes=sizes.classes,
       seed=1, split="val")
  result = {"images": {"count": sizes.images, "seconds": round(time.monotonic() - start, 1),
                       "kind": "ImageNet-like crops of real photographs" if photographs else
                       "smooth synthetic images (scikit-image's photographs are not installed)"
                       if sizes.photographs else "smooth synthetic images",
                       **{k: v for k, v in made.items() if k != "photographs"}},
            "records": [], "errors": []}
  data = ["--config.data.name=image_folder", f"--config.data.data_dir={root}",
          f"--config.data.prepared_dir={store}"]
  start = time.monotonic()
  records, error = _child(["alexnet_jax.data.prepare", f"--config={sizes.loop_config}", *data],
                          deadline, log)
  if error:
    result["errors"].append(f"prepare: {error}")
    return result
  seconds = time.monotonic() - start
  result["prepare"] = {"seconds": round(seconds, 1),
                       "img_per_s": round(sizes.images * 1.1 / seconds, 1), **records[-1]}
  # In the order of what the goals need, as far as the phase's share goes: the config's
  # input (worker processes on a GPU node), nvImageCodec at the big batch (on the device), the
  # loop's ceiling (the null model), the ways of crossing to the device and of decoding,
  # reader threads in the training process, batches staged in pinned host memory,
  # nvImageCodec at the loop's batch, the ceiling at the big batch, nvImageCodec at the big
  # batch in the input workers.
  nvimgcodec = importlib.util.find_spec("nvidia.nvimgcodec") is not None
  big = f"--batch={sizes.loop_big_batch}"
  end2end = ["alexnet_jax.benchmark", "end2end", f"--config={sizes.loop_config}",
             "--source=jpeg", f"--root={root}", "--prepared", f"--store={store}",
             f"--batch={sizes.loop_batch}", "--dtype=bfloat16", f"--steps={sizes.loop_steps}"]
  transfer = ["alexnet_jax.benchmark", "transfer", f"--config={sizes.loop_config}",
              f"--batch={sizes.loop_batch}", "--seconds=2"]
  decode = ["alexnet_jax.benchmark", "decode", f"--config={sizes.loop_config}",
            f"--root={root}", f"--store={store}", f"--batch={sizes.loop_batch}", "--seconds=2"]
  commands = [end2end, *([end2end + [big, "--decoder=nvimgcodec"]] if nvimgcodec else []),
              end2end + ["--null_model"], transfer, *([decode] if nvimgcodec else []),
              end2end + ["--config.data.workers=0"], end2end + ["--config.data.transfer=pinned"],
              *([end2end + ["--decoder=nvimgcodec"]] if nvimgcodec else []),
              end2end + [big, "--null_model"],
              *([end2end + [big, "--decoder=nvimgcodec", "--config.data.decode_on=host"]]
                if nvimgcodec else [])]
  result["transfer"] = []  # the ways of crossing to the device, GB/s each
  result["decode"] = []  # the ways of decoding, img/s and grey levels from the default's
  for command in commands:
    records, error = _child(command, deadline, log)
    result["transfer" if command is transfer else "decode" if command is decode
           else "records"] += records
    if error:
      result["errors"].append(f"{' '.join(command[1:2] + command[len(end2end):])}: {error}")
  return result


def phase_train(sizes: Sizes, fashion_mnist: str, work: str, deadline: float, log) -> dict:
  """(c) `train_config` trained on Fashion-MNIST (the full network's 30 epochs on a GPU):
  accuracy by epoch, the training loss at the end of the first epoch, img/s."""
  from alexnet_jax import metrics

  workdir = os.path.join(work, "fashion_mnist")
  overrides = [f"--config.{o}" for o in (*sizes.train_overrides, f"data.data_dir={fashion_mnist}")]
  start = time.monotonic()
  _, error = _child(["alexnet_jax.main", f"--config={sizes.train_config}", f"--workdir={workdir}",
                     *overrides], deadline, log)
  result = {"config": sizes.train_config, "overrides": list(sizes.train_overrides),
            "seconds": round(time.monotonic() - start, 1), "errors": [error] if error else []}
  rows = metrics.run_rows(workdir)
  train = [r for r in rows if r["split"] == "train"]
  steady = train[1:] or train  # the first interval includes compiling
  result["img_per_s"] = (round(sum(r["img_per_s"] for r in steady) / len(steady), 1)
                         if steady else None)
  epochs_per_step = train[-1]["epoch"] / train[-1]["step"] if train else 0.0
  result["accuracy_by_epoch"] = [{"epoch": round(r["step"] * epochs_per_step, 2),
                                  "accuracy": round(100 * (1 - r["top1_error"]), 2)}
                                 for r in rows if r["split"] == "eval"]
  first = [r for r in train if r["epoch"] <= 1.0]
  result["loss_at_epoch_1"] = round(first[-1]["loss"], 4) if first else None
  return result


def projection(report: dict) -> dict:
  """(d) 90 epochs of ImageNet's 1,281,167 training images at the step's speed and at the
  loop's from the store (bf16, the loop's batch)."""
  step = _find(report, "step", framework="jax", dtype="bfloat16", batch=report["loop_batch"])
  loop = _find(report, "input", bench="end2end", model="alexnet", batch=report["loop_batch"])
  hours = lambda rate: round(PAPER_EPOCHS * IMAGENET_TRAIN_SIZE / rate / 3600, 2) if rate else None
  return {"epochs": PAPER_EPOCHS, "images_per_epoch": IMAGENET_TRAIN_SIZE,
          "hours_at_step_speed": hours(step and step["img_per_s"]),
          "hours_at_loop_speed": hours(loop and loop["img_per_s"])}


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
  hours = projection(report)["hours_at_loop_speed"]
  train = report["phases"].get("train", {})
  last = (train.get("accuracy_by_epoch") or [None])[-1]
  speedup = compiled[0]["jax_speedup"] if compiled else None
  finished = bool(last) and last["epoch"] >= FULL_FASHION_EPOCHS - 0.5
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
      {"goal": f"{PAPER_EPOCHS} ImageNet epochs at the loop's speed <= {PROJECTED_HOURS:g} h",
       "measured": hours, "met": None if hours is None else hours <= PROJECTED_HOURS},
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
          {"note": f"the run ended at epoch {last['epoch']}"})}]


# ----------------------------------------------------------------------------- the report

def _device() -> str:
  if shutil.which("nvidia-smi"):
    answer = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                             "--format=csv,noheader"], capture_output=True, text=True)
    if answer.returncode == 0 and answer.stdout.strip():
      return answer.stdout.strip().splitlines()[0]
  return "no NVIDIA GPU (nvidia-smi absent); jax's devices: see the step records"


def _versions() -> dict:
  found = {"python": platform.python_version()}
  for name in VERSIONS:
    try:
      found[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      pass
  return found


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
                                "input_wait_fraction", "host_ms_per_step"))
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
  lines += [f"| {g['goal']} | {g['measured']} | {g['met']}{'; ' + g['note'] if 'note' in g else ''} |"
            for g in report.get("goals", [])]
  return "\n".join(lines) + "\n"


def main(argv):
  del argv
  FLAGS = flags.FLAGS
  if FLAGS.minutes <= 0:
    raise UserError(f"--minutes must be positive, got {FLAGS.minutes}")
  sizes = SMOKE if FLAGS.smoke else GPU
  if not os.path.isfile(os.path.join(FLAGS.fashion_mnist, "train-images-idx3-ubyte.gz")):
    raise UserError(f"--fashion_mnist={FLAGS.fashion_mnist} holds no Fashion-MNIST "
                    "(train-images-idx3-ubyte.gz): give the folder of its four files")
  out = os.path.abspath(FLAGS.out)
  os.makedirs(out, exist_ok=True)
  work = tempfile.mkdtemp(prefix="gpu_check-")  # the photographs, the store, the run
  end = time.monotonic() + FLAGS.minutes * 60
  report = {"started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "host": platform.node(), "cpus": os.cpu_count(), "device": _device(),
            "versions": _versions(), "minutes": FLAGS.minutes, "smoke": FLAGS.smoke,
            "loop_batch": sizes.loop_batch, "loop_big_batch": sizes.loop_big_batch,
            "phases": {}}
  runs = (("step", lambda deadline, log: phase_step(sizes, deadline, log)),
          ("input", lambda deadline, log: phase_input(sizes, work, deadline, log)),
          ("train", lambda deadline, log: phase_train(sizes, FLAGS.fashion_mnist, work,
                                                      deadline, log)))
  for i, (name, run) in enumerate(runs):
    left = end - time.monotonic()
    if left <= 1:
      break
    deadline = time.monotonic() + left * sizes.shares[i] / sum(sizes.shares[i:])
    commands = []
    def log(command, commands=commands):
      commands.append(command)
      print(f"[{name}] {command}", flush=True)
    start = time.monotonic()
    try:
      phase = run(deadline, log)
    except Exception as e:  # noqa: BLE001 -- the report keeps the other phases
      phase = {"errors": [f"{type(e).__name__}: {e}"]}
    phase.update(seconds=round(time.monotonic() - start, 1), commands=commands)
    report["phases"][name] = phase
    print(f"[{name}] done in {phase['seconds']} s: "
          + ("; ".join(phase["errors"]) if phase.get("errors") else "no errors"), flush=True)
    write(report, out)
  report["phases"]["projection"] = projection(report)
  report["goals"] = goals(report)
  write(report, out)
  shutil.rmtree(work, ignore_errors=True)
  print(f"report: {os.path.join(out, 'report.md')}", flush=True)


if __name__ == "__main__":
  flags.DEFINE_string("out", None, "folder for report.json and report.md")
  flags.DEFINE_float("minutes", 9.0, "the time box, all phases together")
  flags.DEFINE_string("fashion_mnist", "/usr/share/datasets/fashion-mnist",
                      "the Fashion-MNIST files for the training run (Debian's "
                      "dataset-fashion-mnist layout)")
  flags.DEFINE_bool("smoke", False, "tiny sizes on whatever jax finds (CI's CPU): seconds")
  cli.run(main, required_flags=["out"])
