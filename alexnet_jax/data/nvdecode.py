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

import numpy as np

from alexnet_jax.errors import UserError

DECODERS = ("simplejpeg", "nvimgcodec")  # data.decoder; simplejpeg/Pillow: the reference


def check_available(decoder: str) -> None:
  """`decoder` one of `DECODERS` and importable (a one-line UserError otherwise)."""
  if decoder not in DECODERS:
    raise UserError(f"data.decoder must be one of {', '.join(DECODERS)}, got {decoder!r}")
  if decoder == "nvimgcodec":
    try:
      importlib.import_module("nvidia.nvimgcodec")
    except ImportError:
      raise UserError("data.decoder=nvimgcodec needs nvImageCodec: pip install "
                      "'alexnet_jax[nvimgcodec]' (or nvidia-nvimgcodec-cu13 for CUDA 13)") from None


@contextlib.contextmanager
def _quiet_stderr():
  """nvImageCodec prints, from C, one error for each optional GPU library it does not find
  (nvJPEG, nvJPEG2000, nvTIFF) when a decoder is made: those lines are not the user's."""
  saved = os.dup(2)
  try:
    with open(os.devnull, "wb") as null:
      os.dup2(null.fileno(), 2)
      yield
  finally:
    os.dup2(saved, 2)
    os.close(saved)


class PatchDecoder:
  """Decodes patches of JPEG bytes on nvImageCodec's CPU backend, made on first use (in the
  process that decodes: a decoder does not cross processes)."""

  def __init__(self, channels: int):
    self.channels = channels
    self._decoder = self._params = None

  def __getstate__(self):
    return {"channels": self.channels, "_decoder": None, "_params": None}

  def _open(self):
    if self._decoder is None:
      from nvidia import nvimgcodec

      with _quiet_stderr():
        self._decoder = nvimgcodec.Decoder(
            device_id=nvimgcodec.NVIMGCODEC_DEVICE_CPU_ONLY,
            backends=[nvimgcodec.Backend(nvimgcodec.BackendKind.CPU_ONLY)],
            max_num_cpu_threads=1)
      spec = nvimgcodec.ColorSpec.GRAY if self.channels == 1 else nvimgcodec.ColorSpec.SRGB
      self._params = nvimgcodec.DecodeParams(color_spec=spec)
    return self._decoder

  def patches(self, encoded: list[bytes], boxes: np.ndarray, size: int) -> list:
    """The `size` x `size` patch at (top, left) = boxes[i, :2] of each encoded image, uint8
    [size, size, channels], or None where it cannot be decoded so."""
    from nvidia import nvimgcodec

    decoder = self._open()
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
    decoded = decoder.decode(streams, params=self._params) if streams else []
    for i, image in zip(where, decoded):
      if image is None:
        continue
      array = np.asarray(image)
      if array.shape == (size, size, self.channels) and array.dtype == np.uint8:
        out[i] = array
    return out
