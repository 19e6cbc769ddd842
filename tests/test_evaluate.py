"""`python -m alexnet_jax.evaluate`: a model's and an ensemble's errors (Table 2), on the
model's classes, each model in its own stored form."""

import json
import os

import numpy as np
import pytest

from alexnet_jax import evaluate
from alexnet_jax.errors import UserError
from conftest import folder_run


def test_an_ensemble_of_a_model_with_itself_equals_the_model(straight_run, tmp_path):
  workdir, result = straight_run
  out = evaluate.evaluate([workdir, workdir], output=str(tmp_path / "r.json"))
  one, two, average = *out["models"], out["ensemble"]
  assert one["top1_error"] == two["top1_error"] == average["top1_error"]
  assert average["top5_error"] == one["top5_error"] and out["examples"] == 40
  assert one["top1_error"] == pytest.approx(100 * result["eval"]["top1_error"], abs=0.01)
  assert one["top1_accuracy"] == pytest.approx(100 - one["top1_error"])
  assert one["top5_error"] == pytest.approx(100 * result["eval"]["top5_error"], abs=0.01)
  assert one["top5_error"] > 0
  assert one["top5_accuracy"] == pytest.approx(100 - one["top5_error"])
  # The confusion matrix's diagonal is the accuracy; each row is one class's images.
  confusion = np.asarray(out["confusion"])
  assert confusion.sum() == 40
  assert np.trace(confusion) / 40 == pytest.approx(one["top1_accuracy"] / 100, abs=1e-4)
  for row, per_class in zip(confusion, out["per_class"]):
    assert per_class["examples"] == row.sum()
  written = json.loads((tmp_path / "r.json").read_text())
  assert written["models"] == out["models"]
  assert (tmp_path / "r_confusion.png").stat().st_size > 1000
  assert (tmp_path / "r_per_class.csv").read_text().startswith("class,examples,accuracy")
  single = evaluate.evaluate([workdir])
  assert single["ensemble"] is None  # no "average of 1"


def test_each_workdir_is_evaluated_at_the_step_asked(straight_run):
  """`--step` names each workdir's checkpoint, as the other tools' does; the models' rows say
  which step they are. Mutation: the step not passed to `inference.load` -> red."""
  workdir, _ = straight_run
  out = evaluate.evaluate([workdir, workdir], step=6)
  assert [m["step"] for m in out["models"]] == [6, 6]
  assert evaluate.evaluate([workdir])["models"][0]["step"] == 8
  with pytest.raises(UserError, match=r"no checkpoint for step 5 .*\(have \[6, 8\]\)"):
    evaluate.evaluate([workdir], step=5)


def _stand_in_models(monkeypatch, models):
  """`evaluate` over stand-ins: workdir name -> (class names, its softmax over the validation
  images, the labels it read them with), scored as `_evaluated` scores them."""
  from types import SimpleNamespace

  from conftest import load_config

  def evaluated(model, data, split):
    own = evaluate.scores(model.probs, model.labels)
    figures_ = {k: own[k] / 100 for k in ("top1_error", "top5_error")}
    return ({split: {**figures_, "skipped_images": 0}},
            {"probs": model.probs, "labels": model.labels})

  monkeypatch.setattr(evaluate.inference, "load", lambda w, step=None, best=False: SimpleNamespace(
      class_names=models[w][0], step=1, config=load_config("tiny"),
      probs=np.asarray(models[w][1]), labels=np.asarray(models[w][2])))
  monkeypatch.setattr(evaluate, "_evaluated", evaluated)


def test_the_ensemble_averages_its_models_probabilities(monkeypatch):
  """Table 2's averaging of the predictions: two models each wrong on an image that their
  average gets right. Mutation: the ensemble scored on the first model's softmax -> red."""
  labels = [1, 0, 2]
  _stand_in_models(monkeypatch, {
      "A": (("a", "b", "c"), [[0.6, 0.4, 0.0], [0.7, 0.2, 0.1], [0.1, 0.5, 0.4]], labels),
      "B": (("a", "b", "c"), [[0.0, 0.4, 0.6], [0.3, 0.4, 0.3], [0.0, 0.3, 0.7]], labels)})
  out = evaluate.evaluate(["A", "B"])
  assert [m["top1_error"] for m in out["models"]] == [pytest.approx(200 / 3, abs=0.01)] * 2
  assert out["ensemble"]["top1_error"] == 0.0  # the average: [.3 .4 .3], [.5 .3 .2], [.05 .4 .55]
  assert out["confusion"] == [[1, 0, 0], [0, 1, 0], [0, 0, 1]]


