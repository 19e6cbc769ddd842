"""`python -m alexnet_jax.ablate [figure1|columns|precision] --config=... --workdir=...` (the
package's docstring says what each study writes)."""

from __future__ import annotations

import json

from absl import flags

from alexnet_jax import cli, configuration
from alexnet_jax.ablate.ablations import study
from alexnet_jax.ablate.columns import column_specialisation
from alexnet_jax.ablate.figure1 import figure1
from alexnet_jax.ablate.precision import precision
from alexnet_jax.configuration import ABLATIONS
from alexnet_jax.errors import UserError


def main(argv):
  FLAGS = flags.FLAGS
  command = argv[1] if len(argv) > 1 else "study"
  if len(argv) > 2 or command not in ("study", "figure1", "columns", "precision"):
    raise UserError("usage: python -m alexnet_jax.ablate [figure1|columns|precision] "
                    "--config=... --workdir=...")
  if FLAGS.seeds < 1:
    raise UserError("--seeds must be >= 1")
  overrides = list(FLAGS.override)
  bad = [o for o in overrides if "=" not in o]
  if bad:
    raise UserError(f"--override {bad[0]!r}: expected a.b=value (e.g. num_epochs=1)")
  configuration.load(FLAGS.config, overrides)  # a bad config or override: one line, now
  if command == "figure1":
    try:
      lrs = [float(v) for v in FLAGS.lrs.split(",") if v]
    except ValueError:
      raise UserError(f"--lrs must be comma-separated numbers, got {FLAGS.lrs!r}") from None
    if not lrs or min(lrs) <= 0 or not 0 < FLAGS.threshold < 1:
      raise UserError("--lrs needs positive learning rates and --threshold a fraction in "
                      "(0, 1)")
    print(json.dumps(figure1(FLAGS.config, lrs, FLAGS.threshold, FLAGS.workdir, overrides,
                             FLAGS.log_every), ensure_ascii=False))
  elif command == "precision":
    print(json.dumps(precision(FLAGS.config, FLAGS.seeds, FLAGS.workdir, overrides,
                               FLAGS.log_every), ensure_ascii=False))
  elif command == "columns":
    print(json.dumps(column_specialisation(FLAGS.config, FLAGS.seeds, FLAGS.workdir,
                                           overrides, FLAGS.margin),
                     ensure_ascii=False))
  else:
    names = [a for a in FLAGS.ablations.split(",") if a]
    unknown = [a for a in names if a not in ABLATIONS]
    if unknown:
      raise UserError(f"unknown ablations {unknown}; known: {', '.join(ABLATIONS)}")
    print(study(FLAGS.config, names, FLAGS.seeds, FLAGS.workdir, overrides))


if __name__ == "__main__":
  flags.DEFINE_string("config", None, "training config file (no variant)")
  flags.DEFINE_string("workdir", None, "directory of the study")
  flags.DEFINE_string("ablations", "lrn,overlap_pool,columns,pca_lighting,dropout,relu",
                      "comma-separated ingredients to remove one at a time")
  flags.DEFINE_integer("seeds", 3, "seeds per variant")
  flags.DEFINE_multi_string("override", [], "config override a.b=value, as --config.a.b=value "
                            "on the command line, e.g. num_epochs=1 (applied to every run)")
  flags.DEFINE_string("lrs", "0.005,0.01,0.02,0.04", "figure1: learning rates to sweep")
  flags.DEFINE_float("threshold", 0.25, "figure1: training error to reach (Figure 1: 25 %)")
  flags.DEFINE_integer("log_every", 20, "figure1, precision: steps between points of the "
                       "training curves")
  flags.DEFINE_float("margin", 0.2, "columns: relative gap in mean chroma that counts as one "
                     "column being the more colour-specific")
  cli.run(main, required_flags=("config", "workdir"), positional=True)
