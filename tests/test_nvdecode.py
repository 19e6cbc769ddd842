"""`data.decoder=nvimgcodec` (`data.nvdecode`): on nvImageCodec's CPU backend, the training
patches of a prepared store bit for bit the default decoder's."""

import sys

import numpy as np
import pytest

from alexnet_jax.data import nvdecode, prepare, store_format
from alexnet_jax.errors import UserError
from conftest import build_input, folder_config, image_folder_tree

pytest.importorskip("nvidia.nvimgcodec", reason="the nvimgcodec extra")


def _batches(config, decoder, count=4):
  config.data.decoder = decoder
  inp = build_input(config)
  try:
    return [next(inp.train) for _ in range(count)]
  finally:
    inp.train.close()


@pytest.mark.parametrize("channels", [3, 1])
def test_the_patches_are_the_default_decoders_bit_for_bit(tmp_path, channels, capfd,
                                                           monkeypatch):
  """Mutations: the region's top and left swapped -> red; the decoder not used (the default
  path taken) -> the count of patches it decoded is 0 (red)."""
  image_folder_tree(tmp_path / "src")
  config = folder_config(tmp_path / "src")
  config.model.in_channels = channels
  config.data.prepared_dir = str(tmp_path / "store")
  prepare.prepare(config.data, channels=channels, num_classes=3, shard_size=4, workers=1,
                  progress=False)
  decoded = []
  real = nvdecode.PatchDecoder.patches

  def counted(self, *args):
    out = real(self, *args)
    decoded.extend(p is not None for p in out)
    return out

  monkeypatch.setattr(nvdecode.PatchDecoder, "patches", counted)
  theirs = _batches(config.copy_and_resolve_references(), "nvimgcodec")
  monkeypatch.undo()
  ours = _batches(config.copy_and_resolve_references(), "simplejpeg")
  # Every patch (those of the batches read ahead too), none left to the default decoder.
  assert len(decoded) >= 4 * config.data.batch_size and all(decoded)
  for want, got in zip(ours, theirs):
    assert want["image"].shape[-1] == channels
    for key in want:
      np.testing.assert_array_equal(got[key], want[key], err_msg=key)
  assert "nvjpeg" not in capfd.readouterr().err.lower()  # its missing-GPU-library lines


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
  processes and the default decoder in-process: bitwise the same parameters. Mutation: the
  region's top and left swapped -> red."""
  from alexnet_jax import train
  from conftest import assert_same_params

  image_folder_tree(tmp_path / "src")
  config = folder_config(tmp_path / "src")
  config.data.prepared_dir = str(tmp_path / "store")
  config.num_epochs = 2.0
  prepare.prepare(config.data, channels=3, num_classes=3, shard_size=4, workers=1,
                  progress=False)
  steps = []
  for name, decoder, workers in (("default", "simplejpeg", 0), ("nv", "nvimgcodec", 2)):
    run = config.copy_and_resolve_references()
    run.data.update(decoder=decoder, workers=workers)
    steps.append(train.train_and_evaluate(run, str(tmp_path / name)).step)
  assert steps[0] == steps[1] > 0
  assert_same_params(str(tmp_path / "nv"), str(tmp_path / "default"), step=steps[0])
