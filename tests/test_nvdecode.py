"""`data.decoder=nvimgcodec` (`data.nvdecode`): on nvImageCodec's CPU backend, the training
patches of a prepared store bit for bit the default decoder's, decoded in the input workers
or, from the JPEGs they send, in the training process (`data.decode_on=device`, a GPU's way)."""

import logging
import os
import sys

import numpy as np
import pytest

from alexnet_jax.data import augment, nvdecode, prepare, sources, store_format
from alexnet_jax.errors import UserError
from conftest import build_input, folder_config, image_folder_tree

pytest.importorskip("nvidia.nvimgcodec", reason="the nvimgcodec extra")


def _batches(config, decoder, count=4, decode_on="auto"):
  config.data.update(decoder=decoder, decode_on=decode_on)
  inp = build_input(config)
  try:
    return [next(inp.train) for _ in range(count)]
  finally:
    inp.train.close()


def _prepared(tmp_path, channels=3):
  image_folder_tree(tmp_path / "src")
  config = folder_config(tmp_path / "src")
  config.model.in_channels = channels
  config.data.prepared_dir = str(tmp_path / "store")
  prepare.prepare(config.data, channels=channels, num_classes=3, shard_size=4, workers=1,
                  progress=False)
  return config


def _assert_same(ours, theirs):
  for want, got in zip(ours, theirs, strict=True):
    assert set(got) == set(want)
    for key in want:
      np.testing.assert_array_equal(np.asarray(got[key]), want[key], err_msg=key)


def _calls(monkeypatch, owner, name: str) -> list:
  """What each call of `owner.name` returns, as it runs."""
  results, real = [], getattr(owner, name)

  def recorded(self, *args):
    results.append(real(self, *args))
    return results[-1]

  monkeypatch.setattr(owner, name, recorded)
  return results


def _decoded(calls: list) -> list[bool]:
  """Whether each patch of the decoder's `_calls` was decoded (not None)."""
  return [p is not None for out in calls for p in out]


@pytest.mark.parametrize("channels", [3, 1])
def test_the_patches_are_the_default_decoders_bit_for_bit(tmp_path, channels, capfd,
                                                           monkeypatch):
  """Mutations: the region's top and left swapped -> red; the decoder not used (the default
  path taken) -> the count of patches it decoded is 0 (red)."""
  config = _prepared(tmp_path, channels)
  calls = _calls(monkeypatch, nvdecode.PatchDecoder, "patches")
  theirs = _batches(config.copy_and_resolve_references(), "nvimgcodec")
  monkeypatch.undo()
  ours = _batches(config.copy_and_resolve_references(), "simplejpeg")
  # Every patch (those of the batches read ahead too), none left to the default decoder.
  decoded = _decoded(calls)
  assert len(decoded) >= 4 * config.data.batch_size and all(decoded)
  _assert_same(ours, theirs)
  assert theirs[0]["image"].shape[-1] == channels
  assert "nvjpeg" not in capfd.readouterr().err.lower()  # its missing-GPU-library lines


@pytest.mark.parametrize("channels,workers", [(3, 2), (1, 0)])
def test_decoded_in_the_training_process_the_patches_are_the_default_decoders(
    tmp_path, channels, workers, monkeypatch):
  """The workers send the JPEGs (`batch.encoded_train`) and `DeviceDecoder` decodes them here.
  Each JPEG is cut from the sent buffer whole, from its start-of-image marker to its end.
  Mutations: its region's top and left swapped -> red; `decode_on=device` not heeded (the
  workers decode) -> none decoded here (red); the first JPEG cut from byte 1 (nvImageCodec
  still decodes it) -> red."""
  config = _prepared(tmp_path, channels)
  config.data.workers = workers
  sent, cut = [], nvdecode.DeviceDecoder._decoded
  monkeypatch.setattr(nvdecode.DeviceDecoder, "_decoded",
                      lambda self, jpegs, boxes: (sent.extend(jpegs), cut(self, jpegs, boxes))[1])
  calls = _calls(monkeypatch, nvdecode.DeviceDecoder, "_decoded")
  theirs = _batches(config.copy_and_resolve_references(), "nvimgcodec", decode_on="device")
  ours = _batches(config.copy_and_resolve_references(), "simplejpeg")
  decoded = _decoded(calls)
  assert len(decoded) >= 4 * config.data.batch_size and all(decoded)
  assert len(sent) == len(decoded)
  assert all(bytes(j[:2]) == b"\xff\xd8" and bytes(j[-2:]) == b"\xff\xd9" for j in sent)
  _assert_same(ours, theirs)
  assert theirs[0]["image"].shape[-1] == channels


