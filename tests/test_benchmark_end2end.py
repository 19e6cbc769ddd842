"""`benchmark end2end`: the figures are the training loop's own."""

import numpy as np
import pytest

from alexnet_jax.benchmark import end2end as benchmark


def test_end2end_reports_the_training_loops_own_rate_and_input_wait(monkeypatch, capsys):
  """The figures are the loop's metrics (after the compiling interval), run in-process."""
  import json

  from conftest import load_config

  from alexnet_jax import metrics, train

  rows = []  # the metrics file as last read (the curves plot reads it too)
  saving = []  # the run's seconds saving checkpoints

  def read(path, real=metrics.read_metrics):
    rows[:] = real(path)
    return list(rows)

  def run(*args, real=train.train_and_evaluate, **kwargs):
    result = real(*args, **kwargs)
    saving.append(result.timing["checkpoint_seconds"])
    return result

  monkeypatch.setattr(metrics, "read_metrics", read)
  monkeypatch.setattr(train, "train_and_evaluate", run)
  record = benchmark.bench_end2end(load_config("tiny"), source="synthetic", root="",
                                   generate=64, batch=16, workers=0, steps=8)
  assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == record
  train_rows = [r for r in rows if r["split"] == "train"]
  assert [r["step"] for r in train_rows] == [2, 4, 6, 8]  # steps // 4 per log line
  assert record["steps"] == 8 and record["batch"] == 16
  # The means after the compiling interval: img/s to 1 decimal, the rest to 3 (mutations: a
  # digit more -> red).
  mean = lambda key, digits: round(float(np.mean([r[key] for r in train_rows[1:]])), digits)
  assert record["img_per_s"] == mean("img_per_s", 1)
  assert record["input_wait_fraction"] == mean("input_wait_fraction", 3)
  assert record["host_ms_per_step"] == {
      k.split("/")[1]: mean(k, 3) for k in train_rows[0] if k.startswith("host_ms/")}
  # 16 patches of 32x32x3 bytes and their label, box, lighting and shrink cross per step,
  # in the prefetch thread's time; the step alone is timed beside the loop. Mutations: one
  # image's bytes counted for the batch -> red; the fraction inverted -> red.
  crossing = 16 * (32 * 32 * 3 + 4 + 12 + 12 + 4)
  assert record["transfer_gb_per_s"] == pytest.approx(
      crossing / record["host_ms_per_step"]["transfer"] / 1e6, rel=0.02)
  assert record["of_step"] == pytest.approx(record["img_per_s"] / record["step_img_per_s"],
                                            rel=0.01)
  # The one evaluation, after the timed steps, over 4 batches: its row's rate and input start
  # (mutations: one batch of images made for it; the figures of another row -> red).
  evaluated = [r for r in rows if r["split"] == "eval"]
  assert [(r["step"], r["images"]) for r in evaluated] == [(8, 4 * 16)]
  assert record["eval_img_per_s"] == round(evaluated[0]["img_per_s"], 1)
  assert record["eval_input_start_seconds"] == round(evaluated[0]["input_start_seconds"], 3)
  # The main thread's seconds per save, over the last step's two (checkpoints/ and best/):
  # mutation, over one -> twice the mean (red).
  assert record["checkpoints"] == 2
  assert record["checkpoint_seconds_per_save"] == round(saving[0] / 2, 3) > 0


@pytest.mark.parametrize("source,prepared", [("synthetic", False), ("jpeg", True)])
def test_the_null_model_loop_reports_host_time_by_part(source, prepared, monkeypatch):
  from conftest import load_config

  from alexnet_jax import metrics

  rows = []

  def read(path, real=metrics.read_metrics):
    rows[:] = real(path)
    return list(rows)

  monkeypatch.setattr(metrics, "read_metrics", read)
  from alexnet_jax.benchmark import input_pipeline

  timed = []

  def pil_loop(images, seconds, size, crop, real=input_pipeline.plain_pil_loop):
    timed.append((images, size, crop))
    return real(images, seconds, size, crop)

  monkeypatch.setattr(input_pipeline, "plain_pil_loop", pil_loop)
  record = benchmark.bench_end2end(load_config("tiny"), source=source, root="", generate=64,
                                   batch=16, workers=0, steps=8, null_model=True,
                                   prepared=prepared,
                                   pillow_seconds=0.3 if source == "jpeg" else 0.0)
  assert record["model"] == "null" and record["source"].startswith(source)
  # The loop's 8 steps over the 64 images, logged every 2 (mutation: the epochs counted from
  # the JPEG tree's classes, not its files -> red).
  assert [r["step"] for r in rows if r["split"] == "train"] == [2, 4, 6, 8]
  assert ("(prepared)" in record["source"]) == prepared
  # 0 s: no yardstick (mutation: `pillow_seconds >= 0` -> `> 0`, refusing it -> red).
  assert ("vs_pillow_1_thread" in record) == (source == "jpeg")
  assert set(record["host_ms_per_step"]) == {"checkpoint", "device_wait", "dispatch",
                                             "input_wait", "metrics", "other", "transfer"}
  # In each logged interval the main thread's parts add up to the step's wall time
  # (`transfer` is the prefetch thread's, beside them). Mutation: `other` not computed
  # (left at 0) -> red.
  for row in (r for r in rows if r["split"] == "train"):
    parts = [v for k, v in row.items() if k.startswith("host_ms/") and k != "host_ms/transfer"]
    assert min(parts) >= 0
    assert sum(parts) == pytest.approx(1e3 * 16 / row["img_per_s"], rel=0.03)
  if source == "jpeg":
    # The yardstick decodes the JPEGs the loop reads, the prepared store's; the ratio is the
    # loop's rate over it. Mutations: the originals' bytes timed -> red; the ratio inverted
    # -> red.
    assert record["vs_pillow_1_thread"] == pytest.approx(
        record["img_per_s"] / record["pillow_1_thread_img_per_s"], abs=0.01)
    images, size, crop = timed[0]
    assert len(images) == 64 and (size, crop) == (256, 32)
    assert all(isinstance(b, bytes) and _jpeg_size(b) == (256, 256) for b in images)


def _jpeg_size(encoded: bytes) -> tuple[int, int]:
  import io

  from PIL import Image

  with Image.open(io.BytesIO(encoded)) as image:
    return image.size


def test_a_negative_yardstick_time_is_one_line():
  from conftest import load_config

  from alexnet_jax.errors import UserError

  with pytest.raises(UserError, match="--pillow_seconds must be >= 0"):
    benchmark.bench_end2end(load_config("tiny"), source="jpeg", root="", generate=8, batch=4,
                            workers=0, steps=8, pillow_seconds=-1.0)
