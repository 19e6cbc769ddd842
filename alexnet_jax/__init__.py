"""alexnet_jax: Krizhevsky, Sutskever & Hinton (2012) as a JAX/Flax training stack."""

from alexnet_jax import xla_flags as _xla_flags

_xla_flags.configure()
