"""The library's error for bad input a user can fix (a config value, a dataset, a checkpoint).

Raised by the library; the entry points (`cli.run`) print it as one line, `error: ...`, and exit
with status 2, without a traceback.
"""


class UserError(ValueError):
  """Bad input the user can fix (config, data, checkpoint): reported as one line."""
