"""Starting worker processes from a user's script: Python's spawn (what grain's workers and
`prepare`'s pool use) starts each process by running the main script (or the module run with
`-m`) again, so a script that trains at its top level, outside `if __name__ == "__main__":`,
would start its training again in every worker. The worker then dies before reading its task;
with a task of more than a pipe's 64 KiB (a dataset held in memory, a long list of image
files) the process that started it waits on that pipe forever.

`check_can_spawn`, in the process that starts workers, starts one small probe process first
and turns its failure into one line; `stop_if_spawning`, at the top of each Python entry that
starts workers, ends such a re-run at once and quietly, with a status the probe recognises.
`map_unordered` runs tasks in spawned processes (`prepare`'s), and a process killed meanwhile
is one line (`ended`: what a worker's exit status says), where `multiprocessing.Pool` would
wait forever for the task it held.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import signal
import sys
from typing import Callable, Iterator

from alexnet_jax.errors import UserError

_RERAN = 3  # the status of a process whose start re-ran a script that trains at its top level
_PROBE_S = 300.0
_CHECKED: set[str] = set()


def stop_if_spawning() -> None:
  """Ends this process (status `_RERAN`) while it is being started by spawn: its main script
  is running again and has reached training or preparation, which a worker must not start."""
  if getattr(multiprocessing.current_process(), "_inheriting", False):
    sys.exit(_RERAN)


def _reruns() -> tuple[str, bool] | None:
  """What spawn runs again in each new process, and whether it is a script's path (else a
  module run with `-m`); None where it runs nothing (an interactive session or `python -c`, a
  package's `__main__`) or one of this project's commands (each starts under the guard)."""
  main = sys.modules.get("__main__")
  name = getattr(getattr(main, "__spec__", None), "name", None)
  if name is not None:
    if name.endswith("__main__") or name.split(".")[0] == "alexnet_jax":
      return None
    return name, False
  path = getattr(main, "__file__", None)
  return None if path is None else (path, True)


def _probe() -> None:
  """The probe process's work: none (its start is the test)."""


def check_can_spawn(without: str) -> None:
  """Before the first worker process of this process: a probe started the same way, once per
  main script. A one-line `UserError` when it cannot start (`without`: the setting that does
  without worker processes): the script trains outside `if __name__ == "__main__":`, it was
  read from standard input, or its re-run failed or took longer than `_PROBE_S`."""
  reruns = _reruns()
  if reruns is None or reruns[0] in _CHECKED:
    return
  what, is_path = reruns
  fix = f"or do without worker processes ({without})"
  if is_path and not os.path.isfile(what):
    raise UserError(f"worker processes cannot start from a script read from {what}: Python "
                    f"starts each by running the main script again; save it to a file, {fix}")
  probe = multiprocessing.get_context("spawn").Process(target=_probe, daemon=True,
                                                       name="alexnet_jax-spawn-probe")
  probe.start()
  probe.join(_PROBE_S)
  timed_out = probe.exitcode is None
  if timed_out:
    probe.terminate()
    probe.join()
  if probe.exitcode == 0:
    _CHECKED.add(what)
    return
  start = f"worker processes cannot start: Python starts each by running {what} again, and"
  guard = "`if __name__ == \"__main__\":`"
  if probe.exitcode == _RERAN:
    raise UserError(f"{start} it trains (or prepares data) at its top level: put that under "
                    f"{guard}, {fix}")
  if timed_out:
    raise UserError(f"{start} that had not ended after {_PROBE_S:.0f} s in a probe process: "
                    f"put the script's work under {guard}, {fix}")
  raise UserError(f"{start} that ended with status {probe.exitcode} (its error is above): put "
                  f"the script's work under {guard}, {fix}")


def ended(code: int, who: str, when: str) -> str:
  """What the exit status `code` of the worker process `who` says, in a line (`when`: what it
  was doing, or about to)."""
  if code >= 0:
    return f"{who} exited (status {code}) {when}"
  try:
    name = signal.Signals(-code).name
  except ValueError:
    name = f"signal {-code}"
  oom = (": the kernel's out-of-memory killer sends it, if no one else did"
         if -code == signal.SIGKILL else "")
  return f"{who} was killed by {name} {when}{oom}"


def map_unordered(fn: Callable, tasks: list, workers: int, *, initializer: Callable,
                  initargs: tuple, who: str, when: str, then: str, without: str) -> Iterator:
  """`fn(task)` of each task in `workers` spawned processes (each starting with
  `initializer(*initargs)`), yielded as they finish. A process that dies meanwhile (killed by
  the out-of-memory killer, say) is a one-line `UserError` (`ended`'s line for `who` and
  `when`, then `then`) and the others are stopped; they are stopped too when the caller
  stops reading (closes the iterator) or fails. `without`: the setting that does without
  processes."""
  check_can_spawn(without=without)
  before = set(multiprocessing.active_children())
  pool = concurrent.futures.ProcessPoolExecutor(
      workers, mp_context=multiprocessing.get_context("spawn"), initializer=initializer,
      initargs=initargs)
  try:
    futures = [pool.submit(fn, task) for task in tasks]
    started = set(multiprocessing.active_children()) - before
    for future in concurrent.futures.as_completed(futures):
      try:
        result = future.result()
      except concurrent.futures.process.BrokenProcessPool:
        pool.shutdown(wait=True)  # the pool's thread has stopped the others and read each status
        raise UserError(f"{_first_ended(started, who, when)}; {then}") from None
      yield result
  finally:
    # Each process still running (one busy with a task too: the executor would let it run to
    # its end) is stopped, and the pool's thread, which waits for its processes' exits, is
    # waited for: a process waited for here as well could still seem to run (each `waitpid`
    # but the first fails) after its exit.
    for process in set(multiprocessing.active_children()) - before:
      process.terminate()
    pool.shutdown(wait=True, cancel_futures=True)


def _first_ended(processes: set, who: str, when: str) -> str:
  """The line of the process that ended first among `processes` (ended and waited for): the
  pool stops the others with SIGTERM once one has died."""
  codes = sorted((p.exitcode for p in processes if p.exitcode),
                 key=lambda code: code == -signal.SIGTERM)
  if not codes:
    return f"{who} ended abruptly {when}"
  return ended(codes[0], who, when)
