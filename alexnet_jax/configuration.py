"""Configs: the one loader and the one table of named variants (the paper's ablations among
them).

A config file defines `get_config(variant: str = "") -> ConfigDict`; `configs/paper.py` holds
every default once and the other configs import it and change a few fields. Named variants
combine after a colon, `configs/paper.py:no_lrn,one_column`; each config applies them last, so
that none of its own changes undoes one. `load` is what `--config=...` does on the command line
(ml_collections' `config_flags`), for code: the training entry point, `ablate` and the tests
read configs the same way. `alexnet_jax.validation` checks a loaded config once.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.machinery
import importlib.util
import os
import sys
from typing import Any, Sequence

import ml_collections
from absl import flags
from ml_collections import config_flags

from alexnet_jax.errors import UserError, first_line, last_line


@dataclasses.dataclass(frozen=True)
class Variant:
  """A named change of a config: its paper section and its field overrides. An ablation names
  the ingredient it removes and the paper's reported error reduction by that ingredient (top-1,
  top-5 points; None: not reported)."""

  section: str
  overrides: dict[str, Any]
  removes: str | None = None
  paper_delta: tuple[float | None, float | None] = (None, None)


VARIANTS = {
    "no_lrn": Variant("§3.3", {"model.lrn": False}, "lrn", (1.4, 1.2)),
    "no_overlap_pool": Variant("§3.4", {"model.pool_window": 2}, "overlap_pool", (0.4, 0.3)),
    "one_column": Variant("§3.2", {"model.columns": 1}, "columns", (1.7, 1.2)),
    # Figure 1 is about training speed, not error.
    "tanh": Variant("§3.1", {"model.activation": "tanh"}, "relu"),
    # "substantial overfitting" without it; no figure.
    "no_dropout": Variant("§4.2", {"model.dropout": 0.0}, "dropout"),
    "no_pca_lighting": Variant("§4.1", {"data.pca_lighting": 0.0}, "pca_lighting", (1.0, None)),
    # §7: "removing any of the middle layers results in a loss of about 2% for the top-1"
    # (conv2-conv4, between the first and the last); of conv5 it says only that removing any
    # convolutional layer degrades the network.
    **{f"no_{name}": Variant("§7", {"model.removed_conv": name}, name,
                             (2.0 if name != "conv5" else None, None))
       for name in ("conv2", "conv3", "conv4", "conv5")},
    # Table 2's "*" models: trained with a sixth convolutional layer over pool5, then
    # fine-tuned with it (configs/finetune.py:conv6).
    "conv6": Variant("Table 2", {"model.extra_conv6": True}),
    # Fine-tuning only, not the paper's route: a fresh conv6 over a source trained without one.
    "new_conv6": Variant("Table 2 (not the paper's route)",
                         {"model.extra_conv6": True, "init_from.new_layers": ("fc8", "conv6")}),
}

# ingredient (`python -m alexnet_jax.ablate --ablations=lrn,...`) -> the variant removing it
ABLATIONS = {v.removes: name for name, v in VARIANTS.items() if v.removes}


def flat(tree, prefix: str = "") -> dict:
  """{'a.b': value} for a nested dict or ConfigDict (lists as tuples)."""
  out = {}
  for key, value in (tree.items() if hasattr(tree, "items") else ()):
    if hasattr(value, "items"):
      out.update(flat(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = tuple(value) if isinstance(value, list) else value
  return out


def set_field(config: ml_collections.ConfigDict, path: str, value) -> None:
  """`config.a.b = value` for path 'a.b' (a locked ConfigDict still rejects unknown keys)."""
  *parents, field = path.split(".")
  for parent in parents:
    config = config[parent]
  config[field] = tuple(value) if isinstance(value, list) else value


def apply_variants(config: ml_collections.ConfigDict, names: str) -> ml_collections.ConfigDict:
  """`config` with the comma-separated variants `names` ('' for none) of `VARIANTS` applied;
  two that set one field to different values (`no_conv3,no_conv4`) are refused."""
  set_by = {}
  for name in filter(None, (n.strip() for n in names.split(","))):
    if name not in VARIANTS:
      raise ValueError(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}")
    for path, value in VARIANTS[name].overrides.items():
      other = set_by.setdefault(path, name)
      if VARIANTS[other].overrides[path] != value:
        raise ValueError(f"variants {other} and {name} both set {path}: combine variants that "
                         "change different fields")
      set_field(config, path, value)
  return config


PACKAGED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")


def unknown_field(spec: str, overrides: Sequence[str]) -> str | None:
  """'--config.a.b=v: a has no field 'b'; did you mean c?' for the first of `overrides` whose
  field the config of `spec` does not have; None when each names a field of it."""
  try:
    config = load(spec)
  except UserError:
    return None
  for override in overrides:
    path = override.split("=", 1)[0]
    node, where = config, "the config"
    for key in path.split("."):
      if not isinstance(node, ml_collections.ConfigDict):
        return f"--config.{override}: {where} is a value, not a section of fields"
      if key not in node:
        close = difflib.get_close_matches(key, list(node.keys()), n=3, cutoff=0.7)
        hint = (f"did you mean {' or '.join(close)}?" if close
                else f"its fields: {', '.join(sorted(node.keys()))}")
        return f"--config.{override}: {where} has no field {key!r}; {hint}"
      node, where = node[key], (key if where == "the config" else f"{where}.{key}")
  return None


def resolve(spec: str) -> str:
  """`spec` ('path/to/config.py[:variants]'), or, when its file does not exist and it names
  one of the configs shipped with the package (`configs/<name>.py` or `<name>.py`), that one:
  the README's `--config=configs/paper.py` works from any directory."""
  path, colon, variants = spec.partition(":")
  if os.path.exists(path) or os.path.dirname(path) not in ("", "configs"):
    return spec
  packaged = os.path.join(PACKAGED, os.path.basename(path))
  return packaged + colon + variants if os.path.isfile(packaged) else spec


