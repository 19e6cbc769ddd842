r"""Validation accuracy of trained workdirs and of their average (Table 2's ensembles, §6).

  python -m alexnet_jax.evaluate --workdir=A [--workdir=B ...] [--best | --step=N] [--ten_crop] \
      [--output=results.json]

Each model is evaluated on the validation split of the first workdir's dataset, with its own
stored form and mean image and the labels of its own classes; the ensemble averages the
models' softmax outputs ("averaging the predictions of five similar CNNs"). Prints one JSON line
per model (top-1 and top-5 accuracy and error in %) and, for several models, one for their
average. `--output=FILE.json` also writes the per-class accuracy (FILE_per_class.csv) and the
confusion matrix (FILE_confusion.csv, FILE_confusion.png) of the model, or of the ensemble.
"""

from __future__ import annotations

import csv
import json

import ml_collections
import numpy as np
from absl import flags

from alexnet_jax import cli, figures, inference
from alexnet_jax import workdir as workdir_lib
from alexnet_jax.data import pipeline
from alexnet_jax.errors import UserError
from alexnet_jax.sharding import DATA
from alexnet_jax.steps import topk_errors


def scores(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
  """Top-1 and top-5 accuracy and error, in %, rounded to 0.01."""
  top1, top5 = (float(e.mean()) for e in topk_errors(probs, labels))
  return _percent({"top1_error": top1, "top5_error": top5})


def evaluate(workdirs: list[str], *, step: int | None = None, best: bool = False,
             ten_crop: bool = False, output: str = "") -> dict:
  """{'models': [per model], 'ensemble': the average's or None, 'examples', 'ten_crop',
  'per_class': [{'class', 'examples', 'accuracy'}], 'confusion': [[count]]} over the readable
  validation images (see the module docstring); `step`, `best`: each workdir's checkpoint, as
  `inference.load` takes them; `output`: where to write it all."""
  if output:
    workdir_lib.check_output(output, (".json",))
  models = [inference.load(w, step=step, best=best) for w in workdirs]
  for w, m in zip(workdirs[1:], models[1:]):
    if m.class_names != models[0].class_names:
      raise UserError(f"{w} predicts other classes than {workdirs[0]}: cannot ensemble")
  labels, probs, figures_ = None, [], []
  split = "eval_10crop" if ten_crop else "eval"
  for m in models:
    data = ml_collections.ConfigDict(models[0].config.data.to_dict())
    data.update(image_size=m.config.data.image_size, resize=m.config.data.resize)
    run, kept = _evaluated(m, data, split)
    if labels is not None and not np.array_equal(kept["labels"], labels):
      raise UserError("the models read the validation images in another order: cannot ensemble")
    labels = kept["labels"]
    probs.append(kept["probs"])
    figures_.append(run[split])
  average = np.mean(probs, axis=0)
  result = {"models": [{"model": w, "step": m.step, **_percent(f)}
                       for w, m, f in zip(workdirs, models, figures_)],
            "ensemble": ({"model": f"average of {len(models)}", **scores(average, labels)}
                         if len(models) > 1 else None),
            "examples": len(labels), "unreadable": figures_[0]["skipped_images"],
            "ten_crop": ten_crop}
  classes = models[0].class_names
  predicted = average.argmax(axis=-1)
  confusion = np.zeros((len(classes), len(classes)), np.int64)
  np.add.at(confusion, (labels, predicted), 1)
  result["per_class"] = [{"class": name, "examples": int(row.sum()),
                          "accuracy": round(100 * row[i] / row.sum(), 2) if row.sum() else None}
                         for i, (name, row) in enumerate(zip(classes, confusion))]
  result["confusion"] = confusion.tolist()
  if output:
    _write(output, result, classes)
  return result


def _evaluated(trained: inference.Trained, data, split: str) -> tuple[dict, dict]:
  """`trained`'s own evaluation (`Trained.evaluate`) on the validation split of the dataset
  `data` names, read in its stored form with its statistics and classes."""
  config, model = trained.config, trained.config.model
  data_axis = trained.mesh.shape[DATA]
  data.eval_batch_size = -(-int(data.eval_batch_size) // data_axis) * data_axis
  input_ = pipeline.build_input(data, crop=int(model.input_size), channels=int(model.in_channels),
                                num_classes=int(model.num_classes), seed=int(config.seed),
                                stats=trained.stats, class_names=trained.class_names,
                                dataset_statistics=False)
  input_.train.close()
  trained.warn_if_other_data(input_.identity)
  return trained.evaluate(input_, split)


def _percent(figures_: dict) -> dict[str, float]:
  """An evaluation's errors (fractions) as `scores` gives them: in %, rounded to 0.01."""
  top1, top5 = figures_["top1_error"], figures_["top5_error"]
  return {"top1_accuracy": round(100 * (1 - top1), 2), "top5_accuracy": round(100 * (1 - top5), 2),
          "top1_error": round(100 * top1, 2), "top5_error": round(100 * top5, 2)}


def _write(output: str, result: dict, classes) -> None:
  stem = output[:-len(".json")]
  with workdir_lib.output_file(output) as f:
    json.dump(result, f, indent=1)
  with workdir_lib.output_file(stem + "_per_class.csv") as f:
    writer = csv.DictWriter(f, fieldnames=["class", "examples", "accuracy"])
    writer.writeheader()
    writer.writerows(result["per_class"])
  with workdir_lib.output_file(stem + "_confusion.csv") as f:
    writer = csv.writer(f)
    writer.writerow(["true \\ predicted", *classes])
    writer.writerows([name, *row] for name, row in zip(classes, result["confusion"]))
  _draw_confusion(stem + "_confusion.png", np.asarray(result["confusion"]), classes)


def _draw_confusion(path: str, confusion: np.ndarray, classes) -> None:
  """Rows (true classes) normalised to 1; names on the axes when there are few classes."""
  rows = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
  side = min(4 + 0.35 * len(classes), 20)
  with figures.figure(path, figsize=(side, side)) as (fig, ax):
    image = ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    if len(classes) <= 30:
      ax.set_xticks(range(len(classes)), classes, rotation=90, fontsize=7)
      ax.set_yticks(range(len(classes)), classes, fontsize=7)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title("confusion matrix (each row: the fraction of that class's images)")
    fig.colorbar(image, ax=ax, fraction=0.046)


def main(argv):
  del argv
  FLAGS = flags.FLAGS
  result = evaluate(FLAGS.workdir, step=FLAGS.step, best=FLAGS.best, ten_crop=FLAGS.ten_crop,
                    output=FLAGS.output)
  for row in result["models"] + ([result["ensemble"]] if result["ensemble"] else []):
    print(json.dumps({**row, "examples": result["examples"], "ten_crop": result["ten_crop"]},
                     ensure_ascii=False))
  if FLAGS.output:
    stem = FLAGS.output[:-len(".json")]
    print(f"written: {FLAGS.output}, {stem}_per_class.csv, {stem}_confusion.csv, "
          f"{stem}_confusion.png")
  elif result["unreadable"]:
    print(f"{result['unreadable']} unreadable images left out")


if __name__ == "__main__":
  cli.define_restore_flags(several=True)
  flags.DEFINE_bool("ten_crop", False, "average the softmax over the ten §4.1 crops")
  flags.DEFINE_string("output", "", "FILE.json: all the figures, the per-class accuracy and the "
                      "confusion matrix (CSV and PNG beside it)")
  cli.run(main, required_flags=("workdir",))
