"""Validation error of trained workdirs and of their average (Table 2's ensembles, §6).

  python -m alexnet_jax.evaluate --workdir=A --workdir=B ... [--ten_crop] [--best]

Each model is evaluated on the validation split of the first workdir's dataset with its own
mean image; the ensemble averages the models' softmax outputs ("averaging the predictions of
five similar CNNs"). Prints one JSON line per model and one for the average.
"""

from __future__ import annotations

import json

import ml_collections
import numpy as np
from absl import flags

from alexnet_jax import cli, inference
from alexnet_jax.steps import topk_errors
from alexnet_jax.errors import UserError

def errors(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
  top1, top5 = topk_errors(probs, labels)
  return {"top1_error": float(top1.mean()), "top5_error": float(top5.mean())}


def evaluate(workdirs: list[str], *, best: bool = False, ten_crop: bool = False) -> list[dict]:
  """Per-model and ensemble errors over the readable validation images of the first workdir's
  dataset, each model reading them in its own stored form (size, resize rule) and with its
  own mean image."""
  models = [inference.load(w, best=best) for w in workdirs]
  for w, m in zip(workdirs[1:], models[1:]):
    if m.class_names != models[0].class_names:
      raise UserError(f"{w} predicts other classes than {workdirs[0]}: cannot ensemble")
  labels, outputs = None, []
  for m in models:
    data = ml_collections.ConfigDict(models[0].config.data.to_dict())
    data.update(image_size=m.config.data.image_size, resize=m.config.data.resize)
    split, image_at = inference.split_images(m, "eval", data=data)
    own = np.asarray(split.labels if hasattr(split, "labels") else  # TFDS: read the records
                     [int(split[i]["label"]) for i in range(len(split))])
    if labels is not None and not np.array_equal(own, labels):
      raise UserError("the models read the validation images in another order: cannot ensemble")
    labels = own
    outputs.append(inference.predict_all(m, len(split), image_at, ten_crop=ten_crop))
  valid = np.logical_and.reduce([o["valid"] for o in outputs])
  rows = []
  for w, m, o in zip(workdirs, models, outputs):
    rows.append({"model": w, "step": m.step, **errors(o["probs"][valid], labels[valid])})
  average = np.mean([o["probs"][valid] for o in outputs], axis=0)
  rows.append({"model": f"average of {len(models)}", **errors(average, labels[valid]),
               "examples": int(valid.sum()), "ten_crop": ten_crop})
  return rows


def main(argv):
  FLAGS = flags.FLAGS
  del argv
  for row in evaluate(FLAGS.workdir, best=FLAGS.best, ten_crop=FLAGS.ten_crop):
    print(json.dumps(row))


if __name__ == "__main__":
  flags.DEFINE_multi_string("workdir", None, "a trained workdir (repeat for more)")
  flags.DEFINE_bool("best", False, "restore each workdir's best checkpoint")
  flags.DEFINE_bool("ten_crop", False, "average the softmax over the ten §4.1 crops")
  cli.run(main, required_flags=("workdir",))
