"""The acceptance check of a GPU node, run by `launch/gpu_check.sh`: the training step against
PyTorch, the prepared store and the training loop reading it, a short training run of the full
network, and the time 90 ImageNet epochs (§5) would take. Each phase runs in child processes
within its share of the time box and is written to report.json and report.md as soon as it
ends: a phase cut short keeps what it finished. The goals and the files: `node_report`.

  python -m alexnet_jax.gpu_check --out=DIR [--minutes=9] [--fashion_mnist=DIR] [--smoke]

--smoke runs every phase at tiny sizes on whatever jax finds (the CPU in CI), in seconds.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.util
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from absl import flags

from alexnet_jax import cli, environment, node_report, prefetch, profiling
from alexnet_jax import workdir as workdir_lib
from alexnet_jax.benchmark import child_output
from alexnet_jax.benchmark.step import top_device_ops
from alexnet_jax.errors import UserError
from alexnet_jax.progress import Progress


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
  way_seconds: float = 2.0  # `benchmark transfer` and `decode`: each way timed this long


GPU = Sizes("configs/paper.py", ((128, "bfloat16"), (512, "bfloat16"), (128, "float32"),
                                 (512, "float32")), 100,
            2500, 1000, True, "configs/paper.py", 128, 200, 512,
            "configs/fashion_mnist_full.py", ("eval.ten_crop_final=false", "profile.steps=20"),
            (0.3, 0.35, 0.35))
SMOKE = Sizes("configs/tiny.py", ((4, "bfloat16"),), 2,
              48, 10, False, "configs/tiny.py", 4, 8, 8,
              "configs/fashion_mnist.py", ("num_epochs=0.02", "eval.ten_crop_final=false",
                                          "profile.steps=2", "profile.skip_steps=1"),
              (0.4, 0.3, 0.3), (), 0.2)  # no flags: `benchmark levers`'s test times one


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
    return child_output(*process.communicate(timeout=left), process.returncode)
  except subprocess.TimeoutExpired:
    os.killpg(process.pid, signal.SIGKILL)
    return child_output(process.communicate()[0], "", 0)[0], f"timed out after {left:.0f} s"


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
  # batch in the input workers. The one-thread Pillow yardstick is timed in the first only.
  nvimgcodec = importlib.util.find_spec("nvidia.nvimgcodec") is not None
  big = f"--batch={sizes.loop_big_batch}"
  end2end = ["alexnet_jax.benchmark", "end2end", f"--config={sizes.loop_config}",
             "--source=jpeg", f"--root={root}", "--prepared", f"--store={store}",
             f"--batch={sizes.loop_batch}", "--dtype=bfloat16", f"--steps={sizes.loop_steps}"]
  transfer = ["alexnet_jax.benchmark", "transfer", f"--config={sizes.loop_config}",
              f"--batch={sizes.loop_batch}", f"--seconds={sizes.way_seconds}"]
  decode = ["alexnet_jax.benchmark", "decode", f"--config={sizes.loop_config}",
            f"--root={root}", f"--store={store}", f"--batch={sizes.loop_batch}",
            f"--seconds={sizes.way_seconds}"]
  loop = lambda *variant: end2end + [*variant, "--pillow_seconds=0"]
  commands = [end2end, *([loop(big, "--decoder=nvimgcodec")] if nvimgcodec else []),
              loop("--null_model"), transfer, *([decode] if nvimgcodec else []),
              loop("--config.data.workers=0"), loop("--config.data.transfer=pinned"),
              *([loop("--decoder=nvimgcodec")] if nvimgcodec else []),
              loop(big, "--null_model"),
              *([loop(big, "--decoder=nvimgcodec", "--config.data.decode_on=host")]
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
  accuracy by epoch, the training loss at the end of the first epoch, img/s, the seconds its
  evaluations took, and the profile of a few of its steps (`profile.steps` in
  `train_overrides`)."""
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
  result["evaluation_seconds"] = round(sum(r.get("seconds", 0.0) for r in rows
                                           if r["split"] == "eval"), 1)  # one row a pass
  first = [r for r in train if r["epoch"] <= 1.0]
  result["loss_at_epoch_1"] = round(first[-1]["loss"], 4) if first else None
  result["profile"] = _profile(workdir)
  return result


def _profile(workdir: str) -> dict | None:
  """The run's profile: the host's ms per traced step by part and the device's top ops (None
  when the run wrote none, or not whole)."""
  try:
    events = profiling.read(profiling.newest(workdir_lib.RunDir(workdir).tensorboard))
  except (OSError, EOFError, ValueError, KeyError):
    return None
  summary = profiling.ms_per_step(events, Progress.PARTS + prefetch.PARTS)
  summary["device_ops"] = top_device_ops(events, max(summary["steps"], 1), top=10)
  return summary


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
            "host": platform.node(), "cpus": os.cpu_count(), "device": node_report.device_name(),
            "versions": environment.versions(environment.PACKAGES + ("torch",)),
            "minutes": FLAGS.minutes, "smoke": FLAGS.smoke,
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
    node_report.write(report, out)
  report["phases"]["projection"] = node_report.projection(report)
  report["goals"] = node_report.goals(report)
  node_report.write(report, out)
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
