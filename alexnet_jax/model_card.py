"""The model card of an exported network: what it is, what it was trained on and reached, and
the pre-processing a caller must do, as a runnable Python block (Pillow and NumPy only) that
reads an image exactly as `predict` reads it for that network (§2's stored form through the
same reduced-scale JPEG decode, resize rule and filter, then the centre crop)."""

from __future__ import annotations

import os

import jax
import numpy as np

from alexnet_jax import environment, inference, metrics, model_spec
from alexnet_jax.data import images

# What every stored form shares: 8 bits (wide-integer images scaled), the colour mode, and the
# reduced-scale JPEG decode (`images.decode`: Pillow's `draft` gives simplejpeg's pixels).
_OPEN = '''import numpy as np
from PIL import Image

WIDE = {wide}


def stored(path, size={size}, mode="{mode}"):
    """The image at `path` in §2's stored form: uint8 [size, size, channels]."""
    with Image.open(path) as image:
        image.draft(mode, (size, size))  # JPEG: the smallest DCT scale keeping both sides >= size
        if image.mode in WIDE:  # 16-bit images scaled to 8 bits, not clipped
            wide = np.asarray(image).astype(np.float64) * (255.0 / WIDE[image.mode])
            image = Image.fromarray(np.clip(np.round(wide), 0, 255).astype(np.uint8), "L")
        if image.mode != mode:
            image = image.convert(mode)
'''
_SHORTER_SIDE = '''        # an image over {aspect}:1 keeps its central {aspect}:1 part
        width, height = image.size
        if width > {aspect} * height:
            left = (width - {aspect} * height) // 2
            image = image.crop((left, 0, left + {aspect} * height, height))
        elif height > {aspect} * width:
            top = (height - {aspect} * width) // 2
            image = image.crop((0, top, width, top + {aspect} * width))
        width, height = image.size  # the shorter side rescaled to size, the centre kept
        scale = size / min(width, height)
        new = (max(size, round(width * scale)), max(size, round(height * scale)))
        if new != image.size:
            image = image.resize(new, Image.BILINEAR, reducing_gap=3.0)
        array = np.asarray(image).reshape(image.size[1], image.size[0], -1)
    top, left = (array.shape[0] - size) // 2, (array.shape[1] - size) // 2
    return array[top:top + size, left:left + size]
'''
_SQUASH = '''        if image.size != (size, size):  # squashed to size x size, aspect ratio ignored
            image = image.resize((size, size), Image.BILINEAR, reducing_gap=3.0)
        return np.asarray(image).reshape(size, size, -1)
'''
_CROP = '''

def preprocess(path):
    """uint8 [{crop}, {crop}, {channels}]: what the exported model takes for the image at `path`."""
    image = {stored_expression}
    top = (image.shape[0] - {crop}) // 2  # the centre crop
    return np.ascontiguousarray(image[top:top + {crop}, top:top + {crop}])
'''
# Fashion-MNIST's stored form: the 28x28 grey image, zero-padded up to 32 or upscaled above.
_FASHION = '''

def fashion_mnist_stored(image, size={size}):
    if size <= 32:
        pad = (size - 28) // 2
        return np.pad(image, ((pad, pad), (pad, pad), (0, 0)))
    grey = Image.fromarray(image[..., 0]).resize((size, size), Image.BILINEAR)
    return np.asarray(grey)[..., None]
'''


def preprocessing_code(config) -> str:
  """The card's Python block for a network trained with `config`."""
  m, d = config.model, config.data
  channels, crop = int(m.in_channels), int(m.input_size)
  mode = "RGB" if channels == 3 else "L"
  if d.name == "fashion_mnist":  # decoded as the 28x28 originals, then their stored form
    code = (_OPEN.format(size=28, mode="L", wide=images.WIDE_MODES)
            + _SHORTER_SIDE.format(aspect=images.MAX_ASPECT))
    code += _FASHION.format(size=int(d.image_size))
    expression = "fashion_mnist_stored(stored(path))"
  else:
    code = _OPEN.format(size=int(d.image_size), mode=mode, wide=images.WIDE_MODES) + (
        _SQUASH if d.resize == "squash" else _SHORTER_SIDE.format(aspect=images.MAX_ASPECT))
    expression = "stored(path)"
  return code + _CROP.format(crop=crop, channels=channels, stored_expression=expression)


