"""Fine-tuning (`finetune.py`, Table 2 "*"): the source's network and input settings, the
backbone copied under a new head, the paper's conv6 route, and every mismatch named at once."""

import jax
import numpy as np
import pytest

from alexnet_jax import checkpoint_meta, checkpoint_params, inference, train
from alexnet_jax.configuration import apply_variants
from alexnet_jax.errors import UserError
from conftest import command, load_config, small_config


def test_fine_tuning_restores_the_backbone_under_a_new_head(straight_run, tmp_path):
  workdir, _ = straight_run
  source = inference.load(workdir)
  config = small_config(epochs=0.25)  # one step
  config.model.num_classes = 4
  apply_variants(config, "new_conv6")  # a fresh conv6
  config.init_from.workdir = workdir
  config.optimizer.learning_rate = 1e-9  # the step barely moves the copied layers
  new = str(tmp_path / "new")
  train.train_and_evaluate(config, new, overridden=["model.extra_conv6"])
  tuned = inference.load(new)
  assert tuned.class_names == ("0", "1", "2", "3")
  assert tuned.params["fc8"]["kernel"].shape == (2, 128, 4)
  assert tuned.params["conv6"]["kernel"].shape == (2, 3, 3, 32, 32)
  for name in ("conv1", "conv5", "fc6", "fc7"):
    np.testing.assert_allclose(jax.device_get(tuned.params[name]["kernel"]),
                               jax.device_get(source.params[name]["kernel"]), atol=1e-6)
  config.model.conv_features = (32, 64, 96, 96, 48)  # given: kept, and every mismatch named
  config.model.fc_features = (128, 128)
  with pytest.raises(UserError, match=r"conv5\.bias has shape .*conv5\.kernel has shape .*"
                                      r"fc6\.kernel has shape .*fc7\.kernel has shape"):
    train.train_and_evaluate(config, str(tmp_path / "mismatch"), overridden=[
        "model.extra_conv6", "model.conv_features", "model.fc_features"])


def _source(tmp_path):
  """A source like the embedded default's: grey images, ÷64 pixel scale, its own network."""
  config = small_config(epochs=0.5)
  config.model.in_channels = 1
  config.model.fc_features = (128, 128)
  workdir = str(tmp_path / "source")
  train.train_and_evaluate(config, workdir)
  return workdir


@pytest.mark.slow
def test_fine_tuning_takes_the_sources_network_and_input_and_refuses_another_input(tmp_path):
  """configs/finetune.py is the paper's network on raw pixels; fine-tuned from a ÷64 grey
  network it used to train with pixel_scale 1 (|g| 10.4, 66.7 % error) after eight one-at-a-
  time mismatch errors."""
  source = _source(tmp_path)
  config = load_config("finetune", overrides=["data.name=synthetic", "data.image_size=36",
                                              "data.batch_size=16", "data.eval_batch_size=16",
                                              "data.synthetic_train_size=32",
                                              "data.synthetic_eval_size=16", "num_epochs=0.5",
                                              "model.num_classes=3", "checkpoint.every_steps=1"])
  config.init_from.workdir = source
  tuned = str(tmp_path / "tuned")
  train.train_and_evaluate(config, tuned, overridden=["model.num_classes"])
  _, meta = checkpoint_params.newest_meta(tuned)
  used = checkpoint_meta.config_of(meta)
  assert used.data.pixel_scale == 1 / 64 and used.model.in_channels == 1
  assert used.model.input_size == 32 and tuple(used.model.fc_features) == (128, 128)
  assert used.model.num_classes == 3
  config.data.pixel_scale = 1.0  # given on the command line: refused, naming every one
  config.model.in_channels = 3
  with pytest.raises(UserError, match=r"trained on other input \(model\.in_channels is 3 here "
                                      r"and 1 there; data\.pixel_scale is 1\.0 here and 0\.015625 "
                                      r"there\).*accept_input_change"):
    train.train_and_evaluate(config, str(tmp_path / "other"),
                             overridden=["data.pixel_scale", "model.in_channels"])
  assert not (tmp_path / "other" / "checkpoints").exists()


@pytest.mark.slow
def test_table_2_route_pretrains_with_conv6_and_fine_tunes_it_on_another_dataset(
    straight_run, tmp_path):
  """The paper's "*" models: conv6 is trained on the first dataset (configs/paper.py:conv6),
  then fine-tuning on the second copies it with every other layer but fc8
  (configs/finetune.py:conv6)."""
  assert load_config("paper", "conv6").model.extra_conv6
  assert load_config("finetune", "conv6").init_from.new_layers == ("fc8",)
  pretrain = apply_variants(small_config(epochs=1.0), "conv6")
  first = str(tmp_path / "first")
  train.train_and_evaluate(pretrain, first)
  source = inference.load(first)
  assert source.params["conv6"]["kernel"].shape == (2, 3, 3, 32, 32)

  tune = apply_variants(small_config(epochs=0.25), "conv6")
  tune.model.num_classes = 3  # the second dataset: other images, other classes
  tune.data.update(dict(synthetic_train_size=48, synthetic_eval_size=24))
  tune.init_from.workdir = first
  tune.optimizer.learning_rate = 1e-9  # the step barely moves the copied layers
  second = str(tmp_path / "second")
  train.train_and_evaluate(tune, second)
  tuned = inference.load(second)
  for name in ("conv1", "conv5", "conv6", "fc6", "fc7"):
    np.testing.assert_allclose(jax.device_get(tuned.params[name]["kernel"]),
                               jax.device_get(source.params[name]["kernel"]), atol=1e-6)
  assert tuned.params["fc8"]["kernel"].shape == (2, 128, 3)

  without = small_config(epochs=0.25)  # a conv6 source, conv6 switched off on the command line
  without.init_from.workdir = first
  with pytest.raises(UserError, match=r"it has a conv6 layer and this config does not \(set "
                                      r"--config\.model\.extra_conv6=True"):
    train.train_and_evaluate(without, str(tmp_path / "without"),
                             overridden=["model.extra_conv6"])
  tune.init_from.workdir = straight_run[0]  # the paper's route from a source without conv6
  with pytest.raises(UserError, match="no conv6 layer to copy.*new_conv6"):
    train.train_and_evaluate(tune, str(tmp_path / "no_conv6"), overridden=["model.extra_conv6"])


