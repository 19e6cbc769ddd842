"""The workdir as a place (`workdir.py`): every path checked before anything compiles, and the
lock that gives a workdir to one run at a time."""

import json
import os
import subprocess
import sys
import time

import pytest
from absl import logging as absl_logging

from alexnet_jax import train, workdir as workdir_lib
from alexnet_jax.errors import UserError
from conftest import small_config


def test_a_second_run_on_a_locked_workdir_is_refused_and_a_stale_lock_taken_over(
    tmp_path, caplog):
  workdir = workdir_lib.prepare(str(tmp_path / "run"))
  with workdir_lib.Lock(workdir):
    with pytest.raises(UserError, match=rf"in use by pid {os.getpid()} on host \S+ \(since"):
      train.train_and_evaluate(small_config(epochs=0.5), workdir)
  # A holder that died (kill -9 leaves its lock file, the kernel drops the lock itself).
  with open(os.path.join(workdir, workdir_lib.LOCK), "w") as f:
    json.dump({"pid": 999999, "host": "gone-host", "since": "yesterday"}, f)
  with caplog.at_level("WARNING"):
    absl_logging.use_python_logging()
    train.train_and_evaluate(small_config(epochs=0.5), workdir)
  assert any("taking over the workdir lock left by pid 999999 on host gone-host" in
             r.getMessage() for r in caplog.records)
  with open(os.path.join(workdir, workdir_lib.LOCK)) as f:
    assert f.read() == ""  # released at the end


def test_a_lock_held_by_another_process_names_it(tmp_path):
  workdir = workdir_lib.prepare(str(tmp_path / "run"))
  code = ("import sys, time; from alexnet_jax import workdir as w; w.Lock(sys.argv[1]).acquire();"
          " print('held', flush=True); time.sleep(60)")
  proc = subprocess.Popen([sys.executable, "-c", code, workdir], stdout=subprocess.PIPE,
                          text=True)
  try:
    assert proc.stdout.readline().strip() == "held"
    with pytest.raises(UserError, match=rf"in use by pid {proc.pid} on host"):
      workdir_lib.Lock(workdir).acquire()
  finally:
    proc.kill()
    proc.wait()
  workdir_lib.Lock(workdir).acquire()  # its holder is gone: free again


@pytest.mark.parametrize("make,workdir,message", [
    (lambda d: None, "", "--workdir is empty"),
    (lambda d: None, "  ", "--workdir is empty"),
    (lambda d: (d / "file").write_text("not a directory"), "file/run", "cannot create workdir"),
    (lambda d: (d / "file").write_text("not a directory"), "file", "is a file, not a directory"),
    (lambda d: ((d / "run").mkdir(), (d / "run" / "checkpoints").write_text("x")), "run",
     "checkpoints is in the way: training writes a directory there"),
    (lambda d: (d / "run" / "metrics.jsonl").mkdir(parents=True), "run",
     "metrics.jsonl is in the way: training writes a file there"),
])
def test_an_unusable_workdir_is_one_line_before_anything_compiles(tmp_path, monkeypatch, make,
                                                                  workdir, message):
  monkeypatch.chdir(tmp_path)
  make(tmp_path)
  before = sorted(os.listdir(tmp_path))
  start = time.monotonic()
  with pytest.raises(UserError, match=message):
    train.train_and_evaluate(small_config(), workdir)
  print(f"refused after {time.monotonic() - start:.1f} s")  # the old code hung 300 s at a save
  assert sorted(os.listdir(tmp_path)) == before


def test_an_output_file_is_written_whole_or_not_at_all(tmp_path):
  path = str(tmp_path / "out.json")
  with workdir_lib.output_file(path) as f:
    f.write("{}")
  assert open(path).read() == "{}" and os.listdir(tmp_path) == ["out.json"]
  with pytest.raises(UserError, match=r"cannot write .*out\.json \(No space left on device\)"):
    with workdir_lib.output_file(path) as f:
      f.write("[1, ")
      raise OSError(28, "No space left on device")
  assert open(path).read() == "{}" and os.listdir(tmp_path) == ["out.json"]  # the old one kept
  with pytest.raises(KeyError):  # a failure of the writer's own is its own
    with workdir_lib.output_file(str(tmp_path / "other.csv"), "wb"):
      raise KeyError("x")
  assert os.listdir(tmp_path) == ["out.json"]


def test_a_trained_workdir_holds_only_the_paths_its_owner_names(straight_run):
  """What training leaves in a workdir is what `RunDir` names (and checks before a run).
  Mutation: `curves.png` dropped from `workdir_lib.PATHS` -> red."""
  names = set(os.listdir(straight_run[0])) - {workdir_lib.LOCK}
  assert names and names <= set(workdir_lib.PATHS), names - set(workdir_lib.PATHS)
  run = workdir_lib.RunDir(straight_run[0])
  assert {run.checkpoints, run.best, run.metrics, run.stats, run.curves, run.tensorboard} == {
      os.path.join(run.root, n) for n in names}


def test_each_file_name_of_a_run_is_spelled_in_one_module():
  """Every module reaches a workdir's files through `workdir_lib.RunDir`. Mutation: metrics.py
  joining "metrics.jsonl" itself again -> red."""
  import re

  package = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                         "alexnet_jax")
  spelled = {}
  for folder, _, files in os.walk(package):
    for name in files:
      if not name.endswith(".py") or name == "workdir.py":
        continue
      text = open(os.path.join(folder, name), encoding="utf-8").read()
      for file_name in (workdir_lib.METRICS, workdir_lib.STATS, workdir_lib.CURVES,
                        workdir_lib.RESULT):
        if re.search(rf"""["']{re.escape(file_name)}["']""", text):
          spelled.setdefault(file_name, []).append(name)
  assert not spelled, spelled


def test_only_a_workdir_holding_nothing_but_its_lock_and_empty_folders_is_removed(tmp_path):
  for name, files in (("bare", []), ("saved", ["checkpoints/4/state/x"]), ("row", ["m.jsonl"])):
    run = workdir_lib.RunDir(str(tmp_path / name))
    for folder in (run.checkpoints, run.best):
      os.makedirs(folder)
    open(run.lock, "w").close()
    for path in files:
      os.makedirs(os.path.dirname(os.path.join(run.root, path)), exist_ok=True)
      open(os.path.join(run.root, path), "w").close()
    workdir_lib.remove_unused(run.root)
  assert sorted(os.listdir(tmp_path)) == ["row", "saved"]


def test_an_output_file_is_checked_before_any_work(tmp_path):
  """A tool's output path (predict's table, export's model, a figure): its extension, its
  folder, that it is not a folder; the absolute path when it can be written, in any case of
  extension. Mutations: each check's condition inverted -> red."""
  (tmp_path / "taken.png").mkdir()
  assert workdir_lib.check_output(str(tmp_path / "a.PNG"), (".png",)) == str(tmp_path / "a.PNG")
  for path, why in ((tmp_path / "a.gif", r"give a file name ending in \.png or \.jpg"),
                    (tmp_path / "none" / "a.png", "the directory .*none does not exist"),
                    (tmp_path / "taken.png", "not writable")):
    with pytest.raises(UserError, match=f"^cannot write {path}: {why}"):
      workdir_lib.check_output(str(path), (".png", ".jpg"))
