"""XLA flags the library sets for this network, so that users do not have to.

CPU: XLA's XNNPACK/YNNPACK fusions run this network's small convolutions slower than XLA's own
kernels (docs/performance.md). They are switched off when the flags exist in the installed jaxlib
(an unknown flag in XLA_FLAGS aborts the process) and the user has not set them.
"""

from __future__ import annotations

import mmap
import os

CPU_FLAGS = ("--xla_cpu_use_xnnpack=false", "--xla_cpu_experimental_ynn_fusion_type=")


def known(names: list[str]) -> bool:
  """Whether every flag name appears in the jaxlib binary that parses XLA_FLAGS."""
  try:
    import jaxlib
  except ImportError:
    return False
  folder = os.path.dirname(jaxlib.__file__)
  for library in ("libjax_common.so", "xla_extension.so", "_jax.so"):
    path = os.path.join(folder, library)
    if not os.path.exists(path):
      continue
    try:
      with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        if all(m.find(name.encode()) >= 0 for name in names):
          return True
    except (OSError, ValueError):
      continue
  return False


def configure() -> None:
  """Adds `CPU_FLAGS` to XLA_FLAGS (before jax starts its backends)."""
  current = os.environ.get("XLA_FLAGS", "")
  wanted = [f for f in CPU_FLAGS if f.split("=")[0] not in current]
  if wanted and known([f.split("=")[0].lstrip("-") for f in wanted]):
    os.environ["XLA_FLAGS"] = " ".join([current] + wanted).strip()
