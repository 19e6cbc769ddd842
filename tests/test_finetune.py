"""Fine-tuning (`finetune.py`, Table 2 "*"): the backbone copied under a new head, and the
paper's conv6 route."""


import numpy as np
import pytest

from alexnet_jax import inference
from alexnet_jax.errors import UserError


def test_fine_tuning_restores_the_backbone_under_a_new_head(straight_run, tmp_path):
  import jax

  from alexnet_jax import train
  from configs import finetune, paper
  from conftest import small_config

  workdir, _ = straight_run
  source = inference.load(workdir)
  config = small_config(epochs=0.25)  # one step
  config.model.num_classes = 4
  paper.apply_variants(config, "new_conv6", extra=finetune.VARIANTS)  # a fresh conv6
  config.init_from.workdir = workdir
  config.optimizer.learning_rate = 1e-9  # the step barely moves the copied layers
  new = str(tmp_path / "new")
  train.train_and_evaluate(config, new)
  tuned = inference.load(new)
  assert tuned.class_names == ("0", "1", "2", "3")
  assert tuned.params["fc8"]["kernel"].shape == (2, 128, 4)
  assert tuned.params["conv6"]["kernel"].shape == (2, 3, 3, 32, 32)
  for name in ("conv1", "conv5", "fc6", "fc7"):
    np.testing.assert_allclose(jax.device_get(tuned.params[name]["kernel"]),
                               jax.device_get(source.params[name]["kernel"]), atol=1e-6)
  config.model.conv_features = (32, 64, 96, 96, 48)
  with pytest.raises(UserError, match=r"conv5\.(bias|kernel) has shape"):
    train.train_and_evaluate(config, str(tmp_path / "mismatch"))


def test_table_2_route_pretrains_with_conv6_and_fine_tunes_it_on_another_dataset(
    straight_run, tmp_path):
  """The paper's "*" models: conv6 is trained on the first dataset (configs/paper.py:conv6),
  then fine-tuning on the second copies it with every other layer but fc8
  (configs/finetune.py:conv6)."""
  import jax

  from alexnet_jax import train
  from configs import finetune, paper
  from conftest import load_config, small_config

  assert load_config("paper", "conv6").model.extra_conv6
  assert load_config("finetune", "conv6").init_from.new_layers == ("fc8",)
  pretrain = paper.apply_variants(small_config(epochs=1.0), "conv6")
  first = str(tmp_path / "first")
  train.train_and_evaluate(pretrain, first)
  source = inference.load(first)
  assert source.params["conv6"]["kernel"].shape == (2, 3, 3, 32, 32)

  tune = paper.apply_variants(small_config(epochs=0.25), "conv6", extra=finetune.VARIANTS)
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

  without = small_config(epochs=0.25)  # a conv6 source into a network without it
  without.init_from.workdir = first
  with pytest.raises(UserError, match="it has a conv6 layer and this config does not"):
    train.train_and_evaluate(without, str(tmp_path / "without"))
  tune.init_from.workdir = straight_run[0]  # the paper's route from a source without conv6
  with pytest.raises(UserError, match="no conv6 layer to copy.*new_conv6"):
    train.train_and_evaluate(tune, str(tmp_path / "no_conv6"))
