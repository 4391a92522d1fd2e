r"""Train-step throughput of the default MLP VAE: vae_jax (jit) vs PyTorch eager.

Both sides train the same model (784-200-200-50 encoder, mirrored decoder,
Bernoulli likelihood, one reparametrized sample, analytic KL) with Adam at the
same learning rate on the same binarized MNIST-sized batches, in one process,
on the same CPU. vae_jax runs the library's own jitted ``train_step`` (the one
``python -m experiments.main`` uses); the reference is a plain PyTorch eager
implementation, timed only if torch is installed (``pip install torch``).

  python scripts/bench_vae_step.py                      # batch 100 and 1000
  python scripts/bench_vae_step.py --batch_sizes=100 --steps=200

Prints one JSON object: per batch size, steps/s, examples/s and compile
seconds for each implementation, and the speed-up.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import sys
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from experiments.configs import vae as vae_config
from vae_jax import tasks
from vae_jax import optim
from vae_jax import trainer

_BATCH_SIZES = flags.DEFINE_list("batch_sizes", ["100", "1000"], "Batch sizes to time.")
_STEPS = flags.DEFINE_integer("steps", 300, "Timed steps per measurement (after warm-up).")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Measurements per setting; the median is reported.")
_TORCH = flags.DEFINE_bool("torch", True, "Time the PyTorch eager reference if torch imports.")

CONFIG = vae_config.get_config()   # the default VAE: 784-200-200-50, Bernoulli, Adam 1e-3


def _data(batch_size: int, num_batches: int = 8) -> np.ndarray:
  """Binarized MNIST-sized batches (real digits from the embedded mnist_5k)."""
  from vae_jax import data  # pylint: disable=g-import-not-at-top
  x = data.load_arrays("mnist_5k", binarize="static").train_x
  reps = int(np.ceil(batch_size * num_batches / len(x)))
  x = np.concatenate([x] * reps)[:batch_size * num_batches]
  return x.reshape(num_batches, batch_size, 784)


def bench_jax(batch_size: int, steps: int, repeats: int) -> dict:
  task = tasks.vae_task(CONFIG, (28, 28, 1))
  tx = optim.make_optimizer(CONFIG.train)
  state = trainer.create_train_state(jax.random.key(0), jax.random.key(1), task, tx)
  step = jax.jit(functools.partial(trainer.train_step, task=task, tx=tx), donate_argnums=0)
  batches = [jnp.asarray(b) for b in _data(batch_size)]
  t0 = time.perf_counter()
  state, m = step(state, batches[0])
  jax.block_until_ready(state)
  compile_s = time.perf_counter() - t0
  rates = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    for i in range(steps):
      state, m = step(state, batches[i % len(batches)])
    jax.block_until_ready(state)
    rates.append(steps / (time.perf_counter() - t0))
  rate = float(np.median(rates))
  return {"steps_per_s": rate, "examples_per_s": rate * batch_size,
          "compile_s": compile_s, "final_loss": float(m["loss"])}


def bench_torch(batch_size: int, steps: int, repeats: int) -> dict | None:
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  from torch import nn  # pylint: disable=g-import-not-at-top
  torch.manual_seed(0)

  class TorchVAE(nn.Module):

    def __init__(self):
      super().__init__()
      self.enc = nn.Sequential(nn.Linear(784, 200), nn.ReLU(), nn.Linear(200, 200), nn.ReLU())
      self.mean = nn.Linear(200, 50)
      self.log_scale = nn.Linear(200, 50)
      self.dec = nn.Sequential(nn.Linear(50, 200), nn.ReLU(), nn.Linear(200, 200), nn.ReLU(),
                               nn.Linear(200, 784))

    def forward(self, x):
      h = self.enc(x)
      mean, log_scale = self.mean(h), self.log_scale(h)
      z = mean + torch.exp(log_scale) * torch.randn_like(mean)
      logits = self.dec(z)
      recon = -nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)
      kl = 0.5 * (mean**2 + torch.exp(2 * log_scale) - 1).sum(-1) - log_scale.sum(-1)
      return -(recon - kl).mean()

  model = TorchVAE()
  opt = torch.optim.Adam(model.parameters(), lr=CONFIG.train.learning_rate)
  batches = [torch.from_numpy(b) for b in _data(batch_size)]

  def step(x):
    opt.zero_grad(set_to_none=True)
    loss = model(x)
    loss.backward()
    opt.step()
    return loss

  for i in range(10):  # warm-up
    step(batches[i % len(batches)])
  rates = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    for i in range(steps):
      loss = step(batches[i % len(batches)])
    rates.append(steps / (time.perf_counter() - t0))
  rate = float(np.median(rates))
  return {"steps_per_s": rate, "examples_per_s": rate * batch_size,
          "final_loss": float(loss), "torch_version": torch.__version__,
          "torch_threads": torch.get_num_threads()}


def main(argv):
  del argv
  results = {"benchmark": "vae_train_step", "model": "mlp 784-200-200-50, bernoulli, adam",
             "device": jax.devices()[0].platform, "jax_version": jax.__version__,
             "cpu_count": os.cpu_count(), "machine": platform.machine(),
             "python": sys.version.split()[0], "steps": _STEPS.value, "results": {}}
  for b in (int(v) for v in _BATCH_SIZES.value):
    row = {"vae_jax": bench_jax(b, _STEPS.value, _REPEATS.value)}
    ref = bench_torch(b, _STEPS.value, _REPEATS.value) if _TORCH.value else None
    if ref is not None:
      row["torch_eager"] = ref
      row["speedup_vs_torch_eager"] = row["vae_jax"]["steps_per_s"] / ref["steps_per_s"]
    results["results"][str(b)] = row
  print(json.dumps(results, indent=2))


if __name__ == "__main__":
  app.run(main)
