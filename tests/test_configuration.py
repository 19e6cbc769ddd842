"""Configs (`configuration.py`): the one loader, the one validation pass at load (each section
by its owner), and the variants."""

import os

import ml_collections
import pytest

from alexnet_jax import configuration, train, validation
from alexnet_jax.errors import UserError
from conftest import ROOT, load_config, small_config


@pytest.mark.parametrize("field,value,message", [
    ("checkpoint.keep", 0, "checkpoint.keep must be >= 1, got 0 .0 would delete every"),
    ("checkpoint.every_steps", 0, "checkpoint.every_steps must be >= 1"),
    ("log_every_steps", 0, "log_every_steps must be >= 1"),
    ("stats_every_steps", 0, "stats_every_steps must be >= 1"),
    ("optimizer.momentum", -0.9, r"optimizer.momentum must be in \[0, 1\), got -0.9"),
    # Structures that could not be built ended in tracebacks (ZeroDivisionError, TypeError).
    # Mutation: the whole-number check in AlexNetSpec.validate dropped -> red.
    ("model.fc_features", (0, 0), r"fc_features must be whole numbers >= 1"),
    ("model.conv1_stride", 0, r"conv1_stride must be whole numbers >= 1"),
    ("model.pool_window", 0, r"pool_window must be whole numbers >= 1"),
    ("optimizer.weight_decay", -5e-4, "must be >= 0"),
    ("optimizer.decay_on", "kernals", "optimizer.decay_on must be one of all, kernels, got "
                                      "'kernals'"),
    ("optimizer.learning_rate", float("nan"), "learning_rate must be positive"),
    ("eval_every_epochs", 0.0, "eval_every_epochs must be a positive number"),
    ("num_epochs", float("nan"), "num_epochs must be a positive number"),
    # Infinite values were taken: a traceback (OverflowError) when the run started, or a run
    # that diverged at its first step. Mutation: the finiteness checks dropped -> red.
    ("num_epochs", float("inf"), "num_epochs must be a positive number, got inf"),
    ("eval_every_epochs", float("inf"), "eval_every_epochs must be a positive number"),
    ("optimizer.bias_lr_multiplier", float("inf"), "bias_lr_multiplier must be a number >= 0"),
    ("schedule.min_delta", float("inf"), "schedule.min_delta must be a number >= 0"),
    ("schedule.drop_epochs", (30.0, float("inf")), "drop_epochs must be numbers >= 0"),
    ("stall.band", float("inf"), "stall.band must be >= 0"),
    ("data.synthetic_eval_size", -1, "data.synthetic_eval_size must be >= 1"),  # a traceback
    ("divergence.factor", 0.5, "divergence.factor must be 0 .off. or a finite number > 1"),
    ("divergence.factor", float("nan"), "divergence.factor must be 0 .off. or a finite"),
    ("seed", -1, "seed must be an integer >= 0"),
    ("mesh.model", 0, "mesh.model must be -1"),
    ("schedule.kind", "cosine", "schedule.kind must be one of"),
    ("schedule.min_delta", -0.1, "schedule.min_delta must be a number >= 0"),
    ("init_from.new_layers", ("fc9",), "unknown layers"),
    ("model.columns", 3, "columns must be 2"),
    ("data.name", "imagenet", "unknown dataset 'imagenet'; known: imagenet2012, image_folder"),
    ("data.pca_lighting", -0.1, "pca_lighting is the std"),
    ("data.read_threads", -1, "data.read_threads must be >= 0"),
    ("data.transfer", "dma", "data.transfer must be one of pageable, pinned, got 'dma'"),
    ("data.workers", -2, r"data.workers must be >= 0, or -1 \(one per core\)"),
    ("data.mean", "median", "data.mean must be"),
    ("data.crop_chunk", 3, "crop_chunk .3. must be >= 1 and divide"),
    ("data.crop_chunk", 0, "crop_chunk .0. must be >= 1"),
    ("data.pixel_scale", float("nan"), "data.pixel_scale must be a positive number"),
    ("profile.steps", -1, "profile.steps must be >= 0, got -1"),
    ("profile.skip_steps", -1, "profile.skip_steps must be >= 0, got -1"),
    # Each bound itself, on the refused side (`test_the_bounds_themselves_are_taken` has the
    # other side).
    ("schedule.factor", 1.0, r"schedule.factor must be in \(0, 1\), got 1.0"),
    ("schedule.factor", 0.0, r"schedule.factor must be in \(0, 1\), got 0.0"),
    ("schedule.patience", 0, "schedule.patience must be >= 1"),
    ("schedule.max_drops", -1, "schedule.max_drops >= 0"),
    ("optimizer.learning_rate", 0.0, "learning_rate must be positive, got 0.0"),
    ("optimizer.momentum", 1.0, r"optimizer.momentum must be in \[0, 1\), got 1.0"),
    ("model.num_classes", 1, "num_classes must be >= 2, got 1"),
    ("data.pixel_scale", 0.0, "data.pixel_scale must be a positive number, got 0.0"),
    ("data.prepared_quality", 0, r"data.prepared_quality must be in 1..100, got 0"),
    ("data.prepared_quality", 101, r"data.prepared_quality must be in 1..100, got 101"),
    # Each remaining check of its section's validator, which no other row reaches.
    ("data.resize", "crop", "data.resize must be one of shorter_side, squash, got 'crop'"),
    ("data.mean_patch", "corner", "data.mean_patch must be one of crop, centre, got 'corner'"),
    ("data.prepared_chroma", "411", "data.prepared_chroma must be one of 444, 422, 420, got "
                                    "'411'"),
    ("num_steps", -1, r"num_steps must be an integer >= 0 \(0: num_epochs decides\), got -1"),
    ("init_from.step", -1, r"init_from.step must be >= 0 \(0: the newest\), got -1"),
    ("init_from.freeze_copied", True, "freezes the layers copied from init_from.workdir, which "
                                      "is not set"),
    ("model.conv_features", (32, 64, 96, 96), "conv_features and conv_kernels need 5 entries"),
    ("model.fc_features", (256, 256, 256), "need 5 entries and fc_features 2"),
    ("model.init_std.fc8", 0.0, "init_std must be positive numbers"),
    ("model.activation", "gelu", "activation must be 'relu' or 'tanh', got 'gelu'"),
    ("model.dropout_form", "scaled", "dropout_form must be one of paper, inverted, got "
                                     "'scaled'"),
    ("model.dtype", "float8", "dtype must be float32, bfloat16 or float16, got 'float8'"),
    ("model.param_dtype", "int8", "dtype must be float32, bfloat16 or float16, got 'int8'"),
])
def test_settings_that_cannot_work_are_refused_before_anything_runs(tmp_path, field, value,
                                                                     message):
  config = small_config()
  section, _, name = field.rpartition(".")
  (config[section] if section else config)[name] = value
  with pytest.raises(UserError, match=message):
    validation.validate(config)
  with pytest.raises(UserError, match=message):
    train.train_and_evaluate(config, str(tmp_path / "run"))
  assert not os.path.exists(tmp_path / "run")


