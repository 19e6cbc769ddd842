"""Input: datasets behind one interface, and the paper's augmentation in grain (§2, §4.1)."""

from alexnet_jax.data.pipeline import Input, build_input

__all__ = ["Input", "build_input"]
