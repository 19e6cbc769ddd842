"""The paper's network and recipe, as written in the text (Krizhevsky et al. 2012): every
config default, once. The other configs import this one and change a few fields.

Named variants (the ablations of §3.1-§4.2, Table 2's conv6; `alexnet_jax.configuration`)
combine after the colon: `--config=configs/paper.py:no_lrn,one_column`.
docs/fidelity.md maps every field to the paper's text and the 2012 code.
"""

import ml_collections

from alexnet_jax.configuration import apply_variants


def model_config() -> ml_collections.ConfigDict:
  """§3.5 architecture, §3.3 LRN constants, §3.4 pooling, §4.2 dropout, §5 initialisation."""
  return ml_collections.ConfigDict(dict(
      num_classes=1000,
      input_size=224,
      in_channels=3,
      columns=2,
      conv_features=(96, 256, 384, 384, 256),
      conv_kernels=(11, 5, 3, 3, 3),
      conv1_stride=4,
      fc_features=(4096, 4096),
      extra_conv6=False,  # Table 2: a sixth conv layer over pool5 (variant :conv6)
      # conv6 over its own column's pool5 maps (the text's pattern: only conv3 and the fc layers
      # see both columns), or over both (the 2012 code: configs/paper_code.py).
      conv6_across_columns=False,
      # §7: a convolutional layer left out (conv2-conv5; '' keeps all five: variants :no_conv3,
      # ...): its ReLU and normalisation go with it, the pooling layers stay.
      removed_conv="",
      activation="relu",
      lrn=True,
      lrn_size=5,
      lrn_k=2.0,
      lrn_alpha=1e-4,
      lrn_beta=0.75,
      lrn_alpha_over_size=False,
      lrn_conv1_pre_relu=False,
      # LRN's channel window within each column's maps (the 2012 code), or across all the
      # layer's maps (Caffe's bvlc_alexnet; needs mesh.model = 1).
      lrn_across_columns=False,
      # A device holding both columns keeps their maps side by side ('joined') or one array
      # per column ('separate': no concatenations between the layers where they meet; the
      # same sums). A speed lever (`benchmark levers`), not the network.
      column_maps="joined",
      # The 2012 code's spatial response norm after conv2's LRN (configs/paper_code.py):
      # b = a (1 + alpha/size² Σ_{size x size} a²)^-beta.
      response_norm=False,
      response_norm_size=5,
      response_norm_alpha=1e-3,
      response_norm_beta=0.75,
      pool_window=3,
      pool_stride=2,
      dropout=0.5,
      dropout_form="paper",  # §4.2: ×(1-p) at test time; 'inverted': ÷(1-p) in training
      init_std=dict(conv1=0.01, conv2=0.01, conv3=0.01, conv4=0.01, conv5=0.01, conv6=0.01,
                    fc6=0.01, fc7=0.01, fc8=0.01),
      init_bias=dict(conv1=0.0, conv2=1.0, conv3=0.0, conv4=1.0, conv5=1.0, conv6=1.0,
                     fc6=1.0, fc7=1.0, fc8=0.0),
      dtype="float32",  # compute dtype; 'bfloat16' for mixed precision
      param_dtype="float32",
  ))


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.model = model_config()
  # 'model' axis size: -1 puts the two columns on two devices when the device count allows.
  config.mesh = ml_collections.ConfigDict(dict(model=-1))
  config.data = ml_collections.ConfigDict(dict(
      name="imagenet2012",
      data_dir="",  # '' = $TFDS_DATA_DIR, else ~/tensorflow_datasets
      image_size=256,  # §2: shorter side 256, centre 256x256; crops of model.input_size
      batch_size=128,  # §5, global
      eval_batch_size=128,
      mean="pixel",  # §2: the training set's mean image; 'channel' for a per-channel mean
      stats_file="",  # mean image + RGB PCA (python -m alexnet_jax.data.stats); '' = next to data
      # §2's 256x256 form prepared once (python -m alexnet_jax.data.prepare): read when there.
      use_prepared=True,
      prepared_dir="",  # '' = next to the data, in a folder named by the form below
      prepared_quality=90,  # JPEG quality of the stored images (docs/performance.md)
      prepared_chroma="420",  # chroma subsampling: 4:2:0 decodes 27 % faster than 4:4:4
      pca_lighting=0.1,  # §4.1: std of the PCA lighting coefficients α; 0 turns it off
      pixel_scale=1.0,  # §2: raw (centred) RGB values
      # §2: 'shorter_side' (rescale the shorter side, keep the centre square); 'squash' (resize
      # to image_size x image_size ignoring the aspect ratio, as Caffe's convert_imageset).
      resize="shorter_side",
      flip=True,  # §4.1
      # §2's mean at the crop's own position ('crop'), or its centre patch for every crop and
      # mirror ('centre': the 2012 code, configs/paper_code.py).
      mean_patch="crop",
      # The 2012 code (configs/paper_code.py): divide every training crop by
      # 1 + pca_lighting after the lighting shift; 32 consecutive images share one crop and
      # mirror (crop_chunk 1: every image its own, the paper's text).
      lighting_shrink=False,
      crop_chunk=1,
      # §5 does not say: a new order of the training set each epoch (True), or the first
      # epoch's order every epoch (False: the 2012 code, configs/paper_code.py).
      reshuffle_each_epoch=True,
      read_threads=0,  # threads reading, decoding and cropping whole batches; 0: one per core
      prefetch=4,  # batches in flight (at least read_threads)
      # Processes reading, decoding and cropping whole batches (grain's mp_prefetch); -1: one
      # per core less the loop's two for image files, none for in-memory images or on two
      # cores (where threads were measured faster: docs/performance.md).
      workers=-1,
      # Training patches of the prepared store decoded by 'simplejpeg' (simplejpeg/Pillow, the
      # reference) or 'nvimgcodec' (nvImageCodec's batched ROI decode: the nvimgcodec extra).
      decoder="simplejpeg",
      # Where nvImageCodec decodes: 'device' (the training process, into a CUDA device's
      # memory: only the JPEGs cross from the host), 'host' (the input workers, its CPU
      # backend) or 'auto' (the device when it is a GPU).
      decode_on="auto",
      # How training batches cross to the devices: from the host batch ('pageable') or staged
      # in JAX's pinned host memory first ('pinned'); `benchmark transfer` measures both.
      transfer="pageable",
      synthetic_train_size=1024,
      synthetic_eval_size=256,
  ))
  config.optimizer = ml_collections.ConfigDict(dict(
      learning_rate=0.01,  # §5
      momentum=0.9,
      weight_decay=5e-4,
      decay_on="all",  # the update rule written for every parameter; 'kernels' skips biases
      bias_lr_multiplier=1.0,  # §5: "an equal learning rate for all layers"
  ))
  config.schedule = ml_collections.ConfigDict(dict(
      kind="plateau",  # or 'steps' (drop_epochs) or 'constant'
      factor=0.1,
      # A drop after 4 evaluations without an improvement of more than 0.2 points (≈ the std of
      # the top-1 error on 50,000 validation images): docs/fidelity.md, "ε ÷10 on plateaus".
      patience=4,
      min_delta=0.002,
      max_drops=3,  # §5: "reduced three times prior to termination"
      stop_after_last_drop=False,
      drop_epochs=(30.0, 60.0, 80.0),
      # 'recorded': a run's log of per-layer rates and input changes replayed
      # (alexnet_jax/events.py; configs/paper_code.py: run #145), e.g.
      # ('epoch 0: epsW=0.01 epsB=0.02', 'epoch 24: epsW=0.001').
      events=(),
  ))
  # Fine-tuning (Table 2, "*"): start from a trained workdir's layers, new ones in new_layers.
  # The network and its input settings are the source's (finetune.inherit); a pixel scale, mean
  # or channel count given on the command line that differs is refused unless accepted here.
  # `required`: a fine-tuning config (configs/finetune.py) refuses to start without a source;
  # `freeze_copied`: the copied layers keep their values (ε 0), only `new_layers` learn.
  config.init_from = ml_collections.ConfigDict(dict(workdir="", step=0, best=False,
                                                    new_layers=("fc8",),
                                                    accept_input_change=False,
                                                    required=False, freeze_copied=False))
  config.num_epochs = 90.0  # §5: "roughly 90 cycles through the training set"
  config.num_steps = 0  # > 0: the run's length in steps instead (Caffe's solver counts them)
  config.eval_every_epochs = 1.0
  config.eval = ml_collections.ConfigDict(dict(ten_crop_every_eval=False, ten_crop_final=True))
  config.log_every_steps = 100
  config.stats_every_steps = 1000
  config.checkpoint = ml_collections.ConfigDict(dict(every_steps=2000, keep=3))
  config.stall = ml_collections.ConfigDict(dict(check_steps=2000, band=0.02))
  # The run stops, without saving, when the loss or the parameter norm exceeds `factor` times
  # its running mean (or is not finite); 0 checks finiteness only.
  config.divergence = ml_collections.ConfigDict(dict(factor=100.0))
  # A jax.profiler trace of `steps` training steps (0: none) after this process's first
  # `skip_steps` (the first compiles), into tensorboard/plugins/profile/ (alexnet_jax.profiling);
  # `python`: every Python function call too (about 10x the trace, and a slower host).
  config.profile = ml_collections.ConfigDict(dict(steps=0, skip_steps=5, python=False))
  return apply_variants(config, variant)