def test_the_bounds_themselves_are_taken():
  """The edge of each range that includes it: no drops, no momentum, no weight decay, no
  bias rate, any improvement counts, two classes, no stall check, `num_epochs` deciding,
  seed 0, no profile and one from the first step, one checkpoint kept, one written every step,
  one-image splits, JPEG quality 1 and 100, the divergence check off (0) and at a factor just
  above 1. Mutations: `0 <= momentum`
  made `0 <`, `max_drops < 0` made `<= 0`, `num_classes < 2` made `<= 2`, `checkpoint.keep <
  1` made `<= 1`, the data sizes' `< 1` made `<= 1`, either end of `1 <= prepared_quality <=
  100` made strict, the divergence factor's `== 0` made `== 1` or `> 1` made `> 2` -> red."""
  config = small_config()
  config.schedule.update(dict(max_drops=0, min_delta=0.0, patience=1, factor=0.5))
  config.optimizer.update(dict(momentum=0.0, weight_decay=0.0, bias_lr_multiplier=0.0))
  config.model.num_classes = 2
  config.stall.update(dict(check_steps=0, band=0.0))
  config.update(dict(num_steps=0, seed=0, log_every_steps=1, stats_every_steps=1))
  config.profile.update(dict(steps=0, skip_steps=0))
  config.checkpoint.update(dict(keep=1, every_steps=1))
  config.data.update(dict(synthetic_train_size=1, synthetic_eval_size=1, read_threads=0,
                          prefetch=0, pca_lighting=0.0, prepared_quality=1))
  validation.validate(config)
  config.data.prepared_quality = 100
  config.divergence.factor = 1.01  # just above 1: any rise beyond the running mean
  validation.validate(config)
  config.divergence.factor = 0.0  # finiteness only
  validation.validate(config)


