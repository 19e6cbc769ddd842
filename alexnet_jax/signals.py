"""SIGTERM and SIGINT as a request to stop: the training loop finishes its step, saves and exits
cleanly (a preempted SLURM job, Ctrl-C), instead of dying mid-write."""

from __future__ import annotations

import signal
from typing import Callable

from absl import logging


class StopRequest:
  """While entered, SIGTERM/SIGINT set `signal` (the signal's name) instead of ending the
  process, and say so at once (an evaluation of several processes runs to its end first); a
  second SIGINT raises KeyboardInterrupt. Leaving restores the previous handlers.
  `stop_at(step)`: whether the loop stops after `step`.

  Several processes must stop after the same step (a process saving while another runs the
  next step waits for it forever): given `agree` (step -> whether every process stops after
  it: `distributed.stop_agreed`), SIGTERM is left to the service behind it, which passes a
  notice any process receives to all, and SIGINT is handed to it as a SIGTERM."""

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self, agree: Callable[[int], bool] | None = None):
    self.signal = None
    self._agree = agree
    self._previous = {}

  def __enter__(self) -> "StopRequest":
    for sig in self.SIGNALS if self._agree is None else (signal.SIGINT,):
      self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def __exit__(self, *exc) -> None:
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    self._previous = {}

  def stop_at(self, step: int) -> bool:
    if self._agree is None:
      return self.signal is not None
    if not self._agree(step):
      return False
    self.signal = self.signal or "SIGTERM (to one of the processes)"
    return True

  def _handle(self, signum, frame) -> None:
    del frame
    if signum == signal.SIGINT and self.signal == "SIGINT":
      raise KeyboardInterrupt  # Ctrl-C twice: now, without the save
    self.signal = signal.Signals(signum).name
    logging.warning("%s received: the run stops at the end of a step and saves it%s", self.signal,
                    " (Ctrl-C again stops at once, without saving)" if signum == signal.SIGINT
                    else "")
    if self._agree is not None:
      signal.raise_signal(signal.SIGTERM)
