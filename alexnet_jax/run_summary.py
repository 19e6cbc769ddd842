"""The closing summary of a run: what it reached, where its results are, what to run next."""

from __future__ import annotations

import os
import shlex
import shutil
import sys

from alexnet_jax import workdir as workdir_lib
from alexnet_jax.metrics import EVALUATIONS


def python_command() -> str:
  """How to start this interpreter from a shell: `python` where that is it (an activated
  virtualenv), else its path (the commands then work without activating anything)."""
  found = shutil.which("python")
  if found and os.path.realpath(found) == os.path.realpath(sys.executable):
    return "python"
  return sys.executable


def duration(seconds: float) -> str:
  """`seconds` in the unit a person reads it in: s below 2 minutes, min below 2 hours, else h."""
  if seconds < 120:
    return f"{seconds:.1f} s"
  return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.2f} h"


def closing_summary(workdir: str, *, evaluation: dict, step: int, total_steps: int,
                    stopped_by: str | None, best_step: int | None,
                    during_evaluation: bool = False,
                    timed: dict | None = None) -> str:
  """The lines printed when a run ends (the first one included): accuracy in % (centre crop
  and ten crops), the best step and its path, the run's files, and the next commands; a run
  stopped by a signal says how to resume it (`during_evaluation`: stopped during the step's
  evaluation, which the resume runs first). `timed`: the time this process's loop took
  (`train.RunResult.timing`): in all, evaluating, and saving its checkpoints."""
  run = workdir_lib.RunDir(workdir)
  lines = ["", f"=== {workdir} ==="]
  if stopped_by and during_evaluation:
    lines.append(f"stopped by {stopped_by} at step {step} of {total_steps}, during its "
                 f"evaluation; step {step} is saved without it: run the same command to "
                 "evaluate it and resume")
  elif stopped_by:
    lines.append(f"stopped by {stopped_by} at step {step} of {total_steps}; step {step} is "
                 "saved: run the same command to resume")
  else:
    lines.append(f"trained to step {step} of {total_steps}")
  if timed:
    saves = timed["checkpoints"]
    lines.append(f"time: {duration(timed['loop_seconds'])} in this process's training loop, "
                 f"{duration(timed['evaluation_seconds'])} of it evaluating, "
                 f"{duration(timed['checkpoint_seconds'])} saving {saves} "
                 f"checkpoint{'' if saves == 1 else 's'}")
  for split, said in EVALUATIONS.items():
    r = evaluation.get(split)
    if r:
      lines.append(f"validation accuracy, {said}: top-1 {100 * (1 - r['top1_error']):.2f} %, "
                   f"top-5 {100 * (1 - r['top5_error']):.2f} %"
                   + (f" ({r['skipped_images']} unreadable images left out)"
                      if r.get("skipped_images") else ""))
  if best_step is not None:
    lines.append(f"best checkpoint (lowest validation top-1 error): step {best_step}, "
                 f"{run.step_dir(best_step, best=True)}")
  lines.append(f"metrics: {run.metrics}; curves: {run.curves}")
  tensorboard = shutil.which("tensorboard")
  lines.append(f"TensorBoard: {shlex.quote(tensorboard or 'tensorboard')} --logdir "
               f"{shlex.quote(run.tensorboard)}" + (
                   "" if tensorboard else " (pip install 'alexnet_jax[tensorboard]' first)"))
  if not stopped_by:  # commands to paste into a shell: paths with spaces or quotes quoted
    python, given = shlex.quote(python_command()), shlex.quote(f"--workdir={workdir}")
    lines += ["next:",
              f"  {python} -m alexnet_jax.predict {given} --best IMAGE...",
              f"  {python} -m alexnet_jax.evaluate {given} --best --ten_crop",
              f"  {python} -m alexnet_jax.features {given} --split=train "
              "--output=train_fc7.npz",
              f"  {python} -m alexnet_jax.export {given} --best --format=onnx "
              "--output=alexnet.onnx"]
  return "\n".join(lines)