def test_every_shipped_config_and_variant_validates():
  for name in sorted(f[:-3] for f in os.listdir(os.path.join(ROOT, "configs"))
                     if f.endswith(".py") and not f.startswith("_")):
    for variant in ("", *configuration.VARIANTS):
      config = load_config(name, variant)
      if config.init_from.required:  # a fine-tuning config: refused without its source
        with pytest.raises(UserError, match="--config.init_from.workdir=DIR"):
          validation.validate(config)
        config.init_from.workdir = "/a/trained/workdir"
      validation.validate(config)


def test_a_config_that_does_not_load_or_a_bad_override_is_one_line():
  with pytest.raises(UserError, match="cannot load the config|No such file"):
    configuration.load(os.path.join(ROOT, "configs", "tinny.py"))
  with pytest.raises(UserError, match="optimizer has no field 'learning_rat'; did you mean "
                                      "learning_rate"):
    load_config("tiny", overrides=["optimizer.learning_rat=0.1"])
  with pytest.raises(UserError, match="model.columns=x: invalid literal"):
    load_config("tiny", overrides=["model.columns=x"])


# A config file of a user's that is there but gives no config, and the line that says why.
BROKEN_CONFIGS = [
    ("def get_config(:\n  pass\n", r"cannot load the config .*SyntaxError at line 1"),
    ("import no_such_module\n", r"ModuleNotFoundError: No module named 'no_such_module'"),
    ("undefined_name\n", r"cannot load the config .*NameError: name 'undefined_name'"),
    ("x = 1\n", r"defines no get_config\(\)"),
    ("def get_config():\n  return 5\n", r"get_config\(\) returned int, not an ml_collections"),
    ("def get_config():\n  return {}.x\n",
     r"get_config\(\) raised AttributeError: 'dict' object has no attribute 'x'"),
]


@pytest.mark.parametrize("text,message", BROKEN_CONFIGS)
def test_a_config_file_that_gives_no_config_says_why_in_one_line(tmp_path, text, message):
  """Mutation: `load_error` not asking `file_error` first (as before: a syntax error was a
  traceback, a get_config that raised was 'bad config override among (none)') -> red; so is
  `load` leaving config_flags' module of the last file (the file without get_config then gave
  tiny's config)."""
  load_config("tiny")
  path = tmp_path / "mine.py"
  path.write_text(text)
  with pytest.raises(UserError, match=message):
    configuration.load(str(path))
  with pytest.raises(UserError, match=message):
    configuration.load(str(path), ["seed=1"])


def test_an_unknown_variant_names_the_known_ones():
  with pytest.raises(UserError, match="unknown variant 'bogus'; known: no_lrn, "):
    load_config("tiny", "bogus")


