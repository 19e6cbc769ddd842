"""Test set-up: 8 CPU devices for the multi-device tests, forced before jax starts."""

import importlib
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                             " --xla_force_host_platform_device_count=8").strip()

import pytest  # noqa: E402


def load_config(name: str, variant: str = ""):
  """`configs/<name>.py:variant`, as `--config=` would load it."""
  return importlib.import_module(f"configs.{name}").get_config(variant)


@pytest.fixture
def tiny_config():
  return load_config("tiny")
