"""Entry-point plumbing shared by the command-line tools."""

from __future__ import annotations

import sys
from typing import Callable

from absl import app, flags


class UserError(ValueError):
  """Bad input the user can fix (config, data, checkpoint): reported as one line, no traceback."""


def run(main: Callable[[list[str]], None], required_flags: tuple[str, ...] = ()) -> None:
  """`absl.app.run(main)` where bad flags, configs and `UserError`s end in one line, status 2."""
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
  _fail(message)


def _last_line(message: str) -> str:
  return [line.strip() for line in message.splitlines() if line.strip()][-1]


def _fail(message: str) -> None:
  print("error: " + " ".join(message.replace("\\n", " ").split()), file=sys.stderr)
  sys.exit(2)
