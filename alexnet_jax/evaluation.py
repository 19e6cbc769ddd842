"""The one evaluation (§6's validation figures): the training loop's at its evaluation steps
and the `evaluate` tool's, over the pipeline's evaluation batches (zero padding and a mask,
`data.batch`), the sums taken on the devices by the eval step (`steps.make_eval_step`), the
figures their means over the readable images; the tool keeps each image's softmax too (for
ensembles, per-class accuracy and the confusion matrix).
"""

from __future__ import annotations

import contextlib
import itertools
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from alexnet_jax.errors import UserError
from alexnet_jax.progress import track
from alexnet_jax.sharding import to_global


_clock = time.perf_counter


class Interrupted(Exception):
  """The evaluation was left unfinished because a stop was requested."""


def evaluate(eval_step, params, mean, batches, steps: int, sharding, *, what: str,
             keep: str = "", stopped: Callable[[], bool] | None = None,
             timing: dict | None = None, transfer: str = "pageable"
             ) -> tuple[dict, dict | None]:
  """({split: {'loss', 'top1_error', 'top5_error', 'skipped_images'}}, kept) over `steps`
  evaluation batches. `keep` a split: `eval_step` returns (sums, probs) and `kept` is
  {'probs': that split's softmax [n, C], 'labels': [n]} of the readable images, in order.
  `stopped`: asked before each batch; when it says so, `Interrupted` is raised. `transfer`:
  how the batches cross to the devices (`data.transfer`, `sharding.to_global`).
  `timing`: filled with the pass's 'seconds' (its input closed too), its
  'input_start_seconds' (until the input's first batch came), its readable 'images' and
  'img_per_s': those per second after the first batch, whose time holds the step's
  compilation in a run's first evaluation, up to the last batch's sums (over the whole pass
  when it had one batch). `batches` is read for `steps` batches, then closed, whatever
  happened (when it can be)."""
  totals, skipped, kept = None, 0, {"probs": [], "labels": []}
  start = came = _clock()
  first_done = first_images = None  # when the first batch's sums were on the host, and its images
  with contextlib.ExitStack() as reading:
    if hasattr(batches, "close"):  # the input's processes stop at the end, outside the rate
      reading.callback(batches.close)
    for batch in track(itertools.islice(batches, steps), steps, what):
      if totals is None:
        came = _clock()
      if stopped is not None and stopped():
        raise Interrupted
      skipped += int(batch.pop("skipped").sum())
      out = eval_step(params, to_global(batch, sharding, transfer), mean)
      if keep:
        out, probs = out
        mask = batch["mask"]
        kept["probs"].append(np.asarray(jax.device_get(probs[keep]))[mask])
        kept["labels"].append(batch["label"][mask])
      if totals is None and timing is not None:
        first_images, first_done = _count(out), _clock()
      totals = out if totals is None else jax.tree.map(jnp.add, totals, out)
    totals = jax.device_get(totals)
    last = _clock()
  if timing is not None and totals is not None:
    images = _count(totals)
    steady = images > first_images  # readable images after the first batch
    timing.update(seconds=_clock() - start, input_start_seconds=came - start, images=images,
                  img_per_s=(images - first_images) / max(last - first_done, 1e-9) if steady
                  else images / max(last - start, 1e-9))
  results = {}
  for split, split_sums in totals.items():
    count = float(split_sums.pop("count"))
    if count == 0:
      raise UserError(f"no evaluation image could be read ({skipped} unreadable)")
    results[split] = {k: float(v) / count for k, v in split_sums.items()}
    results[split]["skipped_images"] = skipped
  if not keep:
    return results, None
  return results, {k: np.concatenate(v) for k, v in kept.items()}


def _count(sums: dict) -> float:
  """The readable images of an eval step's sums (every split counts the same ones)."""
  return float(jax.device_get(next(iter(sums.values()))["count"]))
