"""Inference from a trained workdir: restore, predict, Figure 4, features, ensembles, fine-tuning."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from alexnet_jax import checkpoint, inference, models
from alexnet_jax.data import sources
from alexnet_jax.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _images(folder, n=5, seed=0):
  rng = np.random.default_rng(seed)
  paths = []
  for i in range(n):
    path = os.path.join(folder, "3" if i % 2 else "x", f"im{i}.png")  # '3' is a class name
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (40 + 7 * i, 50, 3), dtype=np.uint8)).save(path)
    paths.append(path)
  return paths


def test_restore_predict_is_deterministic_and_ten_crop_is_the_mean_of_its_views(straight_run,
                                                                              tmp_path):
  workdir, _ = straight_run
  trained = inference.load(workdir)
  assert trained.step == 8 and trained.class_names == tuple(str(i) for i in range(10))
  good, stored, bad = trained.read_images(_images(str(tmp_path)))
  assert len(good) == 5 and not bad and stored.shape == (5, 36, 36, 3)
  one = trained.predict(stored)
  again = trained.predict(stored, batch_size=3)
  np.testing.assert_allclose(one["probs"], again["probs"], rtol=1e-5, atol=1e-6)
  assert one["probs"].shape == (5, 10) and one["fc7"].shape == (5, 256)
  np.testing.assert_allclose(one["probs"].sum(-1), 1.0, rtol=1e-5)
  assert (one["fc7"] >= 0).all()  # post-ReLU
  ten = trained.predict(stored, ten_crop=True)["probs"]
  np.testing.assert_allclose(ten.sum(-1), 1.0, rtol=1e-5)
  # The ten-crop softmax is the mean of the ten views' softmaxes, the centre view among them.
  from alexnet_jax.data import pipeline

  views = np.stack([pipeline.EvalCrops(32, True).map({"image": s, "label": 0})["image"]
                    for s in stored])
  per_view = np.stack([_predict_crops(trained, views[:, v], v) for v in range(10)], axis=1)
  np.testing.assert_allclose(ten, per_view.mean(axis=1), rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(per_view[:, 4], one["probs"], rtol=1e-4, atol=1e-6)


def _predict_crops(trained, crops, view):
  """Probabilities of already-cut crops (view index of §4.1's ten) through the same step."""
  import jax

  boxes = [(0, 0), (0, 4), (4, 0), (4, 4), (2, 2)]
  top, left = boxes[view % 5]
  n, padded = len(crops), 8  # a multiple of the 'data' axis
  images = np.concatenate([crops, np.repeat(crops[:1], padded - n, axis=0)])
  batch = {"image": images,
           "crop": np.tile([top, left, view // 5], (padded, 1)).astype(np.int32)}
  out = trained._predict(trained.params, jax.device_put(batch, trained._batch_sharding),
                         trained._mean)
  return np.asarray(out["probs"])[:n]


def test_predict_prints_top5_reports_bad_images_and_draws_figure4(straight_run, tmp_path,
                                                                  capsys):
  from alexnet_jax import predict

  workdir, _ = straight_run
  paths = _images(str(tmp_path), n=3)
  broken = tmp_path / "broken.jpg"
  broken.write_bytes(b"not an image")
  out_png = tmp_path / "preds.png"
  status = predict.predict_files(workdir, [*paths, str(broken)], ten_crop=True,
                                 output=str(out_png))
  out = capsys.readouterr()
  assert status == 0, out.err[-2000:]
  lines = out.out.splitlines()
  assert lines[0] == paths[0] and len([l for l in lines if l.startswith("  0.")]) == 15
  probs = [float(l.split()[0]) for l in lines[1:6]]
  assert probs == sorted(probs, reverse=True)
  assert f"{broken}: unreadable" in out.err and "1 of 4 images unreadable" in out.err
  assert predict.predict_files(workdir, [str(broken)]) == 1  # nothing readable: status 1
  with Image.open(out_png) as png:
    assert png.format == "PNG" and png.size == (900, 420)  # 3 columns x 1 block of 4.2 in, 100 dpi


def test_a_damaged_newest_checkpoint_falls_back_and_missing_ones_are_one_line_errors(
    straight_run, tmp_path):
  workdir, _ = straight_run
  copy = tmp_path / "copy"
  shutil.copytree(workdir, copy)
  state_dir = copy / "checkpoints" / "8" / "state"
  for dirpath, _, files in os.walk(state_dir):
    for name in files:
      if name != "_METADATA" and not name.startswith("_"):
        with open(os.path.join(dirpath, name), "r+b") as f:
          f.truncate(10)
  trained = inference.load(str(copy))
  assert trained.step == 6
  with pytest.raises(UserError, match="no checkpoint for step 5"):
    inference.load(workdir, step=5)
  with pytest.raises(UserError, match="no checkpoints in"):
    inference.load(str(tmp_path / "nowhere"))
  assert inference.load(workdir, best=True).path.startswith(os.path.join(workdir, "best"))


def test_nearest_neighbours_match_a_brute_force_search():
  from alexnet_jax.features import nearest

  rng = np.random.default_rng(5)
  database = rng.normal(size=(1000, 16)).astype(np.float32)
  database[7] = np.nan  # an unreadable image's row never matches
  queries = rng.normal(size=(6, 16)).astype(np.float32)
  queries[0] = database[123]
  dist, index = nearest(queries, database, k=5, chunk=256)
  brute = ((queries[:, None] - database[None]) ** 2).sum(-1)
  brute[np.isnan(brute)] = np.inf
  np.testing.assert_array_equal(np.asarray(index), np.argsort(brute, axis=1)[:, :5])
  np.testing.assert_allclose(np.asarray(dist), np.sort(brute, axis=1)[:, :5], rtol=1e-4, atol=1e-4)
  assert int(index[0, 0]) == 123


def test_features_writes_fc7_and_a_neighbour_grid(straight_run, tmp_path, capsys):
  from alexnet_jax import features

  workdir, _ = straight_run
  feats = tmp_path / "train_fc7.npy"
  grid = tmp_path / "nn.png"
  features.extract_and_search(workdir, split="train", output=str(feats), neighbors=4,
                              num_queries=3, grid=str(grid))
  array = np.load(feats, allow_pickle=False)
  assert array.shape == (64, 256) and array.dtype == np.float32 and (array >= 0).all()
  assert capsys.readouterr().out.count("validation #") == 3
  with Image.open(grid) as png:
    assert png.size == (800, 480)  # 5 columns x 3 rows of 1.6 in at 100 dpi
  trained = inference.load(workdir)
  np.testing.assert_allclose(array[:4], trained.predict(_train_images(trained)[:4])["fc7"],
                             rtol=1e-4, atol=1e-5)
  folder = tmp_path / "folder"
  _images(str(folder), n=2)
  (folder / "x" / "broken.png").write_bytes(b"nope")
  features.extract_and_search(workdir, folder=str(folder), output=str(tmp_path / "folder.npy"))
  rows = np.load(tmp_path / "folder.npy")
  assert rows.shape == (3, 256)
  assert np.isnan(rows).all(axis=1).tolist() == [False, True, False]  # sorted: 3/, x/broken, x/


def _train_images(trained):
  m = trained.config.model
  return sources.load_splits(trained.config.data, channels=m.in_channels,
                             num_classes=m.num_classes)[0].images


def test_kernels_figure_and_colour_specificity(straight_run, tmp_path, capsys):
  from alexnet_jax import visualize

  grey = np.zeros((2, 3, 3, 3, 4))
  grey[0] = np.random.default_rng(0).normal(size=(3, 3, 1, 4))  # equal RGB: colour-agnostic
  grey[1] = np.random.default_rng(1).normal(size=(3, 3, 3, 4))
  scores = visualize.colour_specificity(grey)
  assert scores[0] < 1e-12 < 0.1 < scores[1]
  workdir, _ = straight_run
  out = tmp_path / "kernels.png"
  visualize.kernels_figure(workdir, output=str(out))
  lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("{")]
  assert len(lines) == 2 and '"kernels": 16' in lines[0]
  with Image.open(out) as png:  # 2 blocks of 2 rows x 8 kernels of 5+1 px, x51
    assert png.size == (8 * 6 * 51, (2 * 2 * 6 + 5) * 51)


def test_an_ensemble_of_a_model_with_itself_equals_the_model(straight_run):
  from alexnet_jax import evaluate

  workdir, result = straight_run
  rows = evaluate.evaluate([workdir, workdir])
  assert rows[0]["top1_error"] == rows[1]["top1_error"] == rows[2]["top1_error"]
  assert rows[2]["top5_error"] == rows[0]["top5_error"] and rows[2]["examples"] == 40
  assert rows[0]["top1_error"] == pytest.approx(result["eval"]["top1_error"])


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


def test_checkpoints_from_before_the_dropout_form_restore_with_inverted_dropout():
  """Checkpoints written before `model.dropout_form` existed were trained with inverted
  dropout and rebuild with it; ones with the old contrast norm cannot be rebuilt: one line."""
  from conftest import load_config

  old = load_config("tiny").to_dict()
  for name in ("dropout_form", "response_norm", "response_norm_size", "response_norm_alpha",
               "response_norm_beta"):
    del old["model"][name]
  old["model"].update(contrast_norm=False, contrast_norm_size=5, contrast_norm_k=1.0)
  config = checkpoint.saved_config({"config": old}, "W/checkpoints/8")
  assert config.model.dropout_form == "inverted" and config.model.response_norm is False
  assert "contrast_norm" not in config.model
  models.AlexNetSpec.from_config(config.model)
  current = checkpoint.saved_config({"config": load_config("tiny").to_dict()}, "W")
  assert current.model.dropout_form == "paper"
  old["model"]["contrast_norm"] = True
  with pytest.raises(UserError, match="contrast norm of earlier versions.*retrain"):
    checkpoint.saved_config({"config": old}, "W/checkpoints/8")


def test_a_checkpoint_restores_with_plain_orbax_in_a_fresh_process(straight_run):
  workdir, _ = straight_run
  code = (
      "import sys, orbax.checkpoint as ocp\n"
      f"state = ocp.StandardCheckpointer().restore({workdir!r} + '/checkpoints/8/state')\n"
      "assert not [m for m in sys.modules if m.split('.')[0] == 'alexnet_jax'], 'imported'\n"
      "print(int(state['step']), state['params']['conv1']['kernel'].shape)\n")
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env=os.environ | {"JAX_PLATFORMS": "cpu"}, cwd="/")
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.split("\n")[0] == "8 (2, 5, 5, 3, 16)"
