"""Trains and evaluates: `python -m alexnet_jax.main --config=configs/paper.py --workdir=DIR`.

Config fields are overridden with `--config.a.b=value`; named ablations are config variants,
e.g. `--config=configs/paper.py:no_lrn`.
"""

import logging as std_logging

from absl import flags, logging
from ml_collections import config_flags

from alexnet_jax import cli, train

_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and plots.")
_CONFIG = config_flags.DEFINE_config_file("config", None, "Training configuration file.",
                                          lock_config=True)


class _OnlyOurInfo(std_logging.Filter):
  """Keeps INFO lines from alexnet_jax; libraries (Orbax logs every save) only warn."""

  def filter(self, record):
    return record.levelno >= std_logging.WARNING or "alexnet_jax" in record.pathname


def main(argv):
  if len(argv) > 1:
    raise cli.UserError(f"unexpected arguments: {' '.join(argv[1:])}")
  logging.set_verbosity(logging.INFO)
  logging.get_absl_handler().addFilter(_OnlyOurInfo())
  train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  cli.run(main, required_flags=("config", "workdir"))
