"""Table 2's "1 CNN*" (39.0 % / 16.6 %), the 2012 way: run #146-2012-2011, which fine-tuned on
ILSVRC-2012 a network with the 2012 code's conv6 (over both columns' pool5) pre-trained on the
ImageNet Fall 2011 release. Its layer-params-146-2012-2011.cfg notes, replayed:

    python -m alexnet_jax.main --config=configs/paper_code_finetune.py --workdir=NEW \\
        --config.init_from.workdir=PRETRAINED --config.data.data_dir=DATA_DIR

PRETRAINED is a configs/paper_code.py:conv6 workdir trained on the pre-training data (the
2012 chain, docs/fidelity.md: #145 -> #146-2009 on the 2009 release with conv6 -> #146-2011 on
Fall 2011 -> this run). Every layer is copied but fc8, a new 1000-class head.
"""

from alexnet_jax.configuration import apply_variants
from alexnet_jax.configs import paper_code

# The notes count epochs from 1: "epoch 5" is `epoch 4` here. A "batch" of the notes is one of
# cuda-convnet's data-batch files, 1,024 images (fix-big-imgnet.py: BATCH_SIZE = 1024), trained
# as eight 128-image minibatches: "300 batches" is `step 2400`.
RUN_146_2012_2011 = (
    # init epsw 0.0001 on conv1, 0.001 elsewhere; epsB as the final file has it throughout:
    # 0.02, and 0.022 on conv6
    "epoch 0: epsW=0.001 conv1.epsW=0.0001 epsB=0.02 conv6.epsB=0.022",
    "step 2400: fc8.epsW=0.01",  # 300 batches: set epsw to 0.01 from 0.001 on fc1000
    "epoch 4: conv1.epsW=0.00001",  # epoch 5: set conv1 epsw to 0.00001 from 0.0001
    # epoch 7: set conv1 epsw to 0 from 0.00001 (the final file has conv1's epsB 0 too)
    "epoch 6: conv1.epsW=0 conv1.epsB=0",
    "epoch 8: fc8.epsW=0.001",  # epoch 9: set fc1000 epsw to 0.001 from 0.01
    "epoch 21: epsW=0.0001",  # epoch 22: set epsw to 0.0001 from 0.001
    "epoch 37: pca_lighting=0",  # epoch 38: set color noise to 0 from 0.1
    "epoch 41: epsW=0.00001",  # epoch 42: set epsw to 0.00001 from 0.0001
)


def get_config(variant: str = ""):
  config = paper_code.get_config()
  config.model.extra_conv6 = True
  config.schedule.events = RUN_146_2012_2011
  config.num_epochs = 53.0  # epoch 54: killed
  config.init_from.new_layers = ("fc8",)
  config.init_from.required = True
  return apply_variants(config, variant)
