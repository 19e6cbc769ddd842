"""`benchmark decode`: a training batch's §4.1 patches decoded from a prepared store's 256x256
JPEGs (cut from real photographs, or an ImageFolder's), each way a decoder can: the default
decoder (simplejpeg, the whole image then the crop, one thread), nvImageCodec's CPU backend
(the input workers' way, one thread) and nvImageCodec in the training process on the first
device (`nvdecode.DeviceDecoder`: into a GPU's memory where there is one). Per way: patches
per second and how far its pixels are from the default decoder's over the store's first
`COMPARED` images (the largest difference in grey levels, the fraction of values that
differ)."""

from __future__ import annotations

import tempfile

import numpy as np

from alexnet_jax.benchmark import emit, figure, jpeg_folder, timed, training_jpegs
from alexnet_jax.data import batch as batch_lib
from alexnet_jax.data import images, nvdecode

COMPARED = 2048  # images of the store decoded each way and compared


def _encoded_batch(jpegs: list, boxes: np.ndarray, channels: int, first: int) -> dict:
  """`batch.encoded_train` of `jpegs`, the records from `first` on, with the patch boxes
  `boxes`."""
  n = len(jpegs)
  buffer, ends = batch_lib.packed_jpegs(jpegs, sum(len(j) for j in jpegs))
  index = np.arange(first, first + n, dtype=np.int64)
  return batch_lib.encoded_train(buffer, ends, index, index, np.zeros(n, np.int32), boxes,
                                 np.zeros((n, channels), np.float32), np.ones(n, np.float32),
                                 np.zeros(n, np.int32))


def bench_decode(config, *, batch: int, generate: int, seconds: float, root: str = "",
                 store: str = "") -> list[dict]:
  """Prints (and returns) a record per way of decoding batches of `batch` patches."""
  import jax

  nvdecode.check_available("nvimgcodec")
  batch = batch or config.data.batch_size
  crop, channels = int(config.model.input_size), int(config.model.in_channels)
  with tempfile.TemporaryDirectory() as tmp:
    jpeg_folder(config, root=root, generate=generate, val=8, store=store, tmp=tmp)
    jpegs, stored = training_jpegs(config, COMPARED)
  rng = np.random.default_rng(0)
  corners = rng.integers(0, stored - crop + 1, (len(jpegs), 2))
  boxes = np.concatenate([corners, np.zeros((len(jpegs), 1), np.int64)], 1).astype(np.int32)
  chunks = [slice(i, i + batch) for i in range(0, len(jpegs), batch)]
  on_host = []  # patches the device decoder left to the default decoder

  def default(chunk):
    return np.stack([images.decode(j, stored, channels)[t:t + crop, l:l + crop]
                     for j, (t, l, _) in zip(jpegs[chunk], boxes[chunk])])

  def host_patch(index, position, box):
    on_host.append(index)
    return default(slice(index, index + 1))[0], 0, 0

  workers_way = nvdecode.PatchDecoder(channels)
  device = jax.local_devices()[0]
  on_device = nvdecode.DeviceDecoder(host_patch, crop, channels, device)

  def workers(chunk):
    patches = workers_way.patches(jpegs[chunk], boxes[chunk], crop)
    for i in (i for i, p in enumerate(patches) if p is None):
      patches[i] = host_patch(chunk.start + i, 0, None)[0]
    return np.stack(patches)

  def training_process(chunk):  # left on the device: the timing counts no copy back
    return on_device(_encoded_batch(jpegs[chunk], boxes[chunk], channels, chunk.start))["image"]

  reference = np.concatenate([default(c) for c in chunks])
  ways = {"default decoder (simplejpeg), one thread": default,
          "nvImageCodec CPU backend, one thread (the input workers')": workers,
          f"nvImageCodec in the training process on {device.device_kind}": training_process}
  records = []
  for way, decode in ways.items():
    on_host.clear()
    pixels = np.concatenate([np.asarray(decode(c)) for c in chunks])
    left_to_host = len(on_host)
    wall, cpu, n = timed(lambda: jax.block_until_ready(decode(chunks[0])), seconds)
    diff = np.abs(pixels.astype(np.int16) - reference)
    patches = min(batch, len(jpegs))
    record = {"bench": "decode", "way": way, "device": device.device_kind,
              "batch": patches, "crop": crop, "stored": stored, "images_compared": len(jpegs),
              "img_per_s": figure(patches * n / wall),
              "cpu_ms_per_batch": figure(1e3 * cpu / n),
              "max_abs_diff": int(diff.max()),
              "differing_fraction": figure(float((diff > 0).mean())),
              "left_to_host": left_to_host}
    records.append(record)
    emit(record)
  return records
