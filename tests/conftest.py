"""Test set-up: 8 CPU devices for the multi-device tests, forced before jax starts."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                             " --xla_force_host_platform_device_count=8").strip()

import pytest  # noqa: E402

from alexnet_jax import configuration, xla_flags  # noqa: E402

xla_flags.configure()  # as the entry points do, before jax starts its backends

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_config(name: str, variant: str = "", overrides=()):
  """`--config=configs/<name>.py:variant --config.<override>...`, through the one loader."""
  spec = os.path.join(ROOT, "configs", f"{name}.py") + (f":{variant}" if variant else "")
  return configuration.load(spec, overrides)


@pytest.fixture
def tiny_config():
  return load_config("tiny")


def small_config(epochs=2.0):
  """The tiny network on 64 synthetic 36x36 images: 4 steps of 16 per epoch."""
  config = load_config("tiny")
  config.data.update(dict(name="synthetic", image_size=36, batch_size=16, eval_batch_size=16,
                          synthetic_train_size=64, synthetic_eval_size=40, pixel_scale=1 / 64))
  config.schedule.kind = "constant"
  config.num_epochs = epochs
  config.log_every_steps = 2
  config.stats_every_steps = 3
  config.checkpoint.update(dict(every_steps=2, keep=2))
  config.stall.check_steps = 4
  return config


SMALL_FLAGS = [  # small_config() as command-line flags
    "--config=configs/tiny.py", "--config.data.name=synthetic", "--config.data.image_size=36",
    "--config.data.batch_size=16", "--config.data.eval_batch_size=16",
    "--config.data.synthetic_train_size=64", "--config.data.synthetic_eval_size=40",
    "--config.data.pixel_scale=0.015625", "--config.schedule.kind=constant",
    "--config.log_every_steps=2", "--config.stats_every_steps=3",
    "--config.checkpoint.every_steps=2", "--config.checkpoint.keep=2",
    "--config.stall.check_steps=4"]


@pytest.fixture(scope="session")
def straight_run(tmp_path_factory):
  """The small config trained for 8 steps, uninterrupted: (workdir, final eval). Read only."""
  from alexnet_jax import train

  workdir = str(tmp_path_factory.mktemp("straight"))
  result = train.train_and_evaluate(small_config(), workdir)
  return workdir, result


def saved_state(workdir, step):
  """The state a checkpoint holds, read with plain Orbax (no alexnet_jax code involved)."""
  import orbax.checkpoint as ocp

  return ocp.StandardCheckpointer().restore(os.path.join(workdir, "checkpoints", str(step),
                                                         "state"))
