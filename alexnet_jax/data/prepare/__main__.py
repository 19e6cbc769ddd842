"""§2's stored form, prepared once (`alexnet_jax.data.prepare`).

    python -m alexnet_jax.data.prepare --config=configs/paper.py --config.data.data_dir=DIR

rescales every original (shorter side 256, the centre kept, or squashed: `data.resize`),
re-encodes it as a JPEG (`data.prepared_quality`, `data.prepared_chroma`) into array_record
shards next to the data, with the mean image and RGB PCA in the same pass, and prints what it
wrote. A killed prepare continues; a current store is left alone.
"""

import json

from absl import flags
from ml_collections import config_flags

from alexnet_jax import cli
from alexnet_jax.data import store_format
from alexnet_jax.data.prepare import prepare


def main(argv):
  del argv
  FLAGS = flags.FLAGS
  config = FLAGS.config
  manifest = prepare(config.data, channels=config.model.in_channels,
                     num_classes=config.model.num_classes, shard_size=FLAGS.shard_size,
                     workers=FLAGS.workers)
  summary = {k: manifest[k] for k in ("records", "unreadable", "form")}
  print(json.dumps({"store": store_format.store_dir(config.data), **summary}, ensure_ascii=False))


if __name__ == "__main__":
  config_flags.DEFINE_config_file("config", None, "training configuration file (its data "
                                  "section: the dataset, the stored form, prepared_quality and "
                                  "prepared_chroma)", lock_config=True)
  flags.DEFINE_integer("shard_size", 1024, "images per array_record shard")
  flags.DEFINE_integer("workers", 0, "processes (0: one per CPU core; 1: this process only)")
  cli.run(main, required_flags=["config"])
