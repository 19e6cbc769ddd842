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


def test_the_curves_have_a_top5_panel_only_where_top5_says_something(tmp_path):
  """A top-5 error near 0 (3 or 10 classes) draws no panel; 20 classes do. Mutation: the
  panel kept for every class count -> red (the 3-class figure is as wide as the 20-class one)."""
  import json
  import warnings

  from PIL import Image

  path = tmp_path / "metrics.jsonl"
  rows = [{"step": s, "epoch": s / 4, "split": split, "loss": 2.0 / s, "top1_error": 0.5 / s,
           "top5_error": 0.1 / s, "lr": 0.01} for s in (1, 2, 3, 4) for split in ("train", "eval")]
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))
  widths = {}
  for classes in (3, 10, 20):
    with warnings.catch_warnings():
      warnings.simplefilter("error")  # no layout warning either
      warnings.simplefilter("ignore", DeprecationWarning)  # matplotlib 3.9's use of pyparsing
      metrics.plot_curves(str(path), str(tmp_path / f"c{classes}.png"), classes)
    with Image.open(tmp_path / f"c{classes}.png") as png:
      widths[classes] = png.size[0]
  assert widths[3] == widths[10] == 1500 and widths[20] == 2000
