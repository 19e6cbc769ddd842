"""Trains and evaluates: `python -m alexnet_jax.main --config=configs/paper.py --workdir=DIR`.

Config fields are overridden with `--config.a.b=value`; named variants (the ablations among them)
follow the file after a colon, e.g. `--config=configs/paper.py:no_lrn,one_column`. Several
processes (hosts): `alexnet_jax/distributed.py`.
"""

import jax
from absl import flags, logging

from alexnet_jax import checkpoint, cli, distributed, train


def main(argv):
  del argv
  FLAGS = flags.FLAGS
  if distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id):
    if jax.process_index() != 0:  # one process reports; the others only warn
      logging.set_verbosity(logging.WARNING)
  try:
    train.train_and_evaluate(FLAGS.config, FLAGS.workdir, overridden=cli.config_overrides(),
                             validated=True)  # cli.run has
  except Exception as e:  # noqa: BLE001 -- a peer's loss surfaces as any runtime error
    lost = distributed.lost_peer(e)
    if lost is None:
      raise
    steps = checkpoint.saved_steps(FLAGS.workdir)
    distributed.stop(f"{lost}; every process stops, the checkpoints are kept (the newest: step "
                     f"{max(steps) if steps else 'none'}): the same command resumes once all "
                     f"{jax.process_count()} processes run")


if __name__ == "__main__":
  from ml_collections import config_flags

  flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and plots.")
  flags.DEFINE_string("coordinator_address", "",
                      "host:port of process 0 for a multi-process run (jax.distributed)")
  flags.DEFINE_integer("num_processes", 0, "processes in a multi-process run", lower_bound=0)
  flags.DEFINE_integer("process_id", -1, "this process's index in a multi-process run",
                       lower_bound=-1)
  config_flags.DEFINE_config_file("config", None, "Training configuration file.",
                                  lock_config=True)
  cli.run(main, required_flags=("config", "workdir"))
