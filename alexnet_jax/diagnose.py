r"""Will the network learn from its first steps? A config's network at its initialisation, on real
images of its dataset, layer by layer.

  python -m alexnet_jax.diagnose --config=configs/fashion_mnist_full.py [--images=16]

reads `--images` training images through the run's own input path (decode, §2's stored form,
§4.1's crop, flip and lighting, the mean subtracted, `data.pixel_scale`), runs the network of
the config at its initialisation (§5's stds and biases) in its compute dtype, with training-time
dropout, and prints per layer:

  rms        the activations' root mean square;
  input      the input-dependent part: the std of each unit across the images, as an RMS over
             the units, divided by `rms` (1: all signal; 0: the layer's output is the same for
             every image, its biases' constant alone);
  grad       the norm of the first step's gradient of the layer's weights and biases.

The last line begins `verdict:`. A stall risk names the first layer whose input-dependent part
is below what the compute dtype resolves (`RESOLVES`: a few units of its rounding error, where
bfloat16 keeps 8 significant bits) or says that the logits barely depend on the input (their
spread across images below `LOGIT_SPREAD` nats); otherwise "no stall risk". A network in that
state sits at loss ln(classes): the softmax's gradient carries no information about the image
(docs/fidelity.md, "The paper's initialisation").
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags
from flax import nnx

from alexnet_jax import cli, model_spec, models
from alexnet_jax.data import pipeline, sources
from alexnet_jax.data import stats as stats_lib
from alexnet_jax.data.normalize import normalize
from alexnet_jax.errors import UserError
from alexnet_jax.sharding import make_mesh
from alexnet_jax.steps import cross_entropy

# The smallest input-dependent fraction a layer's output keeps in each compute dtype: four
# units of rounding error (2^-8 for bfloat16's 8 significant bits, 2^-11 for float16's 11,
# 2^-24 for float32's 24). Below it the image's contribution is at the rounding's level.
RESOLVES = {"bfloat16": 4 * 2.0 ** -8, "float16": 4 * 2.0 ** -11, "float32": 4 * 2.0 ** -24}
# Logits whose spread across images (their std per class, as an RMS over the classes) is below
# this many nats give every image nearly the same softmax.
LOGIT_SPREAD = 1e-3
# In-memory datasets: only this many training images are read, and their mean subtracted.
MEAN_IMAGES = 1024


@dataclasses.dataclass(frozen=True)
class Layer:
  name: str
  rms: float
  input_dependent: float  # std across images ÷ rms
  grad_norm: float | None  # the first step's gradient of the layer's parameters (None: a pool)


@dataclasses.dataclass(frozen=True)
class Diagnosis:
  layers: tuple[Layer, ...]  # in forward order, 'logits' last
  logit_spread: float  # nats
  dtype: str
  images: int
  verdict: str

  @property
  def stall_risk(self) -> bool:
    return self.verdict.startswith("stall risk")

  def table(self) -> str:
    lines = [f"{self.images} images, compute dtype {self.dtype} (it resolves an input-dependent "
             f"part down to {RESOLVES[self.dtype]:.2g})",
             f"{'layer':<8}{'rms':>11}{'input':>11}{'grad':>11}"]
    for r in self.layers:
      grad = f"{r.grad_norm:11.3g}" if r.grad_norm is not None else f"{'':>11}"
      lines.append(f"{r.name:<8}{r.rms:11.3g}{r.input_dependent:11.3g}{grad}")
    lines.append(f"logit spread across images: {self.logit_spread:.3g} nats")
    lines.append(f"verdict: {self.verdict}")
    return "\n".join(lines)


def _spread(activation: np.ndarray) -> float:
  """The std of each unit of [images, ...] activations across the images, as an RMS over the
  units, in float64."""
  a = activation.reshape(activation.shape[0], -1).astype(np.float64)
  return float(np.sqrt(np.mean(a.var(axis=0))))


def _input_dependent(activation: np.ndarray) -> tuple[float, float]:
  """(rms, `_spread` ÷ rms) of [images, ...] activations, in float64."""
  rms = float(np.sqrt(np.mean(np.square(activation, dtype=np.float64))))
  return rms, (_spread(activation) / rms if rms > 0 else 0.0)


def judge(layers: tuple[Layer, ...], logit_spread: float, dtype: str) -> str:
  """The verdict line's text (after 'verdict: ')."""
  floor = RESOLVES[dtype]
  for r in layers:
    if r.name != "logits" and r.input_dependent < floor:
      return (f"stall risk: at {r.name} the input-dependent part of the activations is "
              f"{r.input_dependent:.2g} of their RMS, below what {dtype} resolves ({floor:.2g}); "
              "raise the input scale (data.pixel_scale) or the init std, lower the biases, or "
              "compute in float32")
  if logit_spread < LOGIT_SPREAD:
    return (f"stall risk: the logits barely depend on the input (spread {logit_spread:.2g} nats "
            f"across images, below {LOGIT_SPREAD:g}); raise the input scale (data.pixel_scale) "
            "or the init std, or lower the biases")
  return (f"no stall risk: every layer keeps an input-dependent part above {floor:.2g} and the "
          f"logits spread {logit_spread:.2g} nats across images")


