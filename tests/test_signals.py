"""`signals.StopRequest`: SIGTERM and SIGINT asked to stop the loop instead of ending the process,
the previous handlers back after (the training loop's SIGTERM runs: test_reliability)."""

import signal

import pytest

from alexnet_jax.signals import StopRequest


@pytest.fixture
def handlers():
  """Sets SIGINT's and SIGTERM's handlers for one test, then puts back those this process had
  (one started in the background by a script inherits SIGINT ignored)."""
  inherited = {s: signal.getsignal(s) for s in StopRequest.SIGNALS}

  def set_handlers(sigint, sigterm=signal.SIG_DFL):
    signal.signal(signal.SIGINT, sigint)
    signal.signal(signal.SIGTERM, sigterm)

  yield set_handlers
  for s, handler in inherited.items():
    signal.signal(s, handler)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_inside_is_a_request_and_the_handlers_come_back_after(sig, handlers):
  """Mutations: a signal left out of SIGNALS (SIGINT raised KeyboardInterrupt; SIGTERM ended the
  test process); the handlers not restored -> red."""
  handlers(signal.default_int_handler)  # as Python starts in a terminal
  with StopRequest() as stop:
    assert stop.signal is None
    signal.raise_signal(sig)
    assert stop.signal == sig.name
  assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
  assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
  if sig == signal.SIGINT:  # Ctrl-C outside a run is Python's again
    with pytest.raises(KeyboardInterrupt):
      signal.raise_signal(sig)


def test_an_ignored_sigint_is_a_request_inside_and_ignored_again_after(handlers):
  """A process a script starts in the background (launch/local_multiprocess.sh's) inherits
  SIGINT ignored: Ctrl-C on the script still stops its loop cleanly, and is ignored outside it.
  Mutations: SIGINT left out of SIGNALS (no request); the ignored handler not restored (the
  request's handler stays) -> red."""
  handlers(signal.SIG_IGN)
  with StopRequest() as stop:
    signal.raise_signal(signal.SIGINT)
    assert stop.signal == "SIGINT"
  assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
  signal.raise_signal(signal.SIGINT)  # ignored: neither KeyboardInterrupt nor the end


def test_with_an_agreement_sigterm_is_left_to_it_and_sigint_is_handed_to_it(handlers):
  """Several processes: SIGTERM stays with the service that agrees on the stop (JAX's
  preemption service, which caught it before the loop began), SIGINT is passed to it as a
  SIGTERM, and the loop stops where the agreement says. Mutations: SIGTERM taken by the
  request anyway; SIGINT not handed on; `stop_at` reading the local signal -> red."""
  notices = []
  handlers(signal.default_int_handler, lambda *_: notices.append("SIGTERM"))
  agreed = {7}
  with StopRequest(agree=lambda step: step in agreed) as stop:
    signal.raise_signal(signal.SIGTERM)
    assert notices == ["SIGTERM"] and stop.signal is None
    signal.raise_signal(signal.SIGINT)
    assert notices == ["SIGTERM", "SIGTERM"] and stop.signal == "SIGINT"
    assert not stop.stop_at(6) and stop.stop_at(7)
  with StopRequest(agree=lambda step: step in agreed) as stop:
    assert not stop.stop_at(6) and stop.stop_at(7)  # another process's notice
    assert stop.signal == "SIGTERM (to one of the processes)"
  assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_the_request_is_said_at_once_and_a_second_ctrl_c_stops_now(handlers, caplog):
  """A run in a long evaluation said nothing until its step ended, and Ctrl-C again did
  nothing. Mutations: the second SIGINT taken as the first; SIGTERM twice raising too; the
  line not logged -> red."""
  from absl import logging as absl_logging

  handlers(signal.default_int_handler)
  with caplog.at_level("WARNING"):
    absl_logging.use_python_logging()
    with StopRequest() as stop:
      signal.raise_signal(signal.SIGTERM)
      signal.raise_signal(signal.SIGTERM)  # a scheduler's repeated notice: still a request
      assert stop.signal == "SIGTERM"
    with StopRequest() as stop:
      signal.raise_signal(signal.SIGINT)
      with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)
  said = [r.getMessage() for r in caplog.records]
  assert said == ["SIGTERM received: the run stops at the end of a step and saves it"] * 2 + [
      "SIGINT received: the run stops at the end of a step and saves it (Ctrl-C again stops at "
      "once, without saving)"]
