"""SIGTERM and SIGINT as a request to stop: the training loop finishes its step, saves and exits
cleanly (a preempted SLURM job, Ctrl-C), instead of dying mid-write."""

from __future__ import annotations

import signal


class StopRequest:
  """While entered, SIGTERM/SIGINT set `signal` (the signal's name) instead of ending the
  process; leaving restores the previous handlers."""

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self.signal = None
    self._previous = {}

  def __enter__(self) -> "StopRequest":
    for sig in self.SIGNALS:
      self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def __exit__(self, *exc) -> None:
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    self._previous = {}

  def _handle(self, signum, frame) -> None:
    del frame
    self.signal = signal.Signals(signum).name
