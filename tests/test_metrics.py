"""Metrics out of the loop (`metrics.py`): JSON lines and the curves drawn from them."""

from absl import logging as absl_logging

from alexnet_jax import metrics


# ----------------------------------------------------------------------------- 13: tracebacks

def test_a_metrics_file_cut_mid_line_is_read_with_a_warning(tmp_path, caplog):
  path = tmp_path / "metrics.jsonl"
  # A cut line, and lines of the right keys and the wrong types (edited by hand): the curves
  # at a resumed run's end ended in a traceback. Mutation: the type check dropped -> red.
  path.write_text('{"step": 2, "split": "train", "loss": 1.0}\n'
                  '{"step": "3", "split": "train", "loss": 1.0}\n'
                  '{"step": 3, "split": "train", "loss": "low"}\n'
                  '{"step": 4, "split": "tr')
  with caplog.at_level("WARNING"):
    absl_logging.use_python_logging()
    rows = metrics.read_metrics(str(path))
  assert rows == [{"step": 2, "split": "train", "loss": 1.0}]
  assert any("skipped 3 unreadable line" in r.getMessage() for r in caplog.records)
  metrics.plot_curves(str(path), str(tmp_path / "curves.png"), 10)
  assert (tmp_path / "curves.png").exists()
  # The resumed run's first record starts a line of its own: it was appended to the cut one
  # and lost with it. Mutation: the cut line not ended on open -> red.
  with metrics.MetricWriter(str(tmp_path)) as writer:
    writer.write(5, "train", {"loss": 0.5})
  assert metrics.read_metrics(str(path))[1:] == [{"step": 5, "split": "train", "loss": 0.5}]
  with metrics.MetricWriter(str(tmp_path)) as writer:  # a whole last line: nothing added
    writer.write(6, "train", {"loss": 0.25})
  assert path.read_text().endswith('"loss": 0.5}\n{"step": 6, "split": "train", "loss": 0.25}\n')


def test_the_curves_have_a_top5_panel_only_where_top5_says_something(tmp_path):
  """A top-5 error near 0 (3 or 10 classes) draws no panel; 11 and 20 classes do. Mutations:
  the panel kept for every class count (the 3-class figure as wide as the 20-class one); drawn
  from 12 classes -> red."""
  import json
  import warnings

  from PIL import Image

  path = tmp_path / "metrics.jsonl"
  rows = [{"step": s, "epoch": s / 4, "split": split, "loss": 2.0 / s, "top1_error": 0.5 / s,
           "top5_error": 0.1 / s, "lr": 0.01} for s in (1, 2, 3, 4) for split in ("train", "eval")]
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))
  widths = {}
  for classes in (3, 10, 11, 20):
    with warnings.catch_warnings():
      warnings.simplefilter("error")  # no layout warning either
      warnings.simplefilter("ignore", DeprecationWarning)  # matplotlib 3.9's use of pyparsing
      metrics.plot_curves(str(path), str(tmp_path / f"c{classes}.png"), classes)
    with Image.open(tmp_path / f"c{classes}.png") as png:
      widths[classes] = png.size[0]
  assert widths[3] == widths[10] == 1500 and widths[11] == widths[20] == 2000


def test_the_curves_draw_each_split_and_rate_from_the_metrics_file(tmp_path, monkeypatch):
  """Each panel draws the file's rows: a line per split, labelled by it, at its epoch (an
  evaluation row without one at step x epochs-per-step), errors in %; the last validation
  figure written on its panel; the ε panel one line per group of parameters sharing a curve,
  a frozen rate (0) not drawn. Mutations: the rows of every other split drawn under a split's
  label (`r["split"] == split` flipped), the training curve annotated (`split != "train"`
  flipped), the first figure annotated instead of the last, the epoch of an evaluation row
  taken as its step, the grouping by name instead of by curve, a rate of 0 drawn, the top-5
  error scaled by 200 -> red."""
  import contextlib
  import json

  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  drawn = {}

  @contextlib.contextmanager
  def keep(path, *subplots, **options):
    fig, axes = plt.subplots(*subplots, **options)
    drawn["axes"] = axes
    yield fig, axes
    plt.close(fig)

  monkeypatch.setattr(metrics.figures, "figure", keep)
  rates = lambda s: {"lr": 0.01, "lr/conv1/kernel": 0.01, "lr/conv1/bias": 0.02,
                     "lr/fc8/kernel": 0.01, "lr/fc8/bias": 0.0 if s > 2 else 0.02}
  rows = ([{"step": s, "epoch": s / 4, "split": "train", "loss": 3.0 - s / 4,
            "top1_error": 0.8 - s / 10, **rates(s)} for s in (1, 2, 3, 4)]
          + [{"step": s, "split": "eval", "loss": 2.5 - s / 8, "top1_error": 0.6 - s / 20,
              "top5_error": 0.5 / s} for s in (2, 4)]
          + [{"step": 4, "split": "eval_10crop", "top1_error": 0.3}])
  path = tmp_path / "metrics.jsonl"
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))
  metrics.plot_curves(str(path), str(tmp_path / "curves.png"), 20)

  loss, top1, top5, rate = drawn["axes"]
  lines = lambda ax: {l.get_label(): [tuple(map(float, xy)) for xy in l.get_xydata()]
                      for l in ax.lines}
  assert lines(loss) == {
      metrics.SPLITS["train"]: [(0.25, 2.75), (0.5, 2.5), (0.75, 2.25), (1.0, 2.0)],
      metrics.SPLITS["eval"]: [(0.5, 2.25), (1.0, 2.0)]}
  got = lines(top1)
  assert set(got) == set(metrics.SPLITS.values())
  assert got[metrics.SPLITS["eval"]] == [(0.5, 50.0), (1.0, 40.0)]
  assert got[metrics.SPLITS["eval_10crop"]] == [(1.0, 30.0)]
  assert got[metrics.SPLITS["train"]][-1] == (1.0, 40.0)
  assert sorted(t.get_text() for t in top1.texts) == ["30.00 %", "40.00 %"]
  assert lines(top5) == {metrics.SPLITS["eval"]: [(0.5, 25.0), (1.0, 12.5)]}  # in % too
  assert lines(rate) == {"conv1/kernel, fc8/kernel": [(0.25, 0.01), (0.5, 0.01), (0.75, 0.01),
                                                      (1.0, 0.01)],
                         "conv1/bias": [(0.25, 0.02), (0.5, 0.02), (0.75, 0.02), (1.0, 0.02)],
                         "fc8/bias": [(0.25, 0.02), (0.5, 0.02)]}


