"""Entry-point plumbing shared by the command-line tools: `run` is every tool's `__main__`."""

from __future__ import annotations

import logging as std_logging
import os
import sys
import traceback
from typing import Callable

import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from alexnet_jax import configuration, validation, xla_flags
from alexnet_jax.errors import UserError, first_line, out_of_memory


def run(main: Callable[[list[str]], None], *, required_flags: tuple[str, ...] = (),
        positional: bool = False) -> None:
  """`absl.app.run(main)` for a tool: the process-wide XLA settings before jax starts
  (`xla_flags.configure`), flags parsed, `required_flags` not given and unexpected arguments
  refused (unless `positional`: the tool reads them), INFO logging of this project's lines, a
  `--config` validated (`validation.validate`), then `main(argv)`. Bad flags, a config that
  does not load or validate, a `UserError` and Ctrl-C each end in one line (status 2; 130 for
  Ctrl-C)."""
  xla_flags.configure()
  sys.unraisablehook = _unraisable
  sys.argv = [_resolved(a, before) for before, a in zip([""] + sys.argv, sys.argv)]

  def guarded(argv):
    try:
      missing = [name for name in required_flags if flags.FLAGS[name].value is None]
      if missing:
        raise UserError(_missing_flags(missing))
      if len(argv) > 1 and not positional:
        raise UserError(f"unexpected arguments: {' '.join(argv[1:])}")
      _log_our_info()
      if "config" in flags.FLAGS and isinstance(flags.FLAGS["config"].value,
                                                ml_collections.ConfigDict):
        validation.validate(flags.FLAGS.config)
        _take_the_sources_settings(flags.FLAGS.config)
      main(argv)
    except UserError as e:
      _fail(str(e))
    except KeyboardInterrupt:
      _fail("interrupted (Ctrl-C)", status=130)
    except RuntimeError as e:
      xla = out_of_memory(e)
      if xla is None:
        raise
      _fail(f"the device ran out of memory ({xla}): use a smaller batch (training: "
            "--config.data.batch_size, evaluations: --config.data.eval_batch_size) or compute "
            "in bfloat16 (--config.model.dtype=bfloat16)")
    except (OSError, flags.Error) as e:  # a --config file that does not load, met on first access
      message = configuration.load_error(e)
      if message is None:
        raise
      _fail(message)

  app.run(guarded, flags_parser=_parse_flags)


def _take_the_sources_settings(config) -> None:
  """A fine-tuning config (`init_from.workdir`) is the source network's and reads its input:
  every tool given one (statistics, prepare, diagnose, training) sees the source's settings,
  not the config file's (`finetune.inherit`; the command line's fields are kept)."""
  if "init_from" not in config or not config.init_from.workdir:
    return
  from alexnet_jax import finetune

  inherited = configuration.flat(finetune.inherit(config, config.init_from.workdir,
                                                  config_overrides()))
  current = configuration.flat(config)
  for path, value in inherited.items():
    if current[path] != value:
      configuration.set_field(config, path, value)


def _unraisable(unraisable, default=sys.unraisablehook) -> None:
  """A damaged checkpoint's failed read (reported already) leaves Orbax coroutines that raise
  when collected and TensorStore callbacks that find Orbax's asyncio loop closed; Python would
  print each as a traceback. Those are logged at debug level; any other goes to `default`."""
  error, frames = unraisable.exc_value, traceback.extract_tb(unraisable.exc_traceback)
  if (isinstance(error, RuntimeError) and "Event loop is closed" in str(error)) or (
      frames and f"{os.sep}orbax{os.sep}" in frames[-1].filename):
    logging.debug("after a failed checkpoint read: %s", first_line(error))
    return
  default(unraisable)


def _resolved(arg: str, before: str) -> str:
  """A `--config=` value (or the one after `--config`) as `configuration.resolve` finds it."""
  if arg.startswith("--config="):
    return "--config=" + configuration.resolve(arg[len("--config="):])
  return configuration.resolve(arg) if before == "--config" else arg


_HELP = ("-h", "--help", "-?", "--helpshort", "--helpfull", "--helpxml")