def model_card(trained: inference.Trained, fmt: str, output: str, workdir: str) -> str:
  """The model card (markdown) of a network exported from `workdir`."""
  config, identity = trained.config, trained.identity
  spec = model_spec.AlexNetSpec.from_config(config.model)
  m, d = config.model, config.data
  centre_mean = d.mean_patch == "centre"
  lines = [f"# AlexNet ({os.path.basename(output)}, {fmt})", "",
           "Krizhevsky, Sutskever & Hinton (2012), trained with alexnet_jax.", "",
           "## Network", "",
           f"* {spec.columns} column(s), convolutions {tuple(m.conv_features)}, fully connected "
           f"{tuple(m.fc_features)}, {m.num_classes} classes"
           + (", conv6 over pool5" + (" (both columns)" if m.conv6_across_columns else "")
              if m.extra_conv6 else "")
           + (f", {spec.removed_conv} removed (§7)" if spec.removed_conv else "") + ".",
           f"* {sum(int(np.prod(np.shape(x))) for x in jax.tree.leaves(trained.params)):,} "
           f"parameters; LRN {'on' if m.lrn else 'off'}, {m.activation}, dropout {m.dropout} "
           f"({m.dropout_form} form); computed in float32 (trained in {m.dtype}).",
           f"* Checkpoint: {trained.path} (step {trained.step})"
           + (f", written with {environment.said(trained.environment)}."
              if trained.environment else "."),
           "", "## Data", "",
           f"* {identity.describe()}.",
           f"* Mean subtracted: {'the mean image' if d.mean == 'pixel' else 'the per-channel mean'}"
           f" ({'its centre patch' if centre_mean else 'at the crop'}); pixel "
           f"scale {d.pixel_scale:g}.", "", "## Accuracy (the run's evaluation of this checkpoint)",
           ""]
  lines += _accuracy_lines(workdir, trained.step)
  lines += ["", "## Input a caller must prepare", "",
            f"The model takes uint8 [N, {m.input_size}, {m.input_size}, {m.in_channels}] "
            "(channels last), subtracts the mean and scales inside, and returns `probs` and "
            "`fc7`: `python -m alexnet_jax.predict`'s numbers for the centre crop. "
            "`preprocess(path)` below reads an image exactly as predict does for this network "
            "(Pillow and NumPy only):", "", "```python", preprocessing_code(config).rstrip(),
            "```", ""]
  if centre_mean:
    lines.append("Ten crops (§4.1, `predict --ten_crop`): the four corner and the centre "
                 f"{m.input_size}x{m.input_size} patches of `stored(path)` and their mirror "
                 "images, fed as a batch of ten, their `probs` averaged.")
  else:
    lines.append("Ten crops (§4.1, `predict --ten_crop`) are not this model's: training "
                 "subtracted the mean image at each crop's own position, and the exported "
                 "model subtracts its centre patch; use predict for ten-crop figures.")
  lines += ["", "## Classes", "", "Label order (index: name):", ""]
  lines += [f"{i}: {name}" for i, name in enumerate(trained.class_names)]
  return "\n".join(lines) + "\n"


def _accuracy_lines(workdir: str, step: int) -> list[str]:
  """The evaluation of the exported checkpoint's step from the run's metrics (the last one,
  said as such, when that step was not evaluated)."""
  rows = metrics.run_rows(workdir)
  out = []
  for split, said in metrics.EVALUATIONS.items():
    evaluated = [r for r in rows if r["split"] == split]
    at_step = [r for r in evaluated if r["step"] == step] or evaluated
    if at_step:
      r = at_step[-1]
      note = "" if r["step"] == step else f"; the exported checkpoint is step {step}"
      out.append(f"* {said}: top-1 {100 * (1 - r['top1_error']):.2f} %, top-5 "
                 f"{100 * (1 - r['top5_error']):.2f} % accuracy (step {r['step']}{note}).")
  return out or ["* not recorded (no metrics.jsonl beside the checkpoints)."]
