"""Fine-tuning (Table 2, "*"): a trained workdir's layers copied into a fresh network.

Every layer comes from the `init_from.workdir` checkpoint (`checkpoint_params.restore`)
except those in `init_from.new_layers` (fc8: a head for the new classes; conv6 with
configs/finetune.py:new_conv6). The network and what it expects of its input are the source's
(`inherit`): the model section (but the class count) and the input settings (stored size,
resize rule, pixel scale, mean) are taken from the source's checkpoint unless given on the
command line; a different pixel scale, mean or channel count given there is refused unless
`init_from.accept_input_change`. Table 2's route is configs/paper.py:conv6 for training on
the first dataset, then configs/finetune.py:conv6 on the second (conv6 copied with the rest).
"""

from __future__ import annotations

import copy

import jax
from absl import logging

from alexnet_jax import checkpoint_meta, checkpoint_params, configuration, model_spec
from alexnet_jax.errors import UserError

# The input settings a trained network expects (with model.in_channels and model.input_size).
INPUT_FIELDS = ("data.image_size", "data.resize", "data.pixel_scale", "data.mean")
# Of those, the ones that change what the copied layers see.
CHANGES_INPUT = ("data.pixel_scale", "data.mean", "model.in_channels")


def validate(init_from) -> None:
  """`init_from`: a source where the config needs one, a step >= 0 and new layers this network
  can have."""
  if init_from.required and not init_from.workdir:
    raise UserError("this config fine-tunes a trained network: give its workdir with "
                    "--config.init_from.workdir=DIR (without one it would train from a random "
                    "initialisation)")
  if init_from.freeze_copied and not init_from.workdir:
    raise UserError("init_from.freeze_copied freezes the layers copied from "
                    "init_from.workdir, which is not set")
  if init_from.step < 0:
    raise UserError(f"init_from.step must be >= 0 (0: the newest), got {init_from.step}")
  unknown = [n for n in init_from.new_layers if n not in model_spec.LAYERS + (model_spec.CONV6,)]
  if unknown:
    raise UserError(f"init_from.new_layers names unknown layers {unknown}; the layers are "
                    f"{', '.join(model_spec.LAYERS + (model_spec.CONV6,))}")


def inherit(config, source_workdir: str, overridden=None):
  """A copy of `config` with the source's network and input settings (see the module
  docstring): `source_workdir`'s newest checkpoint (`init_from.step`/`best` pick another) or,
  on a resume, the run's own. `overridden`: the config paths given on the command line (None:
  none were). Every setting taken is logged in one line; every overridden input setting that
  differs from the source's is named in one `UserError`."""
  init = config.init_from
  own = source_workdir != init.workdir
  step_dir, meta = checkpoint_params.newest_meta(
      source_workdir, step=None if own else (int(init.step) or None),
      best=False if own else bool(init.best))
  source = checkpoint_meta.config_of(meta)
  overridden = set(overridden or ())
  given = lambda path: any(path == o or path.startswith(o + ".") for o in overridden)
  theirs = configuration.flat(source.model, "model.") | {f: source.data[f.split(".")[1]]
                                                        for f in INPUT_FIELDS}
  mine = configuration.flat(config.model, "model.") | {f: config.data[f.split(".")[1]]
                                                    for f in INPUT_FIELDS}
  keep = {"model.num_classes", "model.dtype", "model.param_dtype"} | (
      {"model.extra_conv6"} if model_spec.CONV6 in init.new_layers else set())
  out, taken, refused = copy.deepcopy(config), [], []
  for path, value in theirs.items():
    if path in keep or path not in mine or mine[path] == value:
      continue
    if given(path):
      if path in CHANGES_INPUT and not init.accept_input_change:
        refused.append(f"{path} is {mine[path]} here and {value} there")
      continue
    configuration.set_field(out, path, value)
    taken.append(f"{path} {mine[path]} → {value}")
  if refused:
    raise UserError(f"fine-tuning from {step_dir}: the copied layers were trained on other input "
                    f"({'; '.join(refused)}); drop those flags to use the source's, or set "
                    "--config.init_from.accept_input_change=True to train on the new input anyway")
  if taken:
    logging.info("fine-tuning from %s: the network and input settings are the source's "
                 "(%s)", step_dir, "; ".join(taken))
  return out


def transfer(params: dict, init_from, mesh: jax.sharding.Mesh) -> dict:
  """`params` (a fresh model's) with each layer of the source checkpoint copied in, except the
  layers in `init_from.new_layers`. Every layer that only one of the two networks has, or of
  another shape, is named in one `UserError`: the backbone must be the source's."""
  step_dir, _, _, _, source = checkpoint_params.restore(
      init_from.workdir, step=int(init_from.step) or None, best=bool(init_from.best),
      mesh_for=lambda _: mesh)
  new_layers = tuple(init_from.new_layers)
  problems = []
  for name in source:
    if name not in params:
      problems.append(f"it has a {name} layer and this config does not"
                      + (" (set --config.model.extra_conv6=True: configs/finetune.py:conv6)"
                         if name == model_spec.CONV6 else ""))
  for name, layer in params.items():
    if name in new_layers:
      continue
    if name not in source:
      problems.append(
          f"it has no {name} layer to copy (train the source with it, configs/paper.py:conv6, "
          f"the paper's route, or add {name} to init_from.new_layers: "
          "configs/finetune.py:new_conv6)")
      continue
    for key in layer:
      if source[name][key].shape != layer[key].shape:
        problems.append(f"{name}.{key} has shape {tuple(source[name][key].shape)} there and "
                        f"{tuple(layer[key].shape)} in this config")
  if problems:
    raise UserError(f"cannot fine-tune from {step_dir}: {'; '.join(problems)}; use the source's "
                    "model config (drop the model flags) or add the layers to "
                    "init_from.new_layers")
  out = {}
  for name, layer in params.items():
    if name in new_layers:
      logging.info("fine-tuning: %s initialised afresh (a new layer)", name)
      out[name] = layer
      continue
    out[name] = jax.tree.map(lambda s, t: jax.device_put(s.astype(t.dtype), t.sharding),
                             source[name], layer)
  logging.info("fine-tuning from %s", step_dir)
  return out
