"""The importance-weighted bound at the literature's K, streamed in chunks.

Burda et al. (2015) report log p(x) on MNIST as the IWAE bound with K = 5000,

  log p(x) ~ log (1/K) sum_k w_k,   w_k = p(x|z_k) p(z_k) / q(z_k|x),   z_k ~ q(z|x).

``objectives.iwae_bound`` materializes all K decoder outputs ``[K, B, D]``
(15.7 MB per image at K = 5000 on MNIST). Here the K samples are drawn and
reduced ``chunk_size`` at a time inside one jitted ``lax.scan``, carrying a
running ``logsumexp`` of the log-weights per example, so memory is
O(chunk_size * B * D) whatever K is. The encoder runs once per batch; each
chunk decodes its ``[chunk_size * B, L]`` latents as one batch of matrix
products.

The bound takes q and p as objects (``vae_jax.families``):
``iwae_terms_given_q`` draws chunk i as ``q.sample_and_log_prob(fold_in(key,
i), (C_i,))`` and scores the draws with ``prior.log_prob``, for any proposal
q. The model's own posterior is one caller (``iwae_terms_streamed``, q =
``encode(x)``); the per-example optimum q* of ``amortization`` is another.
This is the one IWAE bound: training (``objectives.iwae_bound``, the
IWAE-objective estimators' ``log_mean_exp`` of ``log_weights``), evaluation
and the amortization gaps compute it with the same functions, and
``over_chunks`` is the one chunk loop (``amortization.elbo_estimate`` streams
the ELBO with it).

Draws (so that a reference can reproduce them): with C = min(chunk_size, K),
chunk i = 0, 1, ..., ceil(K / C) - 1 holds samples k = i*C ... min((i+1)*C, K) - 1;
for the Gaussian q,

  eps_i = jax.random.normal(jax.random.fold_in(key, i), (C_i, B, L), mean.dtype),
  z_i   = mean + exp(log_scale) * eps_i,         C_i = min(C, K - i*C),

so every chunk has C rows except a shorter last one when C does not divide K;
that one is computed at its own size (no padding, no wasted samples). The
numbers depend on (key, K, C, B): another chunk or batch size redraws the
samples, not the distribution of the estimate.

``evaluate_iwae`` runs this over a whole split in padded batches (batch j uses
``fold_in(key, j)``, as ``evaluation.evaluate`` does) and returns one log p(x)
estimate per example.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vae_jax import data as data_lib
from vae_jax.errors import check_data_matrix, check_positive
from vae_jax.inference.likelihoods import log_likelihood

Array = jax.Array

# Latent rows decoded per chunk: chunk_size = DECODE_ROWS // B when not given.
# Default MLP (784-200-200-50, Bernoulli), K = 5000, 2-core CPU, ms per image
# (batch x chunk): 1,000-2,000 rows ran fastest (20x50, 50x20, 10x100,
# 20x100, 10x200: 11.7-12.1); fewer rows or more loop steps cost more (10x50:
# 13.6, 100x10: 13.2); so did bigger chunks, whose [rows, 784] logits leave
# the cache (20x200: 12.6, 10x500: 14.1, all 5,000 samples of one image at
# once as ``objectives.iwae_bound`` does: 29.6).
DECODE_ROWS = 2000
# Examples per jitted call of ``evaluate_iwae``.
DEFAULT_BATCH_SIZE = 20


def check_sizes(num_samples: int, chunk_size: int | None = None) -> None:
  """Raises UserError unless K = num_samples (and chunk_size, if given) are integers >= 1."""
  check_positive(num_samples, "num_samples", integer=True,
                 meaning="K, the number of draws z ~ q(z|x) per example; K = 1 is the ELBO")
  if chunk_size is not None:
    check_positive(chunk_size, "chunk_size", integer=True,
                   meaning="how many of the K draws are decoded at a time; None picks one")


def default_chunk_size(batch_size: int) -> int:
  """Samples per chunk so that a chunk decodes about ``DECODE_ROWS`` latents."""
  return max(1, DECODE_ROWS // int(batch_size))


def chunk_sizes(num_samples: int, chunk_size: int) -> list[int]:
  """Sizes C_i of the chunks that hold the K samples: [C, ..., C, remainder]."""
  check_sizes(num_samples, chunk_size)
  c = min(chunk_size, num_samples)
  full, rest = divmod(num_samples, c)
  return [c] * full + ([rest] if rest else [])


def log_mean_exp(log_w: Array, axis: int = 0) -> Array:
  """log (1/K) sum_k exp(log_w_k) over ``axis`` (K = its length): the IWAE bound."""
  return jax.nn.logsumexp(log_w, axis=axis) - math.log(log_w.shape[axis])


def log_weights(params: Any, x: Array, z: Array, log_q: Array, prior, *,
                model: nn.Module) -> Array:
  """log w = log p(x|z) + log p(z) - log q(z|x) for draws z from q.

  Args:
    params: the VAE's parameters.
    x: [B, D] data.
    z: [C, B, L] draws from q(z|x); log_q: [C, B] their log q(z|x).
    prior: p(z), a distribution object.
    model: the VAE module (static).

  Returns:
    [C, B] log-weights in nats.
  """
  c, b, l = z.shape
  dec_out = model.apply(params, z.reshape(c * b, l), method="decode")  # [C*B, D]
  dec_out = jax.tree_util.tree_map(lambda a: a.reshape((c, b) + a.shape[1:]), dec_out)
  return log_likelihood(x, dec_out) + prior.log_prob(z) - log_q           # [C, B]


def over_chunks(fn: Callable[[Array, int], Any], combine: Callable[[Any, Any], Any],
                identity: Any, key: Array, num_samples: int, chunk_size: int) -> Any:
  """Folds ``fn`` over the chunks that hold exactly K = num_samples samples.

  Chunk i (sizes ``chunk_sizes(K, chunk_size)``) gives ``fn(fold_in(key, i),
  C_i)``, a summary of its C_i draws (an array or a tuple of them: a sum, a
  logsumexp); ``combine(a, b)`` merges two summaries (``jnp.add``,
  ``jnp.logaddexp``), starting from ``identity`` (a scalar per array of the
  summary: 0 for a sum, -inf for a logsumexp). The chunks of size C run in
  one ``lax.scan`` (no loop for a single chunk), a shorter last one after it
  at its own size. Memory is O(C x B x D) whatever K is.
  """
  sizes = chunk_sizes(num_samples, chunk_size)

  def step(carry, i, size):
    return combine(carry, fn(jax.random.fold_in(key, i), size))

  shapes = jax.eval_shape(lambda k: fn(k, sizes[0]), key)               # the summary's [B], dtype
  carry = jax.tree_util.tree_map(lambda s, e: jnp.full(s.shape, e, s.dtype), shapes, identity)
  num_full = num_samples // sizes[0]                                    # chunks of size C
  if num_full == 1 and len(sizes) == 1:                                 # one chunk: no loop
    carry = step(carry, 0, sizes[0])
  else:
    carry, _ = jax.lax.scan(lambda c, i: (step(c, i, sizes[0]), None), carry,
                            jnp.arange(num_full))
  if num_full < len(sizes):                                            # the shorter last chunk
    carry = step(carry, num_full, sizes[-1])
  return carry


def iwae_terms_given_q(params: Any, x: Array, key: Array, q, prior, *, model: nn.Module,
                       num_samples: int, chunk_size: int | None = None) -> dict[str, Array]:
  """The K-sample IWAE bound and Monte-Carlo ELBO of a proposal q, streamed.

  Args:
    params: the VAE's parameters (its decoder is used).
    x: [B, D] data batch.
    key: PRNG key; chunk i draws from ``fold_in(key, i)`` (module docstring).
    q: the proposal, a distribution object with batch [B] (the encoder's
      q(z|x), or any other).
    prior: p(z), a distribution object.
    model: the VAE module (static).
    num_samples: K >= 1 (static).
    chunk_size: samples per chunk, >= 1 (static); memory is
      O(chunk_size * B * D). None: ``default_chunk_size(B)``.

  Returns:
    ``{"iwae": [B], "elbo": [B]}`` in nats: log (1/K) sum_k w_k, the estimate
    of log p(x), and (1/K) sum_k log w_k, the ELBO estimated with the same K
    draws (free: the log-weights are already there). elbo <= iwae always.
  """
  check_sizes(num_samples, chunk_size)
  if chunk_size is None:
    chunk_size = default_chunk_size(x.shape[0])

  def chunk(k, size):
    z, log_q = q.sample_and_log_prob(k, (size,))
    log_w = log_weights(params, x, z, log_q, prior, model=model)       # [C, B]
    return jax.nn.logsumexp(log_w, axis=0), jnp.sum(log_w, axis=0)     # [B], [B]

  def combine(a, b):                                                   # running logsumexp, sum
    return jnp.logaddexp(a[0], b[0]), a[1] + b[1]

  lse, total = over_chunks(chunk, combine, (-jnp.inf, 0.0), key, num_samples, chunk_size)
  return {"iwae": lse - math.log(num_samples), "elbo": total / num_samples}


def iwae_terms_streamed(params: Any, x: Array, key: Array, *, model: nn.Module,
                        num_samples: int, chunk_size: int | None = None) -> dict[str, Array]:
  """``iwae_terms_given_q`` with the model's own q(z|x) and prior p(z).

  Args:
    params: the VAE's parameters (``{"params": {"encoder", "decoder"[, "prior"]}}``).
    x: [B, D] data batch.
    key: PRNG key; chunk i draws from ``fold_in(key, i)`` (module docstring).
    model: the ``vae_jax.models.VAE`` module, any posterior and prior (static).
    num_samples: K >= 1 (static).
    chunk_size: samples per chunk, >= 1 (static). None: ``default_chunk_size(B)``.

  Returns:
    ``{"iwae": [B], "elbo": [B]}`` in nats, as ``iwae_terms_given_q``.
  """
  check_sizes(num_samples, chunk_size)
  q = model.apply(params, x, method="encode")                          # q(z|x), batch [B]
  prior = model.apply(params, method="prior_distribution")
  return iwae_terms_given_q(params, x, key, q, prior, model=model, num_samples=num_samples,
                            chunk_size=chunk_size)


def iwae_bound_streamed(params: Any, x: Array, key: Array, *, model: nn.Module,
                        num_samples: int, chunk_size: int | None = None) -> Array:
  """log (1/K) sum_k p(x, z_k) / q(z_k|x) with the K draws streamed in chunks.

  The same number as all K samples at once on the same draws, in
  O(chunk_size * B * D) memory. Arguments as ``iwae_terms_streamed``.

  Returns:
    [B] log p(x) estimates (lower bounds in expectation) in nats.
  """
  return iwae_terms_streamed(params, x, key, model=model, num_samples=num_samples,
                             chunk_size=chunk_size)["iwae"]


# One compiled program per (model, K, chunk, batch shape).
_iwae_batch = jax.jit(iwae_bound_streamed, static_argnames=("model", "num_samples", "chunk_size"))


def evaluate_iwae(params: Any, x_all, key: Array, *, model: nn.Module, num_samples: int,
                  chunk_size: int | None = None,
                  batch_size: int = DEFAULT_BATCH_SIZE,
                  progress: Callable[[int], None] | None = None,
                  batch_fn: Callable | None = None) -> np.ndarray:
  """Per-example IWAE-K estimates of log p(x) over a whole split.

  Args:
    params: the VAE's parameters.
    x_all: [N, D] float data (NumPy or JAX).
    key: evaluation key; batch j (rows j*B ... j*B + B - 1) uses
      ``fold_in(key, j)`` as the key of ``iwae_bound_streamed``.
    model: the VAE module.
    num_samples: K >= 1.
    chunk_size: samples per chunk; None: ``default_chunk_size(B)``.
    batch_size: examples per jitted call; B = min(batch_size, N). The last
      batch is zero-padded (its padded rows are computed and dropped).
    progress: called with the number of examples done (``min(j*B + B, N)``)
      as each batch j finishes, for a progress line; it waits for each batch
      (one stays queued behind it). It changes no number. None: no waits.
    batch_fn: a jitted ``(params, xb, key, *, model, num_samples, chunk_size) -> [B]``
      in place of the encoder's streamed bound (e.g. ``refinement.batch_fn``:
      the refined q as the proposal). None: ``iwae_bound_streamed``.

  Returns:
    [N] float64 NumPy array of log p(x) estimates in nats.
  """
  check_sizes(num_samples, chunk_size)
  check_positive(batch_size, "batch_size", integer=True, meaning="examples per jitted call")
  x_all = check_data_matrix(np.asarray(x_all), "x_all")
  n = len(x_all)
  batch = min(int(batch_size), n)
  chunk = default_chunk_size(batch) if chunk_size is None else int(chunk_size)
  fn = functools.partial(batch_fn or _iwae_batch, model=model, num_samples=int(num_samples),
                         chunk_size=chunk)
  out = []
  for j, (xb, _) in enumerate(data_lib.eval_batches(x_all, batch)):
    out.append(fn(params, xb, jax.random.fold_in(key, j)))
    if progress is not None and j > 0:     # batch j is queued: wait for batch j - 1
      jax.block_until_ready(out[-2])
      progress(min(j * batch, n))
  if progress is not None:
    jax.block_until_ready(out[-1])
    progress(n)
  return np.concatenate(jax.device_get(out)).astype(np.float64)[:n]