def _batch(config, images: int) -> tuple[dict, np.ndarray]:
  """`images` training images as the run's first step reads them, and the mean it subtracts
  (for an in-memory dataset, that of its first `MEAN_IMAGES`, the only ones read: not a pass
  over them all)."""
  data, m = config.data, config.model
  train = sources.load(data, channels=m.in_channels, num_classes=m.num_classes,
                       first=MEAN_IMAGES).train
  stats = stats_lib.dataset_stats(data, train, m.in_channels)
  batches = pipeline.train_dataset(data, train, stats, crop=m.input_size, channels=m.in_channels,
                                   seed=config.seed, local_batch=images)
  return next(iter(batches)), stats.mean


def diagnose(config, images: int = 16) -> Diagnosis:
  """The network of `config` at its initialisation on `images` of its training images: the
  activations of the test-time forward (dropout's test form: the input alone varies), the
  gradients of the first training step (its dropout masks)."""
  if images < 2:
    raise UserError(f"--images must be >= 2 (a spread across images needs two), got {images}")
  batch, mean = _batch(config, images)
  mesh = make_mesh(data=1, model=1, devices=jax.devices()[:1])
  graphdef, state = nnx.split(models.create_model(config.model, mesh=mesh, seed=config.seed))
  params = nnx.to_pure_dict(state)
  x = normalize(jax.tree.map(jnp.asarray, batch), jnp.asarray(mean),
                float(config.data.pixel_scale), config.data.mean_patch == "centre")
  key = jax.random.fold_in(jax.random.key(config.seed), 0)  # the first step's dropout

  @jax.jit
  def forward_and_grads(params):
    logits, captured = nnx.merge(graphdef, params)(x, capture=True)

    def loss_fn(params):
      logits = nnx.merge(graphdef, params)(x, dropout_key=key)
      return cross_entropy(logits, batch["label"]).mean()

    grads = jax.grad(loss_fn)(params)
    norms = {name: jnp.sqrt(sum(jnp.sum(jnp.square(g.astype(jnp.float32)))
                                for g in layer.values())) for name, layer in grads.items()}
    return logits, captured, norms

  logits, captured, norms = jax.device_get(forward_and_grads(params))
  spec = model_spec.AlexNetSpec.from_config(config.model)
  rows = []
  for name in spec.captured + ("logits",):
    activation = logits if name == "logits" else captured[name]
    rms, part = _input_dependent(np.asarray(activation, np.float32))
    grad = norms.get("fc8" if name == "logits" else name)
    rows.append(Layer(name, rms, part, None if grad is None else float(grad)))
  spread = _spread(np.asarray(logits))
  dtype = str(config.model.dtype)
  layers = tuple(rows)
  return Diagnosis(layers, spread, dtype, images, judge(layers, spread, dtype))


def main(argv):
  del argv
  print(diagnose(flags.FLAGS.config, flags.FLAGS.images).table())


if __name__ == "__main__":
  from ml_collections import config_flags

  config_flags.DEFINE_config_file("config", None, "Training configuration file.",
                                  lock_config=False)
  flags.DEFINE_integer("images", 16, "training images to run the network on (>= 2)")
  cli.run(main, required_flags=("config",))
