"""`data.decoder=nvimgcodec`: a training batch's §4.1 patches decoded from the prepared store's
256x256 JPEGs by nvImageCodec (the `nvimgcodec` extra) in one batched call, each decoding only
its patch's region (ROI decode). On a machine without a GPU, and in the input workers, its CPU
backend decodes: the same pixels as the default decoder (`images.decode`, simplejpeg), bit for
bit (tested). An image it cannot read is left to the default decoder (which logs, counts and
replaces it).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import threading

import numpy as np

from alexnet_jax.errors import UserError

DECODERS = ("simplejpeg", "nvimgcodec")  # data.decoder; simplejpeg/Pillow: the reference


def check_available(decoder: str) -> None:
  """`decoder` one of `DECODERS` and importable (a one-line UserError otherwise)."""
  if decoder not in DECODERS:
    raise UserError(f"data.decoder must be one of {', '.join(DECODERS)}, got {decoder!r}")
  if decoder == "nvimgcodec":
    try:
      _module()
    except ImportError:
      raise UserError("data.decoder=nvimgcodec needs nvImageCodec: pip install "
                      "'alexnet_jax[nvimgcodec]' (or nvidia-nvimgcodec-cu13 for CUDA 13)") from None


_MAKING = threading.Lock()


@contextlib.contextmanager
def _quiet():
  """nvImageCodec prints, from C on stdout, an error for each optional GPU library it does not
  find (nvJPEG, nvJPEG2000, nvTIFF) when a decoder is made: those lines are not the user's.
  Held under `_MAKING` (the descriptors are the process's)."""
  saved = [os.dup(fd) for fd in (1, 2)]
  try:
    with open(os.devnull, "wb") as null:
      for fd in (1, 2):
        os.dup2(null.fileno(), fd)
      yield
  finally:
    for fd, copy in zip((1, 2), saved):
      os.dup2(copy, fd)
      os.close(copy)


_LOADED = []


def _module():
  """nvImageCodec, imported once, quietly (its import already loads the extensions)."""
  if not _LOADED:
    with _MAKING, _quiet():
      _LOADED.append(importlib.import_module("nvidia.nvimgcodec"))
  return _LOADED[0]


class PatchDecoder:
  """Decodes patches of JPEG bytes on nvImageCodec's CPU backend: one decoder per thread (a
  decoder is not safe to share), made on first use in the process that decodes (a decoder
  does not cross processes)."""

  def __init__(self, channels: int):
    self.channels = channels
    self._local = threading.local()

  def __getstate__(self):
    return {"channels": self.channels}

  def __setstate__(self, state):
    self.__init__(state["channels"])

  def _open(self):
    if getattr(self._local, "decoder", None) is None:
      nvimgcodec = _module()
      with _MAKING, _quiet():
        self._local.decoder = nvimgcodec.Decoder(
            device_id=nvimgcodec.NVIMGCODEC_DEVICE_CPU_ONLY,
            backends=[nvimgcodec.Backend(nvimgcodec.BackendKind.CPU_ONLY)],
            max_num_cpu_threads=1)
      spec = nvimgcodec.ColorSpec.GRAY if self.channels == 1 else nvimgcodec.ColorSpec.SRGB
      self._local.params = nvimgcodec.DecodeParams(color_spec=spec)
    return self._local.decoder, self._local.params

  def patches(self, encoded: list[bytes], boxes: np.ndarray, size: int) -> list:
    """The `size` x `size` patch at (top, left) = boxes[i, :2] of each encoded image, uint8
    [size, size, channels], or None where it cannot be decoded so."""
    nvimgcodec = _module()
    decoder, params = self._open()
    streams, where = [], []
    for i, (data, (top, left)) in enumerate(zip(encoded, boxes[:, :2].tolist())):
      try:
        stream = nvimgcodec.CodeStream(bytes(data))
        streams.append(stream.get_sub_code_stream(
            region=nvimgcodec.Region(top, left, top + size, left + size)))
        where.append(i)
      except Exception:  # noqa: BLE001 -- not an image it reads: the default decoder's to say
        continue
    out = [None] * len(encoded)
    decoded = decoder.decode(streams, params=params) if streams else []
    for i, image in zip(where, decoded):
      if image is None:
        continue
      array = np.asarray(image)
      if array.shape == (size, size, self.channels) and array.dtype == np.uint8:
        out[i] = array
    return out
