"""`python -m alexnet_jax.evaluate`: a model's and an ensemble's errors (Table 2)."""


import pytest



def test_an_ensemble_of_a_model_with_itself_equals_the_model(straight_run):
  from alexnet_jax import evaluate

  workdir, result = straight_run
  rows = evaluate.evaluate([workdir, workdir])
  assert rows[0]["top1_error"] == rows[1]["top1_error"] == rows[2]["top1_error"]
  assert rows[2]["top5_error"] == rows[0]["top5_error"] and rows[2]["examples"] == 40
  assert rows[0]["top1_error"] == pytest.approx(result["eval"]["top1_error"])
