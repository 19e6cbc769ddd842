"""What the training loop runs on (`train_start.py`): the checks its start makes before
compiling anything. Its restores: test_reliability.py, test_checkpoint.py."""

import pytest

from alexnet_jax import train
from alexnet_jax.errors import UserError
from conftest import small_config


def test_invalid_combinations_fail_before_compiling(tmp_path):
  config = small_config()
  config.data.batch_size = 6  # not a multiple of the data axis (4 on 8 devices, model 2)
  with pytest.raises(UserError, match="data.batch_size=6 must be a positive multiple"):
    train.train_and_evaluate(config, str(tmp_path))
  config = small_config()
  config.mesh.model = 3
  with pytest.raises(UserError, match="'model' axis"):
    train.train_and_evaluate(config, str(tmp_path))
  config = small_config()  # a batch of one image more than the set: not one whole step
  config.data.update(dict(synthetic_train_size=15, batch_size=16))
  with pytest.raises(UserError, match="batch_size 16 is larger than the 15 training images"):
    train.train_and_evaluate(config, str(tmp_path))