def test_a_metrics_file_that_cannot_be_opened_is_one_line(tmp_path):
  """Mutation: the open's OSError let through (a traceback) -> red."""
  import pytest

  from alexnet_jax.errors import UserError

  (tmp_path / "metrics.jsonl").mkdir()
  with pytest.raises(UserError, match=f"^cannot write the metrics in {tmp_path} \\(Is a "
                                      "directory\\)$"):
    metrics.MetricWriter(str(tmp_path))


def _events(folder):
  """The events of TensorBoard files (TFRecord framing: a length, its CRC, the record, its
  CRC), read without TensorBoard."""
  import struct

  from tensorboardX.proto.event_pb2 import Event

  events = []
  for name in sorted(folder.iterdir()):
    data = name.read_bytes()
    pos = 0
    while pos < len(data):
      (length,) = struct.unpack("<Q", data[pos:pos + 8])
      events.append(Event.FromString(data[pos + 12:pos + 12 + length]))
      pos += 12 + length + 4
  return events


def test_tensorboard_receives_each_finite_value_under_its_split_at_its_step(tmp_path):
  """The values TensorBoard shows, read back from its files, with NumPy's deprecations as
  errors: tensorboardX before 2.6.2.2 converts each value through a 1-element array, which
  NumPy 2.5 refuses (every run ended in a TypeError at its first log). Mutations: the tag
  without its split; the finite check dropped (a NaN written); the values as given (a jax
  scalar) -> red; and under `launch/test.sh --lowest` the floor `tensorboardX>=2.6.1`."""
  import warnings

  import jax.numpy as jnp
  import numpy as np

  with warnings.catch_warnings():
    warnings.simplefilter("error", DeprecationWarning)
    with metrics.MetricWriter(str(tmp_path)) as writer:
      writer.write(2, "train", {"loss": 2.5, "top1_error": np.float32(0.75),
                                "lr": jnp.asarray(0.01), "grad_norm": float("nan")})
      writer.write(4, "eval", {"loss": 2.25})
  scalars = [(e.step, v.tag, v.simple_value) for e in _events(tmp_path / "tensorboard")
             for v in e.summary.value]
  assert scalars == [(2, "train/loss", 2.5), (2, "train/top1_error", 0.75),
                     (2, "train/lr", np.float32(0.01)), (4, "eval/loss", 2.25)]


def _hparams(folder) -> list:
  """The HParams plugin's records in TensorBoard's files: (tag, HParamsPluginData)."""
  from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData

  return [(v.tag, HParamsPluginData.FromString(v.metadata.plugin_data.content))
          for e in _events(folder) for v in e.summary.value
          if v.metadata.plugin_data.plugin_name == "hparams"]


def test_the_config_is_the_runs_session_in_tensorboards_hparams_dashboard(tmp_path):
  """Every field by its dotted name, numbers as numbers, tuples and None as text, and the
  dashboard's metrics. Mutations, each red: the tuple passed as it is (left unset); the
  metrics left out; the write's failure not caught (an OSError traceback)."""
  import errno

  import ml_collections
  import pytest

  from alexnet_jax.errors import UserError

  config = ml_collections.ConfigDict({"seed": 3, "model": {"dtype": "bfloat16", "dropout": True},
                                      "optimizer": {"learning_rate": 0.01},
                                      "schedule": {"events": ("epoch 1: epsW=0.001",)},
                                      "init_from": {"workdir": None}})
  with metrics.MetricWriter(str(tmp_path)) as writer:
    writer.write_config(config)
  records = dict(_hparams(tmp_path / "tensorboard"))
  given = records["_hparams_/session_start_info"].session_start_info.hparams
  assert (given["seed"].number_value, given["model.dtype"].string_value,
          given["model.dropout"].bool_value, given["optimizer.learning_rate"].number_value,
          given["schedule.events"].string_value, given["init_from.workdir"].string_value) == (
              3.0, "bfloat16", True, 0.01, "('epoch 1: epsW=0.001',)", "None")
  experiment = records["_hparams_/experiment"].experiment
  assert [m.name.tag for m in experiment.metric_infos] == list(metrics.HPARAMS_METRICS)
  assert sorted(h.name for h in experiment.hparam_infos) == sorted(given)

  full = OSError(errno.ENOSPC, "No space left on device")
  with metrics.MetricWriter(str(tmp_path / "full")) as writer:
    writer._tb.write_event = lambda event: (_ for _ in ()).throw(full)
    with pytest.raises(UserError, match=r"^cannot write the config's TensorBoard record in "
                                        r".*full \(No space left on device\)$"):
      writer.write_config(config)
    with pytest.raises(UserError, match=r"^cannot write the metrics of step 2 in "):
      writer.write(2, "train", {"loss": 1.0})
