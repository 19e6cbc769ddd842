"""The paper's network in PyTorch, for `python -m alexnet_jax.benchmark step --compare_torch`.

The maths of `models.AlexNet` (§3.5): conv1 with cuda-convnet's bottom/right padding
(224 → 55), grouped convolutions where a column sees only its own maps (conv2, conv4, conv5),
`nn.LocalResponseNorm` with α·n (it divides by n, the paper does not: §3.3), overlapping 3/2
max-pooling (§3.4), dropout on fc6 and fc7 (§4.2), and the paper's SGD (momentum 0.9, weight
decay 5e-4; PyTorch's form, ε outside the momentum, costs the same). Timed the way PyTorch
users run it fastest: channels_last, bf16 autocast, cudnn.benchmark, `torch.compile`. One
difference in the maths: `nn.LocalResponseNorm` runs over both columns' channels at once, so its
window crosses the column boundary where ours does not (the 4 channels beside it differ; the cost
is the same); and `nn.Dropout` is the inverted form (÷(1 − p) in training, nothing at test
time), where the paper's multiplies by 1 − p at test time: the same training-step cost.
PyTorch is a benchmark-only dependency; nothing else imports this module.
"""

from __future__ import annotations

import time


def build(spec):
  """An `nn.Module` with the layers of `spec` (a `model_spec.AlexNetSpec`), two columns as
  groups."""
  import torch
  from torch import nn

  act = nn.ReLU if spec.activation == "relu" else nn.Tanh
  own = spec.columns  # groups of the layers that see only their own column

  def width(layer):
    return spec.columns * spec.widths[layer]

  def lrn():
    if not spec.lrn:
      return nn.Identity()
    alpha = spec.lrn_alpha if spec.lrn_alpha_over_size else spec.lrn_alpha * spec.lrn_size
    return nn.LocalResponseNorm(spec.lrn_size, alpha=alpha, beta=spec.lrn_beta, k=spec.lrn_k)

  def pool():
    return nn.MaxPool2d(spec.pool_window, spec.pool_stride)

  def conv(layer):  # after conv1: grouped where a column sees only its own maps
    k = spec.conv_kernel(layer)
    return [nn.Conv2d(width(spec.before(layer)), width(layer), k, padding=k // 2,
                      groups=1 if layer in spec.meets else own), act()]

  return nn.Sequential(
      nn.ZeroPad2d((0, spec.conv1_padding, 0, spec.conv1_padding)),
      nn.Conv2d(spec.in_channels, width("conv1"), spec.conv_kernels[0],
                stride=spec.conv1_stride), act(),
      lrn(), pool(),
      *(conv("conv2") + [lrn()] if "conv2" in spec.convs else []), pool(),
      *(layer for name in ("conv3", "conv4", "conv5") if name in spec.convs
        for layer in conv(name)),
      pool(), nn.Flatten(),
      nn.Linear(width(spec.convs[-1]) * spec.pool5_size ** 2, width("fc6")), act(),
      nn.Dropout(spec.dropout),
      nn.Linear(width("fc6"), width("fc7")), act(), nn.Dropout(spec.dropout),
      nn.Linear(width("fc7"), spec.num_classes),
  ).to(memory_format=torch.channels_last)


def time_training_step(spec, batch_size: int, steps: int, *, dtype: str = "bfloat16",
                       compile: bool = True, learning_rate: float = 0.01) -> float:
  """Seconds per training step (forward, backward, SGD) on random data already on the GPU."""
  import torch
  from torch import nn

  torch.backends.cudnn.benchmark = True  # autotuned convolution algorithms, as XLA's
  device = torch.device("cuda")
  model = build(spec).to(device)
  optimizer = torch.optim.SGD(model.parameters(), lr=learning_rate, momentum=0.9,
                              weight_decay=5e-4, fused=True)
  forward = torch.compile(model) if compile else model
  loss_fn = nn.CrossEntropyLoss()
  images = torch.randn(batch_size, spec.in_channels, spec.input_size, spec.input_size,
                       device=device).to(memory_format=torch.channels_last)
  labels = torch.randint(0, spec.num_classes, (batch_size,), device=device)
  autocast = dtype == "bfloat16"

  def step():
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
      loss = loss_fn(forward(images), labels)
    loss.backward()
    optimizer.step()
    return loss

  for _ in range(10):  # compilation and autotuning, then warm-up
    step()
  torch.cuda.synchronize()
  start = time.perf_counter()
  for _ in range(steps):
    step()
  torch.cuda.synchronize()
  return (time.perf_counter() - start) / steps
