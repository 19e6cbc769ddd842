"""Entry-point plumbing shared by the command-line tools."""

from __future__ import annotations

import logging as std_logging
import sys
from typing import Callable

from absl import app, flags, logging

from alexnet_jax import xla_flags
from alexnet_jax.errors import UserError


def run(main: Callable[[list[str]], None], required_flags: tuple[str, ...] = ()) -> None:
  """`absl.app.run(main)` where bad flags, configs and `UserError`s end in one line, status 2.

  Applies the process-wide XLA settings (`xla_flags.configure`) first, before jax starts."""
  xla_flags.configure()
  for name in required_flags:
    flags.mark_flag_as_required(name)

  def guarded(argv):
    try:
      main(argv)
    except UserError as e:
      _fail(str(e))
    except OSError as e:  # ml_collections reports an unloadable --config file on first access.
      if "Configuration is not available" not in str(e):
        raise
      _fail(f"cannot load the config: {_last_line(str(e))}")

  app.run(guarded, flags_parser=_parse_flags)


def _parse_flags(argv: list[str]) -> list[str]:
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    message = str(e)
    if "Traceback" in message:  # an exception inside the config file: keep its last line
      message = f"{message.split(':', 1)[0]}: {_last_line(message)}"
  except (AttributeError, KeyError, TypeError, ValueError) as e:  # raised by config overrides
    message = f"bad config override: {e.args[0] if e.args else e}"
  except OSError as e:  # a --config file that does not load, met while parsing its overrides
    message = f"cannot load the config: {_last_line(str(e))}"
  _fail(message)


def _last_line(message: str) -> str:
  return [line.strip() for line in message.splitlines() if line.strip()][-1]


def _fail(message: str) -> None:
  print("error: " + " ".join(message.replace("\\n", " ").split()), file=sys.stderr)
  sys.exit(2)


class _OnlyOurInfo(std_logging.Filter):
  """Keeps INFO lines from alexnet_jax; libraries (Orbax logs every save) only warn."""

  def filter(self, record):
    return record.levelno >= std_logging.WARNING or "alexnet_jax" in record.pathname


def log_our_info() -> None:
  """INFO logging for alexnet_jax's own lines, WARNING and above for the libraries'."""
  logging.set_verbosity(logging.INFO)
  logging.get_absl_handler().addFilter(_OnlyOurInfo())


def define_restore_flags() -> None:
  """--workdir, --step, --best: which checkpoint an inference tool restores."""
  flags.DEFINE_string("workdir", None, "training workdir to restore")
  flags.DEFINE_integer("step", None, "checkpoint step (default: the newest that restores)")
  flags.DEFINE_bool("best", False, "restore the best (lowest validation error) checkpoint")
