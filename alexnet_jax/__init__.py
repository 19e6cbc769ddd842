"""alexnet_jax: Krizhevsky, Sutskever & Hinton (2012) as a JAX/Flax training stack."""
