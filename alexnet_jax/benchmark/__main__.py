"""`python -m alexnet_jax.benchmark input|step|levers|end2end|transfer|decode|scaling [flags]`
(the package's docstring says what each prints)."""

from __future__ import annotations

import sys

from absl import flags, logging

from alexnet_jax import cli
from alexnet_jax.benchmark.decode import bench_decode
from alexnet_jax.benchmark.end2end import PILLOW_SECONDS, bench_end2end
from alexnet_jax.benchmark.input_pipeline import bench_input
from alexnet_jax.benchmark.levers import XLA_FLAGS_TRIED, bench_levers
from alexnet_jax.benchmark.scaling import SHARD_BATCH, bench_scaling
from alexnet_jax.benchmark.step import bench_step
from alexnet_jax.benchmark.transfer import bench_transfer
from alexnet_jax.errors import UserError


def main(argv):
  FLAGS = flags.FLAGS
  if len(argv) != 2 or argv[1] not in ("input", "step", "levers", "end2end", "transfer",
                                       "decode", "scaling"):
    raise UserError("usage: python -m alexnet_jax.benchmark "
                    "input|step|levers|end2end|transfer|decode|scaling [flags]")
  logging.set_verbosity(logging.WARNING)
  if argv[1] == "input":
    bench_input(root=FLAGS.root, generate=FLAGS.generate, workers=FLAGS.workers,
                seconds=FLAGS.seconds, quality=FLAGS.quality, chroma=FLAGS.chroma)
    return
  if FLAGS.config is None:
    raise UserError(f"{argv[1]} needs --config=configs/....py")
  config = FLAGS.config
  if FLAGS.dtype and argv[1] in ("step", "levers", "end2end"):
    config.model.dtype = FLAGS.dtype
  if argv[1] == "step":
    bench_step(config, batch=FLAGS.batch, steps=FLAGS.steps, profile=FLAGS.profile,
               compare_torch=FLAGS.compare_torch)
  elif argv[1] == "levers":
    bench_levers(config, batch=FLAGS.batch, steps=FLAGS.steps, argv=sys.argv[2:],
                 flags=tuple(f for f in FLAGS.xla_flags if f))
  elif argv[1] == "end2end":
    bench_end2end(config, source=FLAGS.source, root=FLAGS.root, generate=FLAGS.generate,
                  batch=FLAGS.batch, workers=FLAGS.workers, steps=FLAGS.steps,
                  null_model=FLAGS.null_model, prepared=FLAGS.prepared, store=FLAGS.store,
                  decoder=FLAGS.decoder, pillow_seconds=FLAGS.pillow_seconds)
  elif argv[1] == "transfer":
    bench_transfer(config, batch=FLAGS.batch, seconds=FLAGS.seconds)
  elif argv[1] == "decode":
    bench_decode(config, batch=FLAGS.batch, generate=FLAGS.generate, seconds=FLAGS.seconds,
                 root=FLAGS.root, store=FLAGS.store)
  else:
    bench_scaling(config, devices=FLAGS.devices, per_device_batch=FLAGS.batch,
                  steps=FLAGS.steps, argv=sys.argv[2:])


if __name__ == "__main__":
  from ml_collections import config_flags

  flags.DEFINE_string("root", "", "input, end2end, decode: an ImageFolder root "
                      "(ROOT/train/<class>/*)")
  flags.DEFINE_integer("generate", 1024, "input, end2end, decode: images to generate when "
                       "--root is not given", lower_bound=1)
  flags.DEFINE_integer("workers", 0, "input: reader threads, and the most worker processes of "
                       "1, 2, 4, ... (0: one per CPU core); end2end: worker processes (0: the "
                       "config's)", lower_bound=0)
  flags.DEFINE_float("seconds", 10.0, "input, transfer, decode: seconds to time each "
                     "configuration")
  flags.register_validator("seconds", lambda seconds: seconds > 0,
                           "--seconds must be positive")
  flags.DEFINE_float("pillow_seconds", PILLOW_SECONDS, "end2end --source=jpeg: seconds to time the "
                     "one-thread Pillow yardstick (0: none)")
  flags.DEFINE_integer("quality", None, "input: JPEG quality of the prepared store (default: "
                       "configs/paper.py's data.prepared_quality)", lower_bound=1,
                       upper_bound=100)
  flags.DEFINE_enum("chroma", None, ["444", "422", "420"], "input: chroma subsampling of the "
                    "prepared store (default: configs/paper.py's data.prepared_chroma)")
  flags.DEFINE_integer("batch", 0, "batch size (0: the config's); scaling: images per "
                       f"'data' shard (0: {SHARD_BATCH})", lower_bound=0)
  flags.DEFINE_enum("dtype", "", ["", "bfloat16", "float32"],
                    "step, levers, end2end: compute dtype (default: config)")
  flags.DEFINE_integer("steps", 50, "step, levers, scaling: timed steps after warm-up; end2end: "
                       "the loop's steps (at least 8; the first quarter, compiling, is not "
                       "counted)", lower_bound=1)
  flags.DEFINE_multi_string("xla_flags", list(XLA_FLAGS_TRIED), "levers: each XLA flag to "
                            "time against the shipped step, in a child process ('' for none)")
  flags.DEFINE_integer("devices", 0, "scaling: the child run measuring one device count "
                       "(scaling starts one per count; this process must have that many)",
                       lower_bound=0)
  flags.DEFINE_bool("profile", False, "step: trace 10 more steps with jax.profiler and print "
                    "the device ops that take the most time (GPU/TPU)")
  flags.DEFINE_bool("compare_torch", False, "step: also time the same network in PyTorch "
                    "(eager and torch.compile, channels_last) in this run, and the ratio")
  flags.DEFINE_bool("null_model", False, "end2end: a trivial step in place of the network: "
                    "the loop's own ceiling and host time per step")
  flags.DEFINE_bool("prepared", False, "end2end --source=jpeg: read the JPEGs through the "
                    "prepared §2 store")
  flags.DEFINE_string("store", "", "end2end --prepared, decode: the store's folder, kept and "
                      "reused (default: a temporary one)")
  flags.DEFINE_enum("decoder", "", ["", "simplejpeg", "nvimgcodec"],
                    "end2end: the training patches' decoder (default: the config's)")
  flags.DEFINE_enum("source", "synthetic", ["synthetic", "jpeg"],
                    "end2end: in-memory synthetic images, or JPEGs (--root, or --generate of them)")

  config_flags.DEFINE_config_file("config", None, "training configuration file", lock_config=True)
  cli.run(main, positional=True)
