"""`errors`: the one-line forms of exceptions that messages are built from."""

from alexnet_jax.errors import first_line, innermost


def _raised(make):
  try:
    make()
  except Exception as e:  # noqa: BLE001
    return e


def test_innermost_follows_raise_from_to_the_bottom_and_stops_there():
  """Orbax's `raise Exception(...) from e` over TensorStore's error: the bottom one, not one
  met while handling another (`__context__`), and a chain that loops ends. Mutations: the
  chain not followed; `__context__` followed too; the bound dropped (a loop hangs) -> red."""
  def wrapped():
    try:
      try:
        raise ValueError("OUT_OF_RANGE: Error reading \"conv1.kernel\"\nsecond line")
      except ValueError as e:
        raise RuntimeError("while reading") from e
    except RuntimeError as e:
      raise Exception("Encountered error while reading array index") from e

  bottom = innermost(_raised(wrapped))
  assert type(bottom) is ValueError
  assert first_line(bottom) == 'OUT_OF_RANGE: Error reading "conv1.kernel"'

  def during_another():
    try:
      raise KeyError("unrelated")
    except KeyError:
      raise OSError("what went wrong")

  assert str(innermost(_raised(during_another))) == "what went wrong"
  looped = RuntimeError("a")
  looped.__cause__ = looped
  assert innermost(looped) is looped