def test_batches_lent_in_place_are_decoded_too(tmp_path, monkeypatch):
  """On a GPU the device copy reads the workers' slots in place (`FromStep.lend`): the JPEGs
  are decoded from them. Mutation: a lent batch handed on undecoded -> red."""
  from alexnet_jax.data import workers

  config = _prepared(tmp_path)
  config.data.update(decoder="nvimgcodec", decode_on="device", workers=2)
  ours = _batches(config.copy_and_resolve_references(), "simplejpeg")
  inp = build_input(config)
  monkeypatch.setattr(workers.jax, "default_backend", lambda: "gpu")
  assert inp.train.lend()
  try:  # each copied before the next is taken: its slot is then another batch's
    theirs = [{k: np.array(v) for k, v in next(inp.train).items()} for _ in range(4)]
  finally:
    inp.train.close()
  _assert_same(ours, theirs)


def test_patches_decoded_into_device_memory_become_one_device_array(tmp_path, monkeypatch,
                                                                     caplog):
  """A GPU's decoder returns images in device memory: they are taken as jax arrays (DLPack)
  and stacked on the device with the host's patches (here the CPU backend's images, handed
  over as a GPU's are, and one record that is no JPEG); where DLPack refuses them, copied
  through the host with one warning. Mutations: a host patch left out of the stack's order ->
  red; device images read as host arrays -> not a jax.Array (red); the refusal not caught ->
  red."""
  import jax

  from alexnet_jax.data import store_format

  real_open, real_read = nvdecode.DeviceDecoder._open, store_format.PreparedSplit.__getitem__
  kind = nvdecode._module().ImageBufferKind.STRIDED_DEVICE

  class OnDevice:  # an image in "device memory": DLPack only
    def __init__(self, image):
      self._array, self.shape, self.buffer_kind = np.asarray(image), image.shape, kind

    def __dlpack__(self, stream=None):
      return self._array.__dlpack__()

    def __dlpack_device__(self):
      return self._array.__dlpack_device__()

    def cpu(self):
      return self._array

  class GpuLike:
    def __init__(self, decoder):
      self._decoder = decoder

    def decode(self, streams, params):
      return [None if i is None else OnDevice(i) for i in self._decoder.decode(streams,
                                                                                params=params)]

  def opened(self):
    decoder, params = real_open(self)
    return GpuLike(decoder), params

  def damaged(self, index):
    record = real_read(self, index)
    return {**record, "encoded": b"not a jpeg"} if index == 2 else record

  monkeypatch.setattr(nvdecode.DeviceDecoder, "_open", opened)
  monkeypatch.setattr(store_format.PreparedSplit, "__getitem__", damaged)
  on_host = _calls(monkeypatch, augment.TrainBatch, "host_patch")
  config = _prepared(tmp_path)
  theirs = _batches(config.copy_and_resolve_references(), "nvimgcodec", decode_on="device")
  ours = _batches(config.copy_and_resolve_references(), "simplejpeg")
  assert all(isinstance(b["image"], jax.Array) for b in theirs)
  assert on_host  # the record that is no JPEG
  _assert_same(ours, theirs)
  # Where DLPack refuses them (a jax and nvImageCodec that do not agree): through the host.
  def refused(image):
    raise TypeError("unsupported DLPack device")

  monkeypatch.setattr(jax.dlpack, "from_dlpack", refused)
  with caplog.at_level(logging.WARNING):
    _assert_same(ours, _batches(config.copy_and_resolve_references(), "nvimgcodec",
                                decode_on="device"))
  said = [r.getMessage() for r in caplog.records if "DLPack" in r.getMessage()]
  assert len(said) == 1 and "copied through the host" in said[0]


