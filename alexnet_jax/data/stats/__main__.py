"""Training-set statistics: the mean image and the RGB PCA of a config's training split.

    python -m alexnet_jax.data.stats --config=configs/paper.py --config.data.data_dir=DIR

streams the training split (bounded memory: running sums in float64), writes
`<data_dir>/alexnet_jax_stats/<name>-<size>.npz` (or `--config.data.stats_file`, or `--output`)
and prints the result; training loads it. A fine-tuning config reads the data in its source
network's form.
"""

from absl import flags
from ml_collections import config_flags

from alexnet_jax import cli
from alexnet_jax.data.stats import write_statistics


def main(argv):
  del argv
  FLAGS = flags.FLAGS
  config = FLAGS.config
  write_statistics(config.data, config.model.in_channels, config.model.num_classes,
                   output=FLAGS.output, max_images=FLAGS.max_images)


if __name__ == "__main__":
  config_flags.DEFINE_config_file("config", None, "training configuration file", lock_config=True)
  flags.DEFINE_string("output", "", "where to write the .npz (default: next to the data)")
  flags.DEFINE_integer("max_images", 0, "use the first N training images (0: all of them)",
                       lower_bound=0)
  cli.run(main, required_flags=["config"])
