"""`errors`: the one-line forms of exceptions that messages are built from."""

from alexnet_jax.errors import UserError, first_line, innermost, out_of_memory


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


def device_out_of_memory():
  """The error XLA raises for a device allocation that cannot be made: 100 TB on the CPU."""
  import jax
  import jax.numpy as jnp

  return _raised(lambda: jax.jit(lambda: jnp.zeros((10**14,), jnp.uint8))())


def test_a_failed_device_allocation_is_told_from_a_full_disk_and_other_errors():
  """XLA's own out-of-memory error (a real one, and a GPU's form whose buffer report follows
  on more lines) gives its first line; TensorStore's full disk (RESOURCE_EXHAUSTED too), other
  runtime errors and a `UserError` saying the words give None. Mutations: "out of memory"
  not required; the RuntimeError check dropped; the whole text kept -> red."""
  xla = device_out_of_memory()
  assert out_of_memory(xla) == "RESOURCE_EXHAUSTED: Out of memory allocating 100000000000000 bytes."
  gpu = RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 21.47GiB.\n"
                     "BufferAssignment OOM Debugging.\nBufferAssignment stats: ...")
  assert out_of_memory(gpu) == ("RESOURCE_EXHAUSTED: Out of memory while trying to allocate "
                                "21.47GiB.")
  disk = RuntimeError('RESOURCE_EXHAUSTED: Error writing local file "ckpt/d/0": No space left')
  assert out_of_memory(disk) is None
  assert out_of_memory(RuntimeError("INTERNAL: cuDNN failed")) is None
  assert out_of_memory(UserError("RESOURCE_EXHAUSTED: out of memory, said by us")) is None
