"""`signals.StopRequest`: SIGTERM and SIGINT asked to stop the loop instead of ending the process,
the previous handlers back after (the training loop's SIGTERM runs: test_reliability)."""

import signal

import pytest

from alexnet_jax.signals import StopRequest


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_inside_is_a_request_and_the_handlers_come_back_after(sig):
  """Mutations: a signal left out of SIGNALS (SIGINT raised KeyboardInterrupt; SIGTERM ended the
  test process); the handlers not restored -> red."""
  before = {s: signal.getsignal(s) for s in StopRequest.SIGNALS}
  with StopRequest() as stop:
    assert stop.signal is None
    signal.raise_signal(sig)
    assert stop.signal == sig.name
  assert {s: signal.getsignal(s) for s in StopRequest.SIGNALS} == before
  if sig == signal.SIGINT:  # Ctrl-C outside a run is Python's again
    with pytest.raises(KeyboardInterrupt):
      signal.raise_signal(sig)