# ----------------------------------------------------------------------------- a small folder

def _colour_folder(root, per_class=(16, 4)):
  """A 3-class folder of 60 RGB JPEGs (train 48, val 12): each class lifts one channel."""
  from PIL import Image

  rng = np.random.default_rng(0)
  for split, n in zip(("train", "val"), per_class):
    for c, name in enumerate(("red", "green", "blue")):
      folder = root / split / name
      folder.mkdir(parents=True)
      for i in range(n):
        image = rng.integers(0, 80, (40 + i, 50, 3), dtype=np.uint8)
        image[..., c] += 150
        Image.fromarray(image).save(folder / f"{i}.jpg")


@pytest.mark.slow
def test_a_small_folder_fine_tunes_in_one_try_with_the_readmes_command(straight_run, tmp_path):
  """The README's small-dataset command on 60 RGB images: statistics computed at the start
  (no data.stats first), `data.stats` with the same flags writes the source's form, a batch
  larger than the training set is one line naming the flag, a fine-tuning config without a
  source is refused, and `freeze_copied` keeps the copied layers. Mutations: the statistics
  fallback for small folders removed -> red ('no dataset statistics'); cli not applying the
  source's settings -> data.stats writes 256 x 256 statistics, red."""
  source, _ = straight_run
  _colour_folder(tmp_path / "folder")
  flags = ["--config=configs/finetune.py", f"--config.init_from.workdir={source}",
           "--config.model.num_classes=3", "--config.data.name=image_folder",
           f"--config.data.data_dir={tmp_path}/folder"]
  refused = command("main", *flags, f"--workdir={tmp_path}/big", timeout=600)
  assert refused.returncode == 2 and "Traceback" not in refused.stderr
  assert "error: data.batch_size 128 is larger than the 48 training images" in refused.stderr
  assert "--config.data.batch_size to at most 48" in refused.stderr
  alone = command("main", "--config=configs/finetune.py", f"--workdir={tmp_path}/none",
                  timeout=600)
  assert alone.returncode == 2 and "--config.init_from.workdir=DIR" in alone.stderr

  small = [*flags, "--config.data.batch_size=16", "--config.optimizer.learning_rate=0.01",
           "--config.num_epochs=2"]
  tuned = command("main", *small, f"--workdir={tmp_path}/tuned", timeout=600)
  assert tuned.returncode == 0, tuned.stderr[-3000:]
  assert "computing them from the 48 training images" in refused.stderr + tuned.stderr
  assert "trained to step 6 of 6" in tuned.stdout
  stats = command("data.stats", *small, f"--output={tmp_path}/stats.npz", timeout=600)
  assert stats.returncode == 0, stats.stderr[-3000:]
  with np.load(tmp_path / "stats.npz") as f:
    assert f["mean"].shape == (36, 36, 3)  # the source's stored form, not finetune.py's 256

  frozen = command("main", *small, "--config.init_from.freeze_copied=True",
                   f"--workdir={tmp_path}/frozen", timeout=600)
  assert frozen.returncode == 0, frozen.stderr[-3000:]
  before, after = inference.load(source).params, inference.load(str(tmp_path / "frozen")).params
  for name in ("conv1", "conv3", "fc7"):
    np.testing.assert_array_equal(jax.device_get(after[name]["kernel"]),
                                  jax.device_get(before[name]["kernel"]))
  assert after["fc8"]["kernel"].shape[-1] == 3


def test_the_source_is_read_at_its_chosen_step_and_a_resume_reads_the_runs_own_newest(
    straight_run, tmp_path):
  """`init_from.step` picks the source's checkpoint; a resumed fine-tune reads its own
  workdir's newest, where that step need not exist. Mutation: the own-workdir test `!=` ->
  `==` (the step looked for in the wrong workdir) -> red."""
  from alexnet_jax import finetune

  workdir, _ = straight_run
  config = small_config(epochs=0.25)
  config.init_from.step = 10**6
  config.init_from.workdir = str(tmp_path / "the_source")  # resuming: the run is `workdir`
  assert finetune.inherit(config, workdir).model.num_classes == config.model.num_classes
  config.init_from.workdir = workdir  # fine-tuning from `workdir` at a step it does not have
  with pytest.raises(UserError, match="no checkpoint for step 1000000 in"):
    finetune.inherit(config, workdir)