def test_the_accuracies_are_in_percent_to_two_decimals_per_class_too(monkeypatch):
  """Six images, four right: 66.67 % (an ensemble of a model with itself); each class's
  accuracy over its own images, none for a class without any. Mutations: 101 for 100 per
  class, 3 decimals in either -> red."""
  a, b = [0.8, 0.2, 0.0], [0.2, 0.8, 0.0]
  model = (("a", "b", "c"), [a, a, b, b, b, a], [0, 0, 0, 1, 1, 1])
  _stand_in_models(monkeypatch, {"A": model, "B": model})
  out = evaluate.evaluate(["A", "B"])
  assert (out["ensemble"]["top1_accuracy"], out["ensemble"]["top1_error"]) == (66.67, 33.33)
  assert out["per_class"] == [{"class": "a", "examples": 3, "accuracy": 66.67},
                              {"class": "b", "examples": 3, "accuracy": 66.67},
                              {"class": "c", "examples": 0, "accuracy": None}]


@pytest.mark.parametrize("classes", [30, 31])
def test_the_confusion_figure_shows_each_classs_fractions_named_when_few(tmp_path, drawn,
                                                                         classes):
  """Each row the fraction of its class's images (a class of one image: 1, a class without
  any: 0), on a fixed 0-1 scale; the class names on both axes up to 30 classes. Mutations:
  a row divided by at least 2; the scale from 1 or to 2; names up to 31 -> red."""
  confusion = np.zeros((classes, classes), np.int64)
  confusion[0, :2] = (3, 1)
  confusion[1, 1] = 1
  names = [f"c{i}" for i in range(classes)]
  evaluate._draw_confusion(str(tmp_path / "c.png"), confusion, names)
  ax = drawn[0].axes[0]
  shown = ax.get_images()[0]
  want = np.zeros((classes, classes))
  want[0, :2], want[1, 1] = (0.75, 0.25), 1.0
  np.testing.assert_array_equal(shown.get_array(), want)
  assert shown.get_clim() == (0, 1)
  labels = [t.get_text() for t in ax.get_xticklabels()]
  assert (labels == names) == (classes <= 30)
  assert ([t.get_text() for t in ax.get_yticklabels()] == names) == (classes <= 30)


def test_models_of_other_classes_or_reading_another_order_are_not_ensembled(monkeypatch):
  """Mutations: the class check or the order check dropped (`!=` -> `==`) -> red."""
  probs = np.full((3, 3), 1 / 3)
  _stand_in_models(monkeypatch, {"A": (("a", "b", "c"), probs, [0, 1, 2]),
                                 "B": (("a", "c", "b"), probs, [0, 1, 2]),
                                 "C": (("a", "b", "c"), probs, [1, 0, 2])})
  with pytest.raises(UserError, match="^B predicts other classes than A: cannot ensemble$"):
    evaluate.evaluate(["A", "B"])
  with pytest.raises(UserError, match="read the validation images in another order"):
    evaluate.evaluate(["A", "C"])
  assert evaluate.evaluate(["A", "A"])["ensemble"]["model"] == "average of 2"


def test_evaluation_labels_are_the_models_classes_and_a_changed_val_tree_is_refused(tmp_path):
  """`evaluate` took its labels from today's folder listing: a class folder added to val after
  training shifted every label."""
  from conftest import image_folder_tree, save_image

  image_folder_tree(tmp_path / "src")
  folder_run(tmp_path / "src", tmp_path / "run")
  before = evaluate.evaluate([str(tmp_path / "run")])["models"]
  save_image(str(tmp_path / "src" / "val" / "m00" / "a.png"), np.zeros((40, 40, 3), np.uint8),
             "PNG")  # sorts first: would have become label 0
  with pytest.raises(UserError, match=r"val has class folders that are not among the classes "
                                      r".*: m00"):
    evaluate.evaluate([str(tmp_path / "run")])
  os.remove(tmp_path / "src" / "val" / "m00" / "a.png")
  os.rmdir(tmp_path / "src" / "val" / "m00")
  assert evaluate.evaluate([str(tmp_path / "run")])["models"] == before


def test_each_model_of_an_ensemble_reads_the_images_in_its_own_stored_form(tmp_path):
  """Every model of an ensemble got the first model's stored size and resize mode."""
  from conftest import image_folder_tree

  image_folder_tree(tmp_path / "src")
  folder_run(tmp_path / "src", tmp_path / "shorter")
  folder_run(tmp_path / "src", tmp_path / "squash", resize="squash")
  alone = evaluate.evaluate([str(tmp_path / "squash")])["models"][0]
  together = evaluate.evaluate([str(tmp_path / "shorter"),
                                str(tmp_path / "squash")])["models"][1]
  assert together["top1_error"] == alone["top1_error"]
  assert together["top5_error"] == alone["top5_error"]


def test_a_relative_data_dir_is_stored_absolute(tmp_path, monkeypatch):
  """A relative data_dir was stored as written: inference from another directory read
  whatever tree that path reached there."""
  from conftest import image_folder_tree

  image_folder_tree(tmp_path / "a" / "src")
  image_folder_tree(tmp_path / "b" / "src", seed=1)  # the same path from another directory
  os.remove(next((tmp_path / "b" / "src" / "val" / "n01").iterdir()))
  monkeypatch.chdir(tmp_path / "a")
  folder_run("src", tmp_path / "run")
  monkeypatch.chdir(tmp_path / "b")
  # a's val: 6 files, one unreadable (b's has 4 readable)
  assert evaluate.evaluate([str(tmp_path / "run")])["examples"] == 5


