"""A `jax.profiler` trace of a window of training steps (`profiling`): which steps it holds,
the loop's parts annotated in it, and a profile that cannot be taken never stopping a run."""

import collections
import glob
import logging
import os
import shutil

import jax
import jax.numpy as jnp
import ml_collections

from alexnet_jax import profiling, train
from conftest import sigterm_at_step, small_config

PARTS = ("input_wait", "dispatch", "device_wait", "metrics", "checkpoint", "host_batch",
         "transfer")


def traces(workdir) -> list[dict]:
  """Each profile written into the workdir's TensorBoard folder, the oldest first: the steps
  its 'train' annotations number, how often each of the loop's parts was annotated, and
  whether it holds Python function calls."""
  found = []
  for folder in sorted(glob.glob(os.path.join(workdir, "tensorboard", "plugins", "profile", "*")),
                       key=os.path.getmtime):
    events = [e for e in profiling.read(folder) if e.get("ph") == "X"]
    found.append({
        "steps": sorted(int(e["args"]["step_num"]) for e in events if e["name"] == "train"),
        "parts": collections.Counter(e["name"] for e in events if e["name"] in PARTS),
        "python": any(e["name"].startswith("$") for e in events)})
  return found


def test_the_trace_holds_its_window_of_steps_counted_from_the_runs_start(tmp_path, caplog):
  """Steps 2-3 of a 4-step run (1 skipped). Then a resume to step 8 whose window of 10 after 1
  skipped is cut at the run's end (6-8), stopped by SIGTERM at step 7: it saves step 7 and
  its trace holds steps 6-7. Each traced step has its input wait and dispatch, the prefetch
  thread's host batch and transfer appear, the checkpoint of step 2 too; Python's calls only
  when asked (the resume). Mutations: the first step one early, or counted from step 0
  rather than from the resumed run's start; the window not cut at the run's end (it says
  6-15); Python traced always, or never; `Progress.timing` without its annotation; either of
  the prefetch thread's annotations renamed; `StepTrace` not closed when the loop ends (no
  second trace; jax's profiler left running) -> red."""
  workdir = str(tmp_path / "run")
  config = small_config(epochs=1.0)
  config.profile.update(dict(steps=2, skip_steps=1))
  with caplog.at_level(logging.INFO):
    train.train_and_evaluate(config, workdir)
  config.num_epochs = 2.0
  config.profile.update(dict(steps=10, skip_steps=1, python=True))
  with sigterm_at_step(7), caplog.at_level(logging.INFO):
    result = train.train_and_evaluate(config, workdir)
  assert result.step == 7 and not result.complete

  first, resumed = traces(workdir)
  assert first["steps"] == [2, 3] and resumed["steps"] == [6, 7]
  assert first["parts"]["input_wait"] == first["parts"]["dispatch"] == 2
  assert resumed["parts"]["dispatch"] == 2
  assert first["parts"]["checkpoint"] == 1 and first["parts"]["transfer"] >= 1
  assert first["parts"]["host_batch"] >= 1
  assert not first["python"] and resumed["python"]
  assert "profile of steps 2-3 written to" in caplog.text
  assert "profiling steps 6-8" in caplog.text and "profile of steps 6-7 written to" in caplog.text


def test_a_profile_that_cannot_be_taken_or_written_is_a_warning(tmp_path, caplog):
  """Another trace running, then a trace folder that cannot be made: a warning each, and the
  steps go on. Mutation: either `except` dropped -> red."""
  profile = ml_collections.ConfigDict(dict(steps=1, skip_steps=0, python=False))
  state = jnp.zeros(())
  jax.profiler.start_trace(str(tmp_path / "other"))
  try:
    with profiling.StepTrace(str(tmp_path / "tb"), profile, 0, 5) as trace:
      trace.begin(1)
      trace.end(1, state)
  finally:
    jax.profiler.stop_trace()
  assert "profile of steps 1-1 not taken: Profile has already been started" in caplog.text

  (tmp_path / "file").write_text("")
  with profiling.StepTrace(str(tmp_path / "file" / "tb"), profile, 0, 5) as trace:
    trace.begin(1)
    trace.end(1, state)
  assert "the profile of steps 1-1 could not be written to" in caplog.text
  assert "is not a directory" in caplog.text
  shutil.rmtree(tmp_path / "other")


def test_each_process_traces_into_a_folder_of_its_own():
  """Processes on one host would write the same file names into one folder."""
  assert profiling.trace_dir("run/tensorboard", 0) == "run/tensorboard"
  assert profiling.trace_dir("run/tensorboard", 3) == os.path.join("run/tensorboard",
                                                                    "process_3")


def test_the_host_time_per_step_of_each_part_is_summed_over_the_traced_steps():
  """`gpu_check`'s figures from a trace: two steps of 1 and 3 ms, two dispatches of 0.1 ms, one
  transfer of 0.5 ms (the prefetch thread's, whenever it ran) -> per step 2, 0.1 and 0.25 ms;
  a part never annotated is 0; metadata and instant events are not time. Mutations: divided by
  the part's own count, or by the events' -> red."""
  x = lambda name, dur: {"ph": "X", "name": name, "dur": dur, "pid": 1, "tid": 1, "ts": 0}
  events = [{"ph": "M", "name": "process_name", "pid": 1, "args": {"name": "/host:CPU"}},
            x("train", 1000.0), x("dispatch", 100.0), x("train", 3000.0), x("dispatch", 100.0),
            x("transfer", 500.0), {"ph": "i", "name": "dispatch", "pid": 1, "ts": 5}]
  assert profiling.ms_per_step(events, ("dispatch", "transfer", "metrics")) == {
      "steps": 2, "step_ms": 2.0, "host_ms": {"dispatch": 0.1, "transfer": 0.25, "metrics": 0.0}}
  assert profiling.ms_per_step(events[:1], ("dispatch",)) == {"steps": 0}
