"""The library's error for bad input a user can fix (a config value, a dataset, a checkpoint).

Raised by the library; the entry points (`cli.run`) print it as one line, `error: ...`, and exit
with status 2, without a traceback.
"""


class UserError(ValueError):
  """Bad input the user can fix (config, data, checkpoint): reported as one line."""


def first_line(text) -> str:
  """The first non-empty line of `text` (an exception's message, say)."""
  lines = [line.strip() for line in str(text).splitlines() if line.strip()]
  return lines[0] if lines else ""


def last_line(text) -> str:
  """The last non-empty line of `text` (where a traceback names the error)."""
  lines = [line.strip() for line in str(text).splitlines() if line.strip()]
  return lines[-1] if lines else ""


def innermost(error: BaseException) -> BaseException:
  """The exception at the bottom of `error`'s explicit chain (`raise ... from`): Orbax wraps
  TensorStore's error, which names the damaged file, in one that names an array index."""
  for _ in range(16):
    if error.__cause__ is None:
      break
    error = error.__cause__
  return error


def out_of_memory(error: BaseException) -> str | None:
  """XLA's failed device allocation (RESOURCE_EXHAUSTED: out of memory, at compile time or when
  a program runs) as the first line of its message; None for any other error. A full disk is
  RESOURCE_EXHAUSTED too, without "out of memory"."""
  text = str(error)
  if isinstance(error, RuntimeError) and "RESOURCE_EXHAUSTED" in text and (
      "out of memory" in text.lower()):
    return first_line(text)
  return None