@pytest.mark.parametrize("overrides", [
    {}, {"data.mean": "channel"}, {"data.mean_patch": "centre"}, {"data.pixel_scale": 0.05},
    {"data.resize": "squash"}, {"model.dtype": "bfloat16"},
    {"model.in_channels": 1, "data.pca_lighting": 0.0},
], ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default")
def test_inference_reads_and_scores_as_the_runs_own_evaluation(tmp_path, overrides):
  """For every setting that changes pixels or numerics, the tools' inference path
  (`inference.split_images` + `predict_all`, what evaluate, predict and features use) gives the
  run's own logged evaluation: its loss to float precision and its errors exactly, centre crop
  and ten crops; so does the evaluate tool's. Mutations: inference ignoring data.mean_patch (the
  ten corner crops centred at their own positions) -> red for mean_patch=centre; the same in
  `Trained.evaluate`, or its ten-crop choice inverted -> red."""
  import json

  from alexnet_jax import inference, train
  from conftest import folder_config, image_folder_tree

  image_folder_tree(tmp_path / "src")
  config = folder_config(tmp_path / "src")
  config.data.pixel_scale = 1 / 64  # unit-scale inputs for the He-scaled stds below
  config.optimizer.learning_rate = 1e-5  # the subject is inference: two steps barely move
  for path, value in overrides.items():
    section, name = path.split(".")
    config[section][name] = value
  config.num_epochs = 2 / 3  # two steps
  config.eval.ten_crop_final = True
  # He-scaled stds and small biases: outputs that depend on every pixel (the paper's init
  # leaves the probabilities near 1/3 whatever the input, and a wrong mean would pass).
  config.model.init_std.update(dict(conv1=0.2, conv2=0.07, conv3=0.06, conv4=0.07, conv5=0.07,
                                    fc6=0.06, fc7=0.06, fc8=0.5))
  config.model.init_bias.update(dict(conv2=0.1, conv4=0.1, conv5=0.1, fc6=0.1, fc7=0.1))
  workdir = str(tmp_path / "run")
  train.train_and_evaluate(config, workdir)
  logged = {}
  for line in open(f"{workdir}/metrics.jsonl"):
    row = json.loads(line)
    if row["split"] in ("eval", "eval_10crop"):
      logged[row["split"]] = row
  trained = inference.load(workdir)
  split, image_at = inference.split_images(trained, "eval")
  labels = inference.split_labels(split)
  bf16 = "model.dtype" in overrides
  loss_rtol, probs_atol = (1e-3, 1e-3) if bf16 else (2e-6, 1e-6)
  for name, ten_crop in (("eval", False), ("eval_10crop", True)):
    out = inference.predict_all(trained, len(split), image_at, ten_crop=ten_crop)
    probs, truth = out["probs"][out["valid"]], labels[out["valid"]]
    loss = float(np.mean(-np.log(probs[np.arange(len(truth)), truth] + 1e-12)))
    np.testing.assert_allclose(loss, logged[name]["loss"], rtol=loss_rtol, err_msg=name)
    top1 = float(np.mean(probs.argmax(-1) != truth))
    assert top1 == pytest.approx(logged[name]["top1_error"], abs=1e-6), name
    # Image by image, the probabilities the run's own evaluation computes: its pipeline's
    # batches through the step with the run's settings (a loss near ln 3 after two steps is
    # not sensitive enough alone).
    loop = _the_loops_probabilities(config, trained, ten_crop)
    np.testing.assert_allclose(probs, loop, atol=probs_atol, err_msg=name)
    # `python -m alexnet_jax.evaluate [--ten_crop]`'s own path (`Trained.evaluate` over the
    # pipeline's evaluation batches): the logged figures of the same split.
    run, kept = evaluate._evaluated(trained, trained.config.data.copy_and_resolve_references(),
                                    name)
    np.testing.assert_allclose(run[name]["loss"], logged[name]["loss"], rtol=loss_rtol,
                               err_msg=name)
    np.testing.assert_allclose(kept["probs"], loop, atol=probs_atol, err_msg=name)


def _the_loops_probabilities(config, trained, ten_crop):
  import jax

  from alexnet_jax.data import pipeline
  from alexnet_jax.steps import make_predict_step

  m = config.model
  inp = pipeline.build_input(config.data, crop=m.input_size, channels=m.in_channels,
                             num_classes=m.num_classes, seed=config.seed, stats=trained.stats)
  step = jax.jit(make_predict_step(trained.graphdef, pixel_scale=float(config.data.pixel_scale),
                                   centre_mean=config.data.mean_patch == "centre"))
  out = []
  for batch in inp.eval_batches(ten_crop):
    probs = np.asarray(step(trained.params, {k: batch[k] for k in ("image", "crop")},
                            jax.numpy.asarray(inp.stats.mean))["probs"])
    out.append(probs[batch["mask"]])
  return np.concatenate(out)
