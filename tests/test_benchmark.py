"""What every benchmark shares (`benchmark/__init__.py`): its records, a child's output, the
timing loop and the CPU time it counts."""

import multiprocessing
import time

import pytest

from alexnet_jax import benchmark


def test_a_childs_records_are_its_json_lines_and_its_error_the_last_line_it_said():
  """Mutations: a line that does not parse kept (a crash); the error given on success; the
  exit status not said when the child printed nothing -> red."""
  out = 'compiling\n{"img_per_s": 10}\n{"cut off\n{"img_per_s": 20}\n'
  assert benchmark.child_output(out, "warning: slow\n", 0) == (
      [{"img_per_s": 10}, {"img_per_s": 20}], None)
  assert benchmark.child_output(out, "Traceback\n  ...\nMemoryError: out of memory\n\n", 1) == (
      [{"img_per_s": 10}, {"img_per_s": 20}], "MemoryError: out of memory")
  assert benchmark.child_output("", "  \n", -9) == ([], "exit status -9")


def test_figures_have_three_significant_digits():
  assert [benchmark.figure(v) for v in (36299.4, 0.012345, 7.0)] == [36300.0, 0.0123, 7.0]


def test_the_timing_loop_counts_only_the_calls_after_the_warm_ones():
  """Mutation: the warm calls counted -> red."""
  calls = []
  wall, _, n = benchmark.timed(lambda: calls.append(1), seconds=0.05, warm=2)
  assert n >= 1 and len(calls) == n + 2 and wall >= 0.05
  assert benchmark.timed(lambda: calls.append(1), seconds=0.0, warm=3)[2] == 0


def _burn(done):
  """One CPU-second, however loaded the machine: about 0.65 s in user space, then the rest in
  the kernel (reading /dev/zero). Reading the clock alone spent most of it in the kernel on
  some machines (a system call each), so that user and system time could not be told apart."""
  while time.process_time() < 0.65:
    sum(range(100_000))
  with open("/dev/zero", "rb", buffering=0) as zero:
    while time.process_time() < 1.0:
      zero.read(1 << 20)
  done.set()
  time.sleep(60)


def test_cpu_time_counts_the_live_worker_processes():
  """A worker's CPU-second is counted by the process that started it while the worker lives.
  Mutations: the workers left out; their user or system time alone, or either counted twice
  -> red."""
  context = multiprocessing.get_context("spawn")
  done = context.Event()
  worker = context.Process(target=_burn, args=(done,), daemon=True)
  before = benchmark.cpu_seconds()
  worker.start()
  try:
    assert done.wait(timeout=120)
    spent = benchmark.cpu_seconds() - before
  finally:
    worker.kill()
    worker.join()
  assert spent == pytest.approx(1.0, abs=0.15)
