"""Metrics out of the loop (`metrics.py`): JSON lines and the curves drawn from them."""

from absl import logging as absl_logging

from alexnet_jax import metrics


# ----------------------------------------------------------------------------- 13: tracebacks

def test_a_metrics_file_cut_mid_line_is_read_with_a_warning(tmp_path, caplog):
  path = tmp_path / "metrics.jsonl"
  path.write_text('{"step": 2, "split": "train", "loss": 1.0}\n{"step": 4, "split": "tr')
  with caplog.at_level("WARNING"):
    absl_logging.use_python_logging()
    rows = metrics.read_metrics(str(path))
  assert rows == [{"step": 2, "split": "train", "loss": 1.0}]
  assert any("skipped 1 unreadable line" in r.getMessage() for r in caplog.records)
  metrics.plot_curves(str(path), str(tmp_path / "curves.png"))
