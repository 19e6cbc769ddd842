"""The software and devices a run computes with, as each checkpoint records them. A resume is
bitwise the run that was never interrupted only with the same ones: the resume says where
they differ, and a model card says what its network was trained with."""

from __future__ import annotations

import functools
import importlib.metadata
import os
import platform

import jax

# The packages whose versions can change what a run computes or the pixels it reads: the
# compiler and its GPU plugins, the model, optimizer and checkpoint libraries, the input
# pipeline and the JPEG decoders.
PACKAGES = ("alexnet_jax", "jax", "jaxlib", "jax-cuda12-plugin", "jax-cuda13-plugin", "flax",
            "optax", "orbax-checkpoint", "grain", "numpy", "pillow", "simplejpeg",
            "nvidia-nvimgcodec-cu12", "nvidia-nvimgcodec-cu13")


def versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
  """Python's version and that of each of `names` that is installed."""
  found = {"python": platform.python_version()}
  for name in names:
    try:
      found[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      pass
  return found


@functools.cache
def describe() -> dict[str, str]:
  """This process's versions (`versions`), its run's devices (all processes': count and
  kind) and the XLA flags it was started with."""
  devices = jax.devices()
  return {**versions(), "devices": f"{len(devices)} x {devices[0].device_kind}",
          "xla_flags": os.environ.get("XLA_FLAGS", "")}


def differences(saved: dict[str, str], now: dict[str, str]) -> list[str]:
  """'name: saved → now' for each entry of either that differs ('none' where one lacks it)."""
  return [f"{name}: {saved.get(name, 'none') or 'none'} → {now.get(name, 'none') or 'none'}"
          for name in dict.fromkeys([*saved, *now]) if saved.get(name) != now.get(name)]


def said(environment: dict[str, str]) -> str:
  """`environment` in a line: 'python 3.11.7, jax 0.10.2, ...; 8 x cpu'."""
  packages = ", ".join(f"{k} {v}" for k, v in environment.items()
                       if k not in ("devices", "xla_flags"))
  flags = environment.get("xla_flags")
  return (f"{packages}; {environment.get('devices', 'devices not recorded')}"
          + (f"; XLA_FLAGS={flags}" if flags else ""))