def _parse_flags(argv: list[str]) -> list[str]:
  overrides, spec = _config_arguments(argv)
  try:
    rest = flags.FLAGS(argv)
  except SystemExit as e:  # absl ends --help with status 1: asking for help is no failure
    if e.code == 1 and any(a in _HELP for a in argv[1:]):
      sys.exit(0)
    raise
  except Exception as e:  # noqa: BLE001 -- config files and overrides raise several kinds
    message = configuration.load_error(e, overrides, spec)
    if message is None:
      raise
    _fail(message)
  if spec is not None and not isinstance(flags.FLAGS["config"].value, ml_collections.ConfigDict):
    message = configuration.file_error(spec)  # None: a missing file, reported on first access
    if message is not None:
      _fail(message)
  return rest


def _missing_flags(names: list[str]) -> str:
  """The one line for required flags not given, the packaged configs named where --config is
  one."""
  configs = (f" (--config: a config file, or one of the package's: "
             f"{', '.join(configuration.packaged())})" if "config" in names else "")
  return (f"{' and '.join(f'--{n}' for n in names)} {'is' if len(names) == 1 else 'are'} "
          f"required{configs}; --help lists every flag")


def _config_arguments(argv: list[str]) -> tuple[list[str] | None, str | None]:
  """(the `--config.a.b=v` overrides as 'a.b=v', the `--config` file) of a command line; (None,
  None) when it has no `--config`."""
  spec = None
  for before, arg in zip([""] + argv, argv):
    if arg.startswith("--config="):
      spec = arg[len("--config="):]
    elif before == "--config":
      spec = arg
  if spec is None:
    return None, None
  return [a[len("--config."):] for a in argv if a.startswith("--config.")], spec


def _fail(message: str, status: int = 2) -> None:
  print("error: " + " ".join(message.replace("\\n", " ").split()), file=sys.stderr)
  sys.exit(status)


class _OnlyOurInfo(std_logging.Filter):
  """Keeps INFO lines from alexnet_jax; libraries (Orbax logs every save) only warn. Orbax's
  futures of a failed checkpoint read, reported already, are not reported again by asyncio
  when collected ("exception was never retrieved", with a traceback each)."""

  def filter(self, record):
    if record.name == "asyncio" and "never retrieved" in str(record.msg):
      return False
    return record.levelno >= std_logging.WARNING or "alexnet_jax" in record.pathname


def _log_our_info() -> None:
  """INFO logging for alexnet_jax's own lines, WARNING and above for the libraries'."""
  logging.set_verbosity(logging.INFO)
  logging.get_absl_handler().addFilter(_OnlyOurInfo())


def config_overrides() -> tuple[str, ...]:
  """The config fields this command line sets: `--config.a.b=...` flags and those the named
  variants after the config file's colon set (`configuration.VARIANTS`)."""
  given = configuration.flat(config_flags.get_override_values(flags.FLAGS["config"]))
  spec = flags.FLAGS["config"].config_filename if hasattr(flags.FLAGS["config"],
                                                          "config_filename") else ""
  variants = [v.strip() for v in spec.partition(":")[2].split(",") if v.strip()]
  named = [path for v in variants if v in configuration.VARIANTS
           for path in configuration.VARIANTS[v].overrides]
  return tuple(given) + tuple(named)


def define_restore_flags(*, several: bool = False) -> None:
  """--workdir, --step, --best: which checkpoint an inference tool restores (`several`: of each
  of several workdirs, --workdir repeated); listed by the tool's --help as its own (absl lists
  the main module's flags)."""
  main = {"module_name": sys.argv[0]}
  if several:
    flags.DEFINE_multi_string("workdir", None, "a training workdir to restore (repeat for an "
                              "ensemble)", **main)
  else:
    flags.DEFINE_string("workdir", None, "training workdir to restore", **main)
  flags.DEFINE_integer("step", None, "checkpoint step (default: the newest that restores)",
                       lower_bound=0, **main)
  flags.DEFINE_bool("best", False, "restore the best (lowest validation error) checkpoint", **main)
