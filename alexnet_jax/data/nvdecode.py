"""`data.decoder=nvimgcodec`: a training batch's §4.1 patches decoded from the prepared store's
256x256 JPEGs by nvImageCodec (the `nvimgcodec` extra) in one batched call, each decoding only
its patch's region (ROI decode).

Where (`data.decode_on`): on a CUDA device the input workers send the JPEGs themselves and the
training process decodes each batch straight into device memory (`DeviceDecoder`: the GPU's
hardware JPEG decoder where it has one, else CUDA), so only the JPEG bytes and the crop boxes
cross from the host; elsewhere, or with `decode_on='host'`, the workers decode on its CPU
backend (`PatchDecoder`). The CPU backend gives the default decoder's pixels (`images.decode`,
simplejpeg) bit for bit (tested); a GPU's are measured by `benchmark decode`. An image it
cannot read is left to the default decoder (which logs, counts and replaces it).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import threading

import jax
import numpy as np
from absl import logging

from alexnet_jax.errors import UserError, first_line

DECODERS = ("simplejpeg", "nvimgcodec")  # data.decoder; simplejpeg/Pillow: the reference
DECODE_ON = ("auto", "host", "device")  # data.decode_on
# A batch's JPEGs travel in a buffer of this many bytes per patch (a 256x256 colour JPEG at
# quality 90: about 30,000); one that does not fit is read and decoded on the host instead.
JPEG_BYTES_PER_IMAGE = 65_536


def check_available(decoder: str) -> None:
  """`decoder` one of `DECODERS` and importable (a one-line UserError otherwise)."""
  if decoder not in DECODERS:
    raise UserError(f"data.decoder must be one of {', '.join(DECODERS)}, got {decoder!r}")
  if decoder == "nvimgcodec":
    try:
      _module()
    except ImportError:
      raise UserError("data.decoder=nvimgcodec needs nvImageCodec: pip install "
                      "'alexnet_jax[nvimgcodec]' (alexnet_jax[nvimgcodec-cu13] for CUDA "
                      "13)") from None


def check_decode_on(data) -> None:
  """`data.decode_on` one of `DECODE_ON`, 'device' only for nvImageCodec (one line else)."""
  if data.decode_on not in DECODE_ON:
    raise UserError(f"data.decode_on must be one of {', '.join(DECODE_ON)}, got "
                    f"{data.decode_on!r}")
  if data.decode_on == "device" and data.decoder != "nvimgcodec":
    raise UserError("data.decode_on=device needs data.decoder=nvimgcodec (the default decoder "
                    "decodes on the host)")


def decodes_on_device(data, stored_form: bool) -> bool:
  """Whether the training patches are decoded in the training process on the device
  (`DeviceDecoder`) rather than in the input workers: nvImageCodec on a prepared store (its
  split's `stored_form`), with `decode_on` 'device', or 'auto' on a CUDA device."""
  if data.decoder != "nvimgcodec" or data.decode_on == "host":
    return False
  if not stored_form:
    if data.decode_on == "device":
      raise UserError("data.decode_on=device decodes the prepared store's JPEGs: prepare it "
                      "(python -m alexnet_jax.data.prepare) and keep data.use_prepared")
    return False
  return data.decode_on == "device" or jax.default_backend() == "gpu"


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


def _made(channels: int, device_id: int, kinds: tuple, **options):
  """(a decoder on `device_id` with the backends `kinds`, decode parameters for `channels`)."""
  nvimgcodec = _module()
  with _MAKING, _quiet():
    decoder = nvimgcodec.Decoder(device_id=device_id,
                                 backends=[nvimgcodec.Backend(k) for k in kinds], **options)
  spec = nvimgcodec.ColorSpec.GRAY if channels == 1 else nvimgcodec.ColorSpec.SRGB
  return decoder, nvimgcodec.DecodeParams(color_spec=spec)


def _regions(decoder, params, encoded: list, boxes: np.ndarray, size: int,
             channels: int) -> list:
  """The `size` x `size` region at (top, left) = boxes[i, :2] of each encoded image, decoded
  in one batched call: nvImageCodec's image [size, size, channels], or None where it cannot be
  decoded so (empty, not an image it reads, or decoded to another shape)."""
  nvimgcodec = _module()
  streams, where = [], []
  for i, (data, (top, left)) in enumerate(zip(encoded, boxes[:, :2].tolist())):
    if not len(data):
      continue
    try:
      stream = nvimgcodec.CodeStream(bytes(data))
      streams.append(stream.get_sub_code_stream(
          region=nvimgcodec.Region(top, left, top + size, left + size)))
      where.append(i)
    except Exception:  # noqa: BLE001 -- not an image it reads: the default decoder's to say
      continue
  out = [None] * len(encoded)
  for i, image in zip(where, decoder.decode(streams, params=params) if streams else []):
    if image is not None and tuple(image.shape) == (size, size, channels):
      out[i] = image
  return out


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

  def patches(self, encoded: list[bytes], boxes: np.ndarray, size: int) -> list:
    """The `size` x `size` patch at (top, left) = boxes[i, :2] of each encoded image, uint8
    [size, size, channels], or None where it cannot be decoded so."""
    if getattr(self._local, "made", None) is None:
      nvimgcodec = _module()
      self._local.made = _made(self.channels, nvimgcodec.NVIMGCODEC_DEVICE_CPU_ONLY,
                               (nvimgcodec.BackendKind.CPU_ONLY,), max_num_cpu_threads=1)
    out = []
    for image in _regions(*self._local.made, encoded, boxes, size, self.channels):
      array = None if image is None else np.asarray(image)
      out.append(array if array is not None and array.dtype == np.uint8 else None)
    return out


class DeviceDecoder:
  """An encoded training batch (`batch.encoded_train`, the input workers' when the device
  decodes) -> the training batch, its patches decoded by nvImageCodec on `device` in one
  batched ROI call: on a CUDA device into its memory (a `jax.Array` there, which the transfer
  leaves in place), on the CPU backend elsewhere (host arrays). A patch whose JPEG was not sent
  (too large for the batch's buffer, or unreadable) or that it cannot decode comes from
  `host_patch(index, position, box) -> (patch, label, images skipped)`: the default decoder's
  (which logs, counts and replaces an unreadable image). Runs in the thread that takes the
  batches (the prefetcher's); one decoder for it."""

  def __init__(self, host_patch, crop: int, channels: int, device=None):
    self._host_patch, self.crop, self.channels = host_patch, crop, channels
    self._device = device or jax.local_devices()[0]
    self._made = None
    self._through_host = self._warned = False

  def _open(self):
    """(decoder, decode parameters) on the device, made on first use: its GPU backends (the
    hardware decoder, then CUDA) on a GPU, the CPU backend elsewhere."""
    if self._made is None:
      nvimgcodec, gpu = _module(), self._device.platform == "gpu"
      self._made = (_made(self.channels, self._device.local_hardware_id,
                          (nvimgcodec.BackendKind.HW_GPU_ONLY, nvimgcodec.BackendKind.GPU_ONLY))
                    if gpu else _made(self.channels, nvimgcodec.NVIMGCODEC_DEVICE_CPU_ONLY,
                                      (nvimgcodec.BackendKind.CPU_ONLY,)))
    return self._made

  def _decoded(self, jpegs: list, boxes: np.ndarray) -> list:
    """Each patch decoded (a device or host array), or None."""
    on_device = _module().ImageBufferKind.STRIDED_DEVICE
    return [image if image is None else
            self._taken(image) if image.buffer_kind == on_device else np.asarray(image)
            for image in _regions(*self._open(), jpegs, boxes, self.crop, self.channels)]

  def _taken(self, image):
    """An image in device memory as a jax.Array (DLPack, no copy); copied through the host,
    with a warning once, where DLPack refuses it."""
    if not self._through_host:
      try:
        return jax.dlpack.from_dlpack(image)
      except Exception as e:  # noqa: BLE001 -- any refusal: the copy below still works
        self._through_host = True
        logging.warning("nvImageCodec's decoded images cannot be taken by DLPack (%s): they "
                        "are copied through the host", first_line(e) or type(e).__name__)
    return np.asarray(image.cpu())

  def __call__(self, batch: dict) -> dict:
    batch = dict(batch)
    jpeg, ends = batch.pop("jpeg"), batch.pop("jpeg_end")
    index, position = batch.pop("index"), batch.pop("position")
    starts = np.concatenate([[0], ends[:-1]])
    patches = self._decoded([jpeg[a:b] for a, b in zip(starts, ends)], batch["crop"])
    if not self._warned and (ends > starts).any() and all(p is None for p in patches):
      self._warned = True
      logging.warning("nvImageCodec decoded none of a batch's patches on %s (is nvJPEG there? "
                      "pip install 'alexnet_jax[nvimgcodec]'): the default decoder decodes "
                      "them on the host, slowly", self._device.device_kind)
    label, skipped = batch["label"].copy(), batch["skipped"].copy()
    for i in (i for i, p in enumerate(patches) if p is None):
      patches[i], label[i], attempts = self._host_patch(int(index[i]), int(position[i]),
                                                        batch["crop"][i])
      skipped[i] += attempts
    if all(isinstance(p, np.ndarray) for p in patches):
      image = np.stack(patches)
    else:
      # a patch already on the device skips device_put: a call per patch costs host time
      image = jax.numpy.stack([p if isinstance(p, jax.Array) else jax.device_put(p, self._device)
                               for p in patches])
    batch.update(image=image, label=label, skipped=skipped)
    return batch