def test_a_jpeg_not_sent_or_unreadable_is_decoded_on_the_host(tmp_path, monkeypatch):
  """A batch's buffer too small for all its JPEGs, and a record that is no JPEG: those
  patches come from the default decoder (the unreadable one replaced and counted) and the
  batches are the default decoder's. Mutations: a patch not sent decoded from the bytes
  after it (`jpeg_end` ignored) -> red; the host's skipped count dropped -> red."""
  from alexnet_jax.data import store_format

  config = _prepared(tmp_path)
  real_read = store_format.PreparedSplit.__getitem__

  def damaged(self, index):
    record = real_read(self, index)
    return {**record, "encoded": b"not a jpeg"} if index == 1 else record

  monkeypatch.setattr(store_format.PreparedSplit, "__getitem__", damaged)
  split = sources.load(config.data, channels=3, num_classes=3).train
  sizes = sorted(len(real_read(split, i)["encoded"]) for i in range(len(split)))
  # Room for about half of a batch's JPEGs.
  monkeypatch.setattr(nvdecode, "JPEG_BYTES_PER_IMAGE", sizes[len(sizes) // 2] // 2)
  on_host = _calls(monkeypatch, augment.TrainBatch, "host_patch")
  theirs = _batches(config.copy_and_resolve_references(), "nvimgcodec", count=8,
                    decode_on="device")
  ours = _batches(config.copy_and_resolve_references(), "simplejpeg", count=8)
  _assert_same(ours, theirs)
  assert 0 < len(on_host) < 8 * config.data.batch_size
  assert sum(int(b["skipped"].sum()) for b in ours) > 0  # the damaged record was met


def test_a_device_that_decodes_nothing_is_said_once(tmp_path, monkeypatch, caplog):
  """No nvJPEG on a GPU node, say: every patch from the host, and one warning naming the
  fix; none when no JPEG was sent to it. Mutation: the warning dropped -> red."""
  config = _prepared(tmp_path)
  monkeypatch.setattr(nvdecode.DeviceDecoder, "_decoded", lambda self, jpegs, boxes:
                      [None] * len(jpegs))
  with caplog.at_level(logging.WARNING):
    theirs = _batches(config.copy_and_resolve_references(), "nvimgcodec", decode_on="device")
  _assert_same(_batches(config.copy_and_resolve_references(), "simplejpeg"), theirs)
  said = [r.getMessage() for r in caplog.records if "decoded none" in r.getMessage()]
  assert len(said) == 1 and "alexnet_jax[nvimgcodec]" in said[0]

  # A batch whose JPEGs were none of them sent (no room in its buffer) says nothing of the
  # device. Mutation: `(ends > starts).any()` -> `>=` -> red.
  monkeypatch.undo()
  monkeypatch.setattr(nvdecode, "JPEG_BYTES_PER_IMAGE", 1)
  caplog.clear()
  with caplog.at_level(logging.WARNING):
    theirs = _batches(config.copy_and_resolve_references(), "nvimgcodec", decode_on="device")
  _assert_same(_batches(config.copy_and_resolve_references(), "simplejpeg"), theirs)
  assert not [r for r in caplog.records if "decoded none" in r.getMessage()]


def test_where_it_decodes_is_checked_at_load(tmp_path):
  """Mutation: decode_on=device allowed without a prepared store -> no error (red)."""
  from alexnet_jax.configs import paper

  data = paper.get_config().data
  data.decode_on = "gpu"
  with pytest.raises(UserError, match="data.decode_on must be one of auto, host, device"):
    nvdecode.check_decode_on(data)
  data.decode_on = "device"
  with pytest.raises(UserError, match="needs data.decoder=nvimgcodec"):
    nvdecode.check_decode_on(data)
  data.decoder = "nvimgcodec"
  nvdecode.check_decode_on(data)
  with pytest.raises(UserError, match="decodes the prepared store's JPEGs"):
    nvdecode.decodes_on_device(data, stored_form=False)
  assert nvdecode.decodes_on_device(data, stored_form=True)
  data.decode_on = "auto"  # on a CPU: the workers decode
  assert not nvdecode.decodes_on_device(data, stored_form=True)
  assert not nvdecode.decodes_on_device(data, stored_form=False)


def test_on_a_gpu_auto_decodes_the_store_on_the_device_with_nvimgcodec_only(monkeypatch):
  """`decode_on=auto` on a CUDA device: nvImageCodec's patches of a prepared store are decoded
  there; the default decoder, `decode_on=host` and the originals stay in the workers.
  Mutation: `decoder != 'nvimgcodec' or decode_on == 'host'` -> `and` (the default decoder
  sent to the device on a GPU) -> red."""
  from alexnet_jax.configs import paper

  monkeypatch.setattr(nvdecode.jax, "default_backend", lambda: "gpu")
  data = paper.get_config().data
  for decoder, decode_on, stored_form, on_device in (
      ("nvimgcodec", "auto", True, True), ("nvimgcodec", "auto", False, False),
      ("nvimgcodec", "host", True, False), (data.decoder, "auto", True, False),
      (data.decoder, "host", True, False)):
    data.decoder, data.decode_on = decoder, decode_on
    assert nvdecode.decodes_on_device(data, stored_form=stored_form) is on_device, (
        decoder, decode_on, stored_form)


def test_an_unreadable_record_is_left_to_the_default_decoder():
  patches = nvdecode.PatchDecoder(3).patches([b"not a jpeg"], np.zeros((1, 3), np.int32), 4)
  assert patches == [None]


def test_a_decoder_that_is_not_there_is_one_line(monkeypatch):
  """Mutation: the import not tried at config load -> no error (red)."""
  with pytest.raises(UserError, match="data.decoder must be one of simplejpeg, nvimgcodec"):
    nvdecode.check_available("pillow")
  monkeypatch.setitem(sys.modules, "nvidia.nvimgcodec", None)
  monkeypatch.setattr(nvdecode, "_LOADED", [])
  with pytest.raises(UserError, match=r"pip install 'alexnet_jax\[nvimgcodec\]'"):
    nvdecode.check_available("nvimgcodec")
  assert store_format.PreparedSplit.stored_form


@pytest.mark.slow
def test_it_trains_the_default_decoders_network_in_worker_processes(tmp_path):
  """The same run from a prepared store, nvImageCodec's CPU backend decoding in 2 worker
  processes, or in the training process from the JPEGs they send, and the default decoder
  in-process: bitwise the same parameters. Mutation: the region's top and left swapped (in
  `PatchDecoder`, in `DeviceDecoder`) -> red."""
  from alexnet_jax import train
  from conftest import assert_same_params

  image_folder_tree(tmp_path / "src")
  config = folder_config(tmp_path / "src")
  config.data.prepared_dir = str(tmp_path / "store")
  config.num_epochs = 2.0
  prepare.prepare(config.data, channels=3, num_classes=3, shard_size=4, workers=1,
                  progress=False)
  steps = []
  runs = (("default", "simplejpeg", "auto"), ("workers", "nvimgcodec", "host"),
          ("training_process", "nvimgcodec", "device"))
  for name, decoder, decode_on in runs:
    run = config.copy_and_resolve_references()
    run.data.update(decoder=decoder, workers=0 if name == "default" else 2, decode_on=decode_on)
    steps.append(train.train_and_evaluate(run, str(tmp_path / name)).step)
  assert steps[0] == steps[1] == steps[2] > 0
  for name, _, _ in runs[1:]:
    assert_same_params(str(tmp_path / name), str(tmp_path / "default"), step=steps[0])


def test_what_nvimagecodec_prints_while_it_loads_is_dropped_and_the_output_restored(capfd):
  """Its C code prints on stdout (and may on stderr) while a decoder is made: both silenced
  for that time, both given back after. Mutations: stdout left out of the silencing, or of
  the saving, or of the restoring -> red."""
  with nvdecode._quiet():
    os.write(1, b"from C on stdout\n")
    os.write(2, b"from C on stderr\n")
  os.write(1, b"after on stdout\n")
  os.write(2, b"after on stderr\n")
  out, err = capfd.readouterr()
  assert (out, err) == ("after on stdout\n", "after on stderr\n")
