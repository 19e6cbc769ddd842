"""`xla_flags`: the CPU flags set for the user when the installed jaxlib knows them and the user
has not set them (an unknown flag in XLA_FLAGS aborts XLA)."""

import sys

from alexnet_jax import xla_flags


def test_known_finds_a_flag_in_the_installed_jaxlib_and_not_an_invented_one(monkeypatch):
  assert xla_flags.known(["xla_force_host_platform_device_count"])
  assert not xla_flags.known(["xla_force_host_platform_device_count", "xla_no_such_flag_7"])
  monkeypatch.setitem(sys.modules, "jaxlib", None)  # no jaxlib: nothing is known
  assert not xla_flags.known(["xla_force_host_platform_device_count"])


def test_configure_adds_the_cpu_flags_the_user_has_not_set(monkeypatch):
  """Mutations: a flag the user set overridden (`not in` -> `in`); flags added that jaxlib does
  not know; the user's own flags dropped -> red."""
  asked = []
  monkeypatch.setattr(xla_flags, "known", lambda names: asked.append(names) or True)
  monkeypatch.setenv("XLA_FLAGS", "--xla_dump_to=/d --xla_cpu_use_xnnpack=true")
  xla_flags.configure()
  assert asked == [["xla_cpu_experimental_ynn_fusion_type"]]
  assert xla_flags.os.environ["XLA_FLAGS"] == (
      "--xla_dump_to=/d --xla_cpu_use_xnnpack=true --xla_cpu_experimental_ynn_fusion_type=")
  monkeypatch.delenv("XLA_FLAGS")
  xla_flags.configure()
  assert xla_flags.os.environ["XLA_FLAGS"] == " ".join(xla_flags.CPU_FLAGS)

  monkeypatch.setattr(xla_flags, "known", lambda names: False)  # an older or newer jaxlib
  monkeypatch.setenv("XLA_FLAGS", "--xla_dump_to=/d")
  xla_flags.configure()
  assert xla_flags.os.environ["XLA_FLAGS"] == "--xla_dump_to=/d"
