"""The default VAE's training step as matrix products alone: the limits its time is read against.

``matmul_products`` are the step's 20 products (forward 7, weight gradients
7, input gradients 6), chained as the step chains them; ``independent_products``
compiles each of them alone in a loop of its own, with nothing else in the
program and no data dependence on the others. ``bench_vae_step.py`` reads the
runner against both; ``profile_step.py`` sets the products' time inside the
step beside the second.
"""

from __future__ import annotations

import functools
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from experiments.configs import vae as vae_config
from vae_jax import data as data_lib
from vae_jax import tasks


def binarized_batches(ds: data_lib.Dataset, batch_size: int, num_batches: int = 8) -> np.ndarray:
  """[num_batches, B, D]: training rows in order (repeated if needed), binarized once."""
  x = ds.train_x[np.arange(batch_size * num_batches) % len(ds.train_x)]
  x = data_lib.binarize_array(x, seed=0)
  return x.reshape(num_batches, batch_size, -1)


def model_kernels(params) -> tuple[list, list, list]:
  """The default MLP VAE's kernels: encoder hidden layers, the (mean, log_scale)
  heads, decoder layers; [in, out] each."""
  enc, dec = params["params"]["encoder"], params["params"]["decoder"]["mlp"]
  hidden = [enc[f"hidden_{i}"]["kernel"] for i in range(sum(n.startswith("hidden_") for n in enc))]
  heads = [enc["mean"]["kernel"], enc["log_scale"]["kernel"]]
  decoder = [dec[f"dense_{i}"]["kernel"] for i in range(len(dec))]
  return hidden, heads, decoder


def matmul_products(x, hidden, heads, decoder) -> list:
  """The matrix products of one training step; returns the weight gradients.

  x: [B, D]. Forward through the encoder, both heads and the decoder; the
  output gradient is logits - x (the Bernoulli one has that form); backward
  through every layer (weight gradients), and input gradients for all but the
  first layer. The log-scale head's gradient is the mean head's times
  log_scale, so XLA cannot merge the two heads' products.
  """
  acts = [x]
  for w in hidden:
    acts.append(acts[-1] @ w)
  h = acts.pop()                                        # [B, H]
  mean, log_scale = h @ heads[0], h @ heads[1]          # [B, L]
  dec_in = [mean + log_scale]
  for w in decoder:
    dec_in.append(dec_in[-1] @ w)
  g = dec_in.pop() - x                                  # [B, D]
  grads = []
  for w, a in zip(reversed(decoder), reversed(dec_in)):
    grads.append(a.T @ g)
    g = g @ w.T
  g_scale = g * log_scale
  grads += [h.T @ g, h.T @ g_scale]
  g = g @ heads[0].T + g_scale @ heads[1].T
  for i in reversed(range(len(hidden))):
    grads.append(acts[i].T @ g)
    if i:
      g = g @ hidden[i].T
  return grads


def flop_per_step(batch_size: int, hidden, heads, decoder) -> int:
  layers = [w.shape for w in hidden + heads + decoder]
  forward = sum(2 * batch_size * i * o for i, o in layers)
  first_in, first_out = hidden[0].shape
  return 3 * forward - 2 * batch_size * first_in * first_out   # + weight and input gradients


class IndependentProducts(NamedTuple):
  """The step's products, each compiled into a loop of its own (``independent_products``)."""
  programs: list          # (compiled, (lhs, rhs, zero)) per product
  shapes: list            # (lhs shape, rhs shape, flop per product)
  steps: int


def independent_products(ds: data_lib.Dataset, batch_size: int, steps: int) -> IndependentProducts:
  """The stricter limit's programs: each of the step's products on its own.

  The products of ``matmul_products`` (read from its jaxpr: the same
  ``dot_general``s, shapes and contracting dimensions) each run ``steps``
  times in a ``fori_loop`` of their own, with nothing else in the program and
  no data dependence on the others. XLA can then give each product its best
  schedule, which the chained program (one product waiting for the last)
  cannot always do, so this limit is faster and the runner's fraction of it
  lower.
  """
  task = tasks.build_task(vae_config.get_config(), ds.image_shape)
  kernels = model_kernels(task.init_params(jax.random.key(0)))
  x = jnp.asarray(binarized_batches(ds, batch_size, 1)[0])
  jaxpr = jax.make_jaxpr(matmul_products)(x, *kernels)
  dots = [e for e in jaxpr.jaxpr.eqns if e.primitive.name == "dot_general"]
  rng = np.random.default_rng(0)
  programs, shapes = [], []
  for e in dots:
    lhs, rhs = (jnp.asarray(rng.normal(size=v.aval.shape).astype(np.float32) * 0.05)
                for v in e.invars)
    dims = e.params["dimension_numbers"]

    scale_lhs = lhs.size <= rhs.size   # the loop's one element-wise op on the smaller operand

    @functools.partial(jax.jit, static_argnums=3)
    def loop(a, b, zero, n, dims=dims, scale_lhs=scale_lhs):
      def body(_, acc):   # one operand times (1 + 0 * acc): the product is not loop-invariant
        s = 1.0 + zero * acc
        out = jax.lax.dot_general(a * s, b, dims) if scale_lhs else jax.lax.dot_general(
            a, b * s, dims)
        return acc + out[(0,) * out.ndim]
      return jax.lax.fori_loop(0, n, body, jnp.zeros((), jnp.float32))

    zero = jnp.zeros((), jnp.float32)
    compiled = loop.lower(lhs, rhs, zero, steps).compile()
    jax.block_until_ready(compiled(lhs, rhs, zero))
    (contract, _), _ = dims
    k = int(np.prod([lhs.shape[d] for d in contract]))
    programs.append((compiled, (lhs, rhs, zero)))
    shapes.append((list(lhs.shape), list(rhs.shape), 2 * k * int(np.prod(e.outvars[0].aval.shape))))
  return IndependentProducts(programs, shapes, steps)


def time_independent(products: IndependentProducts, repeats: int) -> list[float]:
  """Seconds per step of each product: the best of ``repeats`` loops of ``steps``."""
  best = []
  for compiled, args in products.programs:
    times = []
    for _ in range(repeats):
      t0 = time.perf_counter()
      jax.block_until_ready(compiled(*args))
      times.append((time.perf_counter() - t0) / products.steps)
    best.append(min(times))
  return best


def independent_limit(products: IndependentProducts, seconds: list[float]) -> dict:
  """The limit from each product's time per step: their sum."""
  step_s = sum(seconds)
  flop = sum(f for _, _, f in products.shapes)
  return {"steps_per_s": 1.0 / step_s, "ms_per_step": step_s * 1e3, "flop_per_step": flop,
          "gflop_per_s": flop / step_s / 1e9, "products_per_step": len(seconds),
          "products": [{"lhs": lhs, "rhs": rhs, "ms": s * 1e3, "gflop_per_s": f / s / 1e9}
                       for (lhs, rhs, f), s in zip(products.shapes, seconds)]}
