"""Fine-tuning (Table 2, "*"): a trained workdir's network, continued on a new dataset.

    python -m alexnet_jax.main --config=configs/finetune.py --workdir=NEW \
        --config.init_from.workdir=PRETRAINED --config.model.num_classes=N \
        --config.data.name=image_folder --config.data.data_dir=ROOT

Every layer is copied from PRETRAINED's newest checkpoint (`init_from.step` / `init_from.best`
pick another) except fc8, initialised afresh for the N new classes. The `:conv6` variant adds
Table 2's sixth convolutional layer over the last pooling layer, new as well. The model section
must otherwise be PRETRAINED's (a differing layer is a one-line error naming it).
"""

from configs import paper


def get_config(variant: str = ""):
  conv6 = variant == "conv6"
  config = paper.get_config()
  config.model.extra_conv6 = conv6
  config.init_from.new_layers = ("fc8", "conv6") if conv6 else ("fc8",)
  config.optimizer.learning_rate = 0.001
  config.schedule.update(dict(kind="steps", drop_epochs=(10.0,)))
  config.num_epochs = 15.0
  return paper.apply_ablation(config, "" if conv6 else variant)