def test_variants_that_set_one_field_to_different_values_are_refused():
  """`no_conv3,no_conv4` would remove conv4 alone (the later variant wins): one line; variants
  that agree (`conv6` and `new_conv6` both add conv6) combine. Mutation: the check dropped ->
  red."""
  with pytest.raises(UserError, match=r"tiny.py:no_conv3,no_conv4: .*variants no_conv3 and "
                                      r"no_conv4 both set model.removed_conv"):
    configuration.load("configs/tiny.py:no_conv3,no_conv4")
  both = configuration.load("configs/tiny.py:conv6,new_conv6")
  assert both.model.extra_conv6 and tuple(both.init_from.new_layers) == ("fc8", "conv6")


@pytest.mark.parametrize("override,message", [
    ("optim.learning_rate=0.1", r"^--config.optim.learning_rate=0.1: the config has no field "
                                r"'optim'; did you mean optimizer\?$"),
    ("model.lrn_sise=3", "model has no field 'lrn_sise'; did you mean lrn_size"),
    ("nosuchfield=1", "the config has no field 'nosuchfield'; its fields: checkpoint, data, "),
    ("seed.x=1", "seed is a value, not a section"),
    ("model.column=1", r"model has no field 'column'; did you mean columns or column_maps\?$"),
    ("model.init_std.conv9=0.1", r": model\.init_std has no field 'conv9'; did you mean conv"),
    ("model.init_std.conv1.x=1", r": model\.init_std\.conv1 is a value, not a section"),
])
def test_an_override_of_a_field_the_config_lacks_names_it_and_the_close_ones(override, message):
  with pytest.raises(UserError, match=message):
    load_config("tiny", overrides=["num_epochs=2", override])


def test_a_packaged_config_is_found_from_any_directory_and_a_file_of_ones_own_wins(
    tmp_path, monkeypatch):
  """The README's --config=configs/paper.py works outside the checkout; a configs/paper.py of
  one's own in the directory is that file. Mutations: `and` -> `or` in `resolve` (the packaged
  one never found), `exists() and dirname not in` (one's own file replaced) -> red."""
  from alexnet_jax import configuration

  monkeypatch.chdir(tmp_path)
  for spec in ("configs/paper.py", "paper.py", "configs/tiny.py:no_lrn"):
    assert configuration.resolve(spec).startswith(configuration.PACKAGED)
  assert configuration.load("configs/paper.py").model.num_classes == 1000
  (tmp_path / "configs").mkdir()
  (tmp_path / "configs" / "paper.py").write_text(
      "from alexnet_jax.configs import paper\n\n\ndef get_config():\n"
      "  config = paper.get_config()\n  config.model.num_classes = 7\n  return config\n")
  assert configuration.resolve("configs/paper.py") == "configs/paper.py"
  assert configuration.load("configs/paper.py").model.num_classes == 7
  assert configuration.resolve("elsewhere/paper.py") == "elsewhere/paper.py"  # not shipped


def test_a_bad_override_names_the_overrides_only_when_they_are_known():
  from alexnet_jax import configuration

  assert configuration.load_error(ValueError("x"), []) == "bad config override among (none): x"
  assert configuration.load_error(ValueError("x"), ["a=1", "b=2"]) == (
      "bad config override among a=1, b=2: x")
  assert configuration.load_error(ValueError("x")) == "bad config override: x"


def test_a_config_without_some_of_the_defaults_fields_names_them():
  """A config written from scratch ended in `AttributeError: 'model'` (mutation: validate
  without `_validate_fields` -> red)."""
  with pytest.raises(UserError, match=r"lacks the fields checkpoint.every_steps, .* and \d+ "
                                      r"more: a config starts from configs/paper.py"):
    validation.validate(ml_collections.ConfigDict())
  config = load_config("tiny")
  with config.unlocked():
    del config.model["lrn_k"]
  with pytest.raises(UserError, match=r"^the config lacks the fields model.lrn_k: "):
    validation.validate(config)
