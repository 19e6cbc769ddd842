"""Trains and evaluates: `python -m alexnet_jax.main --config=configs/paper.py --workdir=DIR`.

Config fields are overridden with `--config.a.b=value`; named ablations are config variants,
e.g. `--config=configs/paper.py:no_lrn`. Several processes (hosts): `alexnet_jax/distributed.py`.
"""

import jax
from absl import flags, logging
from ml_collections import config_flags

from alexnet_jax import cli, distributed, train

_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and plots.")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", "", "host:port of process 0 for a multi-process run (jax.distributed)")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", 0, "processes in a multi-process run")
_PROCESS_ID = flags.DEFINE_integer("process_id", -1, "this process's index in a multi-process run")
_CONFIG = config_flags.DEFINE_config_file("config", None, "Training configuration file.",
                                          lock_config=True)


def main(argv):
  if len(argv) > 1:
    raise cli.UserError(f"unexpected arguments: {' '.join(argv[1:])}")
  cli.log_our_info()
  if distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value):
    if jax.process_index() != 0:  # one process reports; the others only warn
      logging.set_verbosity(logging.WARNING)
  train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  cli.run(main, required_flags=("config", "workdir"))
