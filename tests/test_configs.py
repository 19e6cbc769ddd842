"""The configs shipped with the package against what they reproduce: run #145 and run
#146-2012-2011 of the 2012 code (their layer-params files' notes), and BVLC Caffe's
bvlc_alexnet (its train_val.prototxt and solver.prototxt), transcribed here field by field."""

import pytest

from alexnet_jax import events
from conftest import load_config

LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")


def _rates(config, steps_done, num_train=1_281_167, batch=128):
  """{layer/kind: ε} of a recorded schedule after `steps_done` steps."""
  from alexnet_jax.schedule import LearningRateSchedule

  layers = {name: ("kernel", "bias") for name in LAYERS + (("conv6",) if
                                                            config.model.extra_conv6 else ())}
  s = LearningRateSchedule(config.schedule, config.optimizer, layers, num_train=num_train,
                           batch_size=batch)
  s.advance(steps_done)
  return s.rates()


def test_paper_code_is_run_145():
  """layers-145.cfg / layer-params-145.cfg: the network, and the notes' schedule ("epoch 25:
  set epsw to 0.001 from 0.01" ... "epoch 91: killed"), epsB 0.02 throughout."""
  c = load_config("paper_code")
  m = c.model
  assert (m.lrn_alpha_over_size, m.lrn_conv1_pre_relu, m.response_norm) == (True, True, True)
  assert (m.response_norm_size, m.response_norm_alpha, m.response_norm_beta) == (5, 1e-3, 0.75)
  assert [m.init_std[n] for n in LAYERS] == [0.01, 0.01, 0.03, 0.03, 0.03, 0.01, 0.01, 0.01]
  assert [m.init_bias[n] for n in LAYERS] == [0, 1, 0, 1, 1, 1, 1, 0]
  assert (c.data.lighting_shrink, c.data.crop_chunk, c.data.mean_patch,
          c.data.reshuffle_each_epoch) == (True, 32, "centre", False)
  assert (c.optimizer.decay_on, c.optimizer.momentum, c.optimizer.weight_decay) == (
      "kernels", 0.9, 5e-4)
  assert c.schedule.kind == "recorded" and c.num_epochs == 90.0
  epoch = lambda e: -(-e * 1_281_167 // 128)  # steps done after e epochs
  start, last = _rates(c, 0), _rates(c, epoch(90))
  assert all(start[f"{n}/kernel"] == 0.01 and start[f"{n}/bias"] == 0.02 for n in LAYERS)
  assert all(last[f"{n}/kernel"] == 1e-5 and last[f"{n}/bias"] == 0.02 for n in LAYERS[1:])
  assert last["conv1/kernel"] == last["conv1/bias"] == 0.0
  assert _rates(c, epoch(24) - 1)["conv2/kernel"] == 0.01
  assert _rates(c, epoch(24))["conv2/kernel"] == 0.001
  assert _rates(c, epoch(50))["fc8/kernel"] == 1e-4
  at_66 = _rates(c, epoch(66))
  assert at_66["conv1/kernel"] == 1e-5 and at_66["conv2/kernel"] == 1e-4
  assert _rates(c, epoch(71))["conv1/bias"] == 0.0
  assert events.input_changes(c.schedule.events, 1_281_167, 128) == {
      "pca_lighting": [(epoch(66), 0.0)]}


def test_paper_code_finetune_is_run_146_2012_2011():
  """layer-params-146-2012-2011.cfg: conv6 over both columns, and its notes' schedule."""
  c = load_config("paper_code_finetune")
  assert c.model.extra_conv6 and c.model.conv6_across_columns and c.model.init_std.conv6 == 0.03
  assert c.init_from.new_layers == ("fc8",) and c.num_epochs == 53.0
  epoch = lambda e: -(-e * 1_281_167 // 128)
  start = _rates(c, 0)
  assert start["conv1/kernel"] == 1e-4 and start["conv2/kernel"] == start["fc8/kernel"] == 1e-3
  assert start["conv6/bias"] == 0.022 and start["fc8/bias"] == 0.02
  # 300 data-batch files of 1,024 images = 2,400 steps of 128 (mutation: `step 300` -> red)
  assert _rates(c, 2400)["fc8/kernel"] == 0.01 and _rates(c, 2399)["fc8/kernel"] == 1e-3
  assert _rates(c, epoch(4))["conv1/kernel"] == 1e-5
  assert _rates(c, epoch(6))["conv1/kernel"] == 0.0
  assert _rates(c, epoch(8))["fc8/kernel"] == 1e-3
  assert _rates(c, epoch(21))["fc8/kernel"] == _rates(c, epoch(21))["conv2/kernel"] == 1e-4
  last = _rates(c, epoch(53))
  assert last["conv2/kernel"] == last["fc8/kernel"] == 1e-5 and last["conv1/kernel"] == 0.0
  assert events.input_changes(c.schedule.events, 1_281_167, 128) == {
      "pca_lighting": [(epoch(37), 0.0)]}


# bvlc_alexnet's train_val.prototxt: (weight_filler std, bias_filler value) per layer; every
# layer's weights have lr_mult 1, decay_mult 1 and its bias lr_mult 2, decay_mult 0.
CAFFE_FILLERS = {"conv1": (0.01, 0.0), "conv2": (0.01, 0.1), "conv3": (0.01, 0.0),
                 "conv4": (0.01, 0.1), "conv5": (0.01, 0.1), "fc6": (0.005, 0.1),
                 "fc7": (0.005, 0.1), "fc8": (0.01, 0.0)}


def test_caffe_alexnet_is_bvlc_alexnets_recipe():
  """train_val.prototxt (batch_size 256, crop_size 227, mirror, the mean file, dropout 0.5) and
  solver.prototxt (base_lr 0.01, lr_policy step, gamma 0.1, stepsize 100000, max_iter 450000,
  momentum 0.9, weight_decay 0.0005)."""
  c = load_config("caffe_alexnet")
  assert {n: (c.model.init_std[n], c.model.init_bias[n]) for n in LAYERS} == CAFFE_FILLERS
  assert (c.data.batch_size, c.model.input_size, c.data.flip, c.data.mean) == (
      256, 227, True, "pixel")
  assert (c.model.dropout, c.model.dropout_form, c.data.pca_lighting) == (0.5, "inverted", 0.0)
  assert (c.optimizer.momentum, c.optimizer.weight_decay, c.optimizer.decay_on) == (
      0.9, 5e-4, "kernels")
  assert c.num_steps == 450_000
  for k, steps_done in enumerate((0, 100_000, 200_000, 300_000, 400_000)):
    for done in (steps_done, steps_done + 99_999):
      rates = _rates(c, done, batch=256)
      assert rates["conv3/kernel"] == pytest.approx(0.01 * 0.1 ** k)
      assert rates["fc8/bias"] == pytest.approx(0.02 * 0.1 ** k)  # lr_mult 2, the same decay
