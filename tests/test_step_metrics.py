"""The step metrics' background fetch: divergence stops a run before it is saved."""

import threading

import pytest

from alexnet_jax.errors import UserError
from alexnet_jax.step_metrics import StepMetrics


def test_an_exploding_parameter_norm_or_a_nan_stops_the_run_before_it_is_saved():
  """Mutation: the running mean's 0.9 * mean + 0.1 * value miswritten -> red."""
  with StepMetrics(divergence_factor=100.0) as watch:
    for step in range(1, 5):
      watch.add(step, {"loss": 2.3, "param_norm": 10.0 + step})
    watch.fetch(last_saved=None)
    watch.add(5, {"loss": 2.2, "param_norm": 1e32})
    # the running mean of 11, 12, 13, 14 (0.9 of the mean before, 0.1 of the value): 11.561
    with pytest.raises(UserError, match=r"parameter norm exploded at step 5 \(1e\+32, more than "
                                        r"100 x its running mean 11.56\).*the last checkpoint "
                                        r"\(step 4\) "
                                        "was written before it"):
      watch.fetch(last_saved=4)
  with StepMetrics(divergence_factor=0.0) as nan:
    nan.add(1, {"loss": float("nan"), "param_norm": 1.0})
    with pytest.raises(UserError, match="loss became nan at step 1: .*no checkpoint was written"):
      nan.fetch(last_saved=None)
  with StepMetrics(divergence_factor=0.0) as calm:  # 0: finiteness only
    calm.add(1, {"loss": 1.0, "param_norm": 1.0})
    calm.add(2, {"loss": 1e9, "param_norm": 1e9})
    calm.fetch(last_saved=None)


def test_the_summary_averages_the_scalars_since_the_last_one():
  with StepMetrics() as metrics:
    for step, loss in ((1, 1.0), (2, 3.0)):
      metrics.add(step, {"loss": loss, "param_norm": 1.0, "grad_norm/fc6": float(step)})
    metrics.wait()
    assert metrics.summary() == {"loss": 2.0, "param_norm": 1.0, "grad_norm/fc6": 2.0}
    assert metrics.summary() is None


class _Lost:
  """A step's result whose fetch fails, as a device error surfaces when the host reads it."""

  def __float__(self):
    raise RuntimeError("INTERNAL: device lost")


def test_a_fetch_that_fails_is_raised_to_the_loop_not_waited_on_forever():
  """The fetch thread died with the error and the loop waited on it forever. Mutations: the
  thread's `except` dropped (the wait below never ends); the steps after a failure fetched
  -> red."""
  raised = []

  def loop(watch):
    try:
      watch.fetch(last_saved=None)
    except RuntimeError as e:
      raised.append(str(e))

  with StepMetrics() as watch:
    watch.add(1, {"loss": 2.3, "param_norm": 1.0})
    watch.add(2, {"loss": _Lost(), "param_norm": 1.0})
    watch.add(3, {"loss": 2.2, "param_norm": 1.0})  # after a failure: not fetched
    waiting = threading.Thread(target=loop, args=(watch,), daemon=True)
    waiting.start()
    waiting.join(timeout=30)
    assert not waiting.is_alive() and raised == ["INTERNAL: device lost"]
    assert watch.summary() == {"loss": 2.3, "param_norm": 1.0}


def test_the_loop_is_held_at_most_the_given_steps_ahead_of_the_fetches(monkeypatch):
  """`behind(n)` returns once no more than n added steps wait for their fetch. Mutations: `<=`
  -> `<` (one step fewer), the wait dropped -> red."""
  from alexnet_jax import step_metrics

  finished = threading.Semaphore(0)
  monkeypatch.setattr(step_metrics.jax, "device_get", lambda v: (finished.acquire(), v)[1])
  with StepMetrics() as watch:
    for step in range(1, 12):
      watch.add(step, {"loss": 1.0, "param_norm": 1.0})
    released = threading.Event()
    waiter = threading.Thread(target=lambda: (watch.behind(8), released.set()), daemon=True)
    waiter.start()
    try:
      for _ in range(2):
        finished.release()
      assert not released.wait(0.3)  # 9 of 11 still to fetch
      finished.release()
      assert released.wait(10)  # 8 to fetch
    finally:
      for _ in range(11):  # every fetch let through, whatever failed
        finished.release()
    watch.wait()