def packaged() -> list[str]:
  """The configs shipped with the package, as `--config` names them."""
  return sorted(f"configs/{name}" for name in os.listdir(PACKAGED)
                if name.endswith(".py") and not name.startswith("_"))


def file_error(spec: str) -> str | None:
  """The one line for a config file (`spec`, 'path.py[:variants]') that is there but gives no
  config: it does not run (a syntax error, a failed import), has no `get_config`, whose
  `get_config(variants)` raises, or that returns something other than a ConfigDict; None when it
  gives one, or is not there (`load_error` reports a missing file). The file is run as
  `config_flags` runs it, once more."""
  path, colon, variants = resolve(spec).partition(":")
  if not os.path.isfile(path):
    return None
  where = f"the config {spec}"
  loader = importlib.machinery.SourceFileLoader("alexnet_jax_config_check", path)
  module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
  try:
    loader.exec_module(module)
  except SyntaxError as e:
    line = f" at line {e.lineno}" if e.lineno else ""
    return f"cannot load {where}: SyntaxError{line}: {e.msg}"
  except Exception as e:  # noqa: BLE001 -- whatever the file raises is the user's to see
    return f"cannot load {where}: {type(e).__name__}: {first_line(e)}"
  if not callable(getattr(module, "get_config", None)):
    return f"{where} defines no get_config() (a config file returns its ConfigDict from one)"
  try:
    config = module.get_config(*([variants] if colon else []))
  except Exception as e:  # noqa: BLE001
    return f"{where}: get_config() raised {type(e).__name__}: {first_line(e)}"
  if not isinstance(config, ml_collections.ConfigDict):
    return (f"{where}: get_config() returned {type(config).__name__}, not an ml_collections "
            "ConfigDict")
  return None


def load(spec: str, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
  """The config `--config=spec --config.<override> ...` gives on the command line: `spec` is
  'path/to/config.py[:variants]', each override 'a.b=value' (parsed by the field's type; a
  later one wins). A file that does not load, an unknown field or a bad value: `UserError`."""
  argv = ["load", f"--config={resolve(spec)}", *(f"--config.{o}" for o in overrides)]
  # config_flags runs a file in the module of the file it ran last ('config_config', by
  # importlib's load_module): one without get_config would give the last one's config.
  sys.modules.pop("config_config", None)
  values = flags.FlagValues()
  config_flags.DEFINE_config_file("config", None, "training configuration file",
                                  flag_values=values, lock_config=True, sys_argv=argv)
  try:
    values(argv)
    config = values["config"].value
    if not isinstance(config, ml_collections.ConfigDict):
      config.get("model")  # a file that failed to load raises its error on first access
      raise UserError(file_error(spec) or f"cannot load the config {spec!r}")
  except UserError:
    raise
  except Exception as e:  # noqa: BLE001 -- loading and overriding raise many kinds
    message = load_error(e, overrides, spec)
    if message is None:
      raise
    raise UserError(message) from None
  return config


def load_error(e: BaseException, overrides: Sequence[str] | None = None,
               spec: str | None = None) -> str | None:
  """The one line that reports a config which does not load (`file_error` of `spec` first: the
  file's own fault), or a bad override (naming `overrides` when they are known, and the field
  one of them names that the config of `spec` lacks, with the names it has that are close);
  None when `e` is neither."""
  text = str(e)
  if spec and (message := file_error(spec)) is not None:
    return message
  if isinstance(e, (AttributeError, KeyError)) and spec and overrides:
    missing = unknown_field(spec, overrides)
    if missing is not None:
      return missing
  if isinstance(e, flags.Error):
    # An exception inside the config file comes with its traceback: keep its last line.
    return f"{text.split(':', 1)[0]}: {last_line(text)}" if "Traceback" in text else text
  if isinstance(e, OSError):  # a file that does not exist or does not load
    if isinstance(e, FileNotFoundError) or "onfiguration" in text:
      return (f"cannot load the config: {last_line(text)} (the package's: "
              f"{', '.join(packaged())})")
    return None
  if isinstance(e, (AttributeError, KeyError, TypeError, ValueError)):
    what = e.args[0] if e.args else e
    among = f" among {', '.join(overrides) or '(none)'}" if overrides is not None else ""
    return f"bad config override{among}: {what}"
  return None
