"""Fine-tuning (Table 2, "*"): a trained workdir's network, continued on a new dataset.

    python -m alexnet_jax.main --config=configs/finetune.py --workdir=NEW \
        --config.init_from.workdir=PRETRAINED --config.model.num_classes=N \
        --config.data.name=image_folder --config.data.data_dir=ROOT

Every layer is copied from PRETRAINED's newest checkpoint (`init_from.step` / `init_from.best`
pick another) except fc8, initialised afresh for the N new classes. The model section must
otherwise be PRETRAINED's (a differing layer is a one-line error naming it).

Table 2's sixth convolutional layer, two ways:
* `:conv6`, the paper's route: PRETRAINED was trained with the sixth layer
  (`configs/paper.py:conv6` on the first dataset) and fine-tuning copies it with the rest.
* `:new_conv6`, not the paper's: a freshly initialised conv6 inserted between PRETRAINED's
  pool5 and its fc6 (a source trained without conv6), learned during fine-tuning only.
"""

from alexnet_jax.configuration import apply_variants
from alexnet_jax.configs import paper


def get_config(variant: str = ""):
  config = paper.get_config()
  config.optimizer.learning_rate = 0.001
  config.schedule.update(dict(kind="steps", drop_epochs=(10.0,)))
  config.num_epochs = 15.0
  config.init_from.required = True
  return apply_variants(config, variant)
