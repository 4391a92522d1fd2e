r"""Does distrax cost more than 5% of the default training step or of IWAE-5000?

The decision this measures (from the project's issue): use distrax for the
distributions and bijectors unless it costs more than 5% of the default
training step or of IWAE-5000 evaluation; then keep our own implementation
behind the same interface. The families at stake are q(z|x) and p(z); the
Bernoulli likelihood is timed with distrax too, for context.

The model is the default VAE, written here self-contained (plain jnp layers,
nothing imported from the library but the data loader, so that the comparison
sees only the distribution code): MLP encoder 784-200-200 with two Dense(50)
heads (mean, log-scale), decoder 50-200-200-784 Bernoulli logits, ReLU,
random initialization (the timing does not depend on the weights). Data: the
embedded ``mnist_5k`` set, statically binarized (``vae_jax.data.load_arrays``).

Variants, each computing the same numbers from the same keys:

* ``jnp``: plain formulas. z = mean + exp(log_scale) * eps with
  eps = jax.random.normal(key, [S, B, L]); log q(z|x) from eps; KL per
  dimension 0.5 (mean^2 + exp(2 log_scale) - 1) - log_scale; Bernoulli
  x * l - softplus(l), softplus(l) = max(l, 0) + log1p(exp(-|l|)).
* ``distrax_mvn``: q = distrax.MultivariateNormalDiag(mean, exp(log_scale)),
  ``q.sample_and_log_prob(seed=key, sample_shape=(S,))``, the KL by
  ``q.kl_divergence(MultivariateNormalDiag(0, 1))``, the likelihood by
  ``distrax.Independent(distrax.Bernoulli(logits=l), 1).log_prob(x)``.
* ``distrax_independent``: the same with q and p(z) as
  ``distrax.Independent(distrax.Normal(mean, scale), 1)``.
* ``distrax_q_and_prior_only``: distrax's MultivariateNormalDiag for q and
  p(z), the jnp Bernoulli: the choice actually at stake.

distrax's Normal draws its noise as ``jax.random.normal(key, (S,) +
batch_shape)``, which is what the jnp variant draws, so every variant sees the
same eps (checked: ``agreement.noise_max_abs_diff``), and the script asserts
that the losses and bounds agree to ``RTOL`` relative before timing anything.

What is timed is what a user runs:

* ``train_step_ms``: ``--steps_per_jit`` (50, the trainer's default) Adam
  steps (lr 1e-3, batch 100, one reparametrized sample, analytic KL) fused in
  one jitted ``lax.fori_loop``, the state donated, each step's batch gathered
  on device from the [4500, 784] training array with ``jnp.take`` through a
  permutation, ``block_until_ready``; ms per step.
* ``iwae5000_ms_per_image``: the streamed IWAE bound with K = 5000: the
  encoder once per batch of 20 images, then a ``lax.scan`` over chunks of 100
  samples (2,000 decoded rows per chunk) keeping a running logsumexp of
  log w = log p(x|z) + log p(z) - log q(z|x); ms per image over
  ``--iwae_images`` held-out images, after a warm-up compile. Variants: jnp,
  distrax (MultivariateNormalDiag or Independent(Normal)) for q and p(z)
  only, and distrax for everything. (distrax's Bernoulli log-probability is
  two ``jax.nn.softplus`` per pixel, which XLA:CPU does not fuse with the sum
  the way it fuses the jnp form: it is the expensive part, not q or p(z).)
* ``matmul_only_ms`` (context): the same fused loops with the distributions
  removed (z = mean + log_scale, a squared-error loss on the logits): the
  share of the time that no distribution code can touch.
* ``mixture`` (``--only=mixture`` runs this section alone): the learned
  mixture prior's log-density, log p(z) = logsumexp_k [log pi_k +
  log N(z | mu_k, sigma_k^2)], ours
  (``vae_jax.families.mixture.DiagNormalMixture(logits, loc,
  log_scale).log_prob``: the squared distances as two [N, L] x [L, K]
  products) against ``distrax.MixtureSameFamily(distrax.Categorical(logits),
  distrax.MultivariateNormalDiag(loc, exp(log_scale))).log_prob`` (an explicit
  [N, K, L] broadcast), L = 50, K = 500 (the VampPrior's pseudo-inputs) and
  K = 10 (the mog default), on two workloads: ``train_n100_grad``, z [100, 50]
  (a training batch, one sample) with jax.grad of the sum w.r.t. logits, loc,
  log_scale and z, ``--steps_per_jit`` evaluations fused in one jitted
  ``lax.scan`` over different parameters and z (as the fused training loop
  sees them: new parameters every step); ``iwae_chunk_n2000``, z [2000, 50]
  (one IWAE chunk: 100 samples x 20 images), forward only,
  ``--mixture_iwae_chunks`` evaluations in one ``lax.scan`` over different z
  with the same parameters (as the IWAE scan sees them). Random inputs:
  logits ~ N(0, 1), loc ~ N(0, 1), log_scale ~ U(-2, 0.5), z ~ N(0, 1.5^2).
  Reported: ms per evaluation, the paired ratio distrax / ours, XLA's cost
  analysis of one (unfused) evaluation, the float32 max abs differences of
  log p(z) between the two and of each against a float64 NumPy reference
  (``scipy.special.logsumexp`` over the explicit [N, K, L] distances, from the
  same float32 inputs), the gradients' differences, and the figures in
  perspective: per training step (one n100 evaluation with its gradient) as
  a share of the step's time, and per IWAE image (``--num_samples`` / 2000
  chunk evaluations) as a share of the IWAE time per image. Those reference
  times are the jnp variant's medians measured in the same run, or
  ``--ref_train_step_ms`` / ``--ref_iwae_ms_per_image`` with ``--only=mixture``.

The machine (2 cores shared with other work) is noisy, so the variants are
interleaved: each round times every variant once, in an order rotated from
round to round; the median and the min over rounds are reported. The decision
figure is the paired ratio: the median over rounds of (variant / jnp within
the same round), which cancels load that drifts between rounds; the ratios of
the medians and of the mins are reported beside it. Since wall time on a
shared machine can hide a 5% difference, XLA's own cost analysis of each
compiled program (flops, transcendentals, bytes accessed; deterministic) is
reported too, as ``xla_cost_ratio_vs_jnp``.

  python scripts/bench_distrax.py            # about 4 minutes on 2 busy cores
  python scripts/bench_distrax.py --quick    # smoke test, about 30 s (compiling)
  python scripts/bench_distrax.py --only=mixture   # the mixture prior alone, ~1-2 min

Prints one JSON object.
"""

from __future__ import annotations

import functools
import json
import math
import os
import time

from absl import app
from absl import flags
import distrax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from vae_jax import data as data_lib
from vae_jax.families import mixture as mixture_lib
import machine  # scripts/machine.py: this folder is on sys.path
import paired  # scripts/paired.py

_TRAIN_ROUNDS = flags.DEFINE_integer("train_rounds", 16, "Rounds of the train-step timing; "
                                     "each round times every variant once.")
_CALLS = flags.DEFINE_integer("calls_per_measurement", 3, "Fused calls (of --steps_per_jit "
                              "steps each) per train-step measurement.")
_STEPS_PER_JIT = flags.DEFINE_integer("steps_per_jit", 50, "Steps fused in one dispatch.")
_IWAE_ROUNDS = flags.DEFINE_integer("iwae_rounds", 6, "Rounds of the IWAE timing.")
_IWAE_IMAGES = flags.DEFINE_integer("iwae_images", 60, "Held-out images per IWAE measurement "
                                    "(a multiple of --iwae_batch).")
_NUM_SAMPLES = flags.DEFINE_integer("num_samples", 5000, "K, importance samples per image.")
_MATMUL = flags.DEFINE_bool("matmul_only", True, "Also time the matrix products alone.")
_QUICK = flags.DEFINE_bool("quick", False, "Smoke test: only jnp and distrax_q_and_prior_only, "
                           "1 round, 1 call, K = 200, 20 images, no matmul_only.")
_SEED = flags.DEFINE_integer("seed", 0, "Root seed.")
_ONLY = flags.DEFINE_enum("only", None, ["train_iwae", "mixture"],
                          "Run one section only: the VAE's train step and IWAE bound "
                          "(train_iwae), or the mixture prior's log-density (mixture). "
                          "Default: all.")
_MIXTURE_ROUNDS = flags.DEFINE_integer("mixture_rounds", 10, "Rounds of the mixture timing.")
_MIXTURE_IWAE_CHUNKS = flags.DEFINE_integer(
    "mixture_iwae_chunks", 10, "Chunk evaluations (z [2000, 50]) fused per mixture "
    "measurement (the n100 gradient case fuses --steps_per_jit).")
_REF_TRAIN_MS = flags.DEFINE_float(
    "ref_train_step_ms", 6.0, "Reference train-step time (ms) for the mixture section's "
    "perspective when the train step is not measured in the same run (--only=mixture).")
_REF_IWAE_MS = flags.DEFINE_float(
    "ref_iwae_ms_per_image", 54.0, "Reference IWAE-5000 ms per image for the mixture "
    "section's perspective when IWAE is not measured in the same run.")

BATCH_SIZE = 100            # the default config's train.batch_size
LEARNING_RATE = 1e-3        # the default config's Adam learning rate
IWAE_BATCH = 20             # images per IWAE call
IWAE_CHUNK = 100            # samples per scan step: 2,000 decoded rows
ENCODER, LATENT, DECODER = (200, 200), 50, (200, 200)
DECISION_THRESHOLD = 1.05   # the rule: distrax unless it costs > 5%
RTOL = 1e-4                 # jnp and distrax must agree this closely on the same keys
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
MIXTURE_COMPONENTS = (500, 10)   # the VampPrior's pseudo-inputs; the mog default
MIXTURE_CASES = {                # name -> (rows of z, differentiated)
    "train_n100_grad": (BATCH_SIZE, True),
    "iwae_chunk_n2000": (IWAE_BATCH * IWAE_CHUNK, False),
}

NOTES = {
    "ratios": "paired_median: the median over rounds of (variant seconds / jnp seconds in "
              "the same round), robust to load that drifts between rounds; the decision "
              "figure. paired_quartiles: its spread. median, min: ratios of the medians and "
              "of the mins over rounds.",
    "within_threshold": "paired_median <= decision_threshold.",
    "xla_cost": "XLA's cost analysis of the compiled program (deterministic): flops, "
                "transcendentals, bytes accessed, of one loop body (one train step; one "
                "IWAE chunk plus the encoder), as XLA counts a while loop.",
    "matmul_only_ms": "The same fused loops with no distribution code (z = mean + "
                      "log_scale, squared error / a sum of the logits): what no family "
                      "choice can change.",
    "agreement": "jnp and distrax from the same keys: z and log q on one draw, every "
                 "step's loss of one fused call from the same start, the IWAE bounds of "
                 "the first batch (relative differences; checked against rtol).",
    "mixture": "ms: per evaluation of log p(z) (train_n100_grad: with jax.grad of the sum "
               "w.r.t. logits, loc, log_scale, z), evaluations fused in one jitted lax.scan. "
               "ratio_distrax_vs_ours: as ratios (base ours). xla_cost: one unfused "
               "evaluation. agreement: float32 max abs differences on the first inputs; "
               "f64 is a NumPy float64 reference with scipy logsumexp over explicit "
               "[N, K, L] distances, from the same float32 inputs; grads: max abs "
               "difference over max abs gradient. perspective: extra_ms is the paired "
               "median of (distrax - ours) per evaluation, scaled to one train step (1 "
               "evaluation) or one IWAE image (num_samples / 2000 evaluations); "
               "*_pct_of_reference divide by the reference time (the standard-normal-prior "
               "VAE's jnp step or IWAE time per image, which includes no mixture), "
               "extra_pct_of_reference_plus_ours by the reference plus our mixture's time (a "
               "lower bound on the mixture-prior VAE's time; the VampPrior's encoder pass "
               "over its pseudo-inputs is not included, so these shares are upper bounds).",
}

# name -> (family of q and p(z), Bernoulli likelihood)
TRAIN_VARIANTS = {
    "jnp": ("jnp", "jnp"),
    "distrax_mvn": ("mvn", "distrax"),
    "distrax_independent": ("independent", "distrax"),
    "distrax_q_and_prior_only": ("mvn", "jnp"),
}
IWAE_VARIANTS = {
    "jnp": ("jnp", "jnp"),
    "distrax_q_and_prior_only": ("mvn", "jnp"),
    "distrax_independent_q_and_prior_only": ("independent", "jnp"),
    "distrax_mvn_all": ("mvn", "distrax"),
}


# ----------------------------------------------------------------------------
# The model: plain layers, so that only the distribution code differs.
# ----------------------------------------------------------------------------


def _dense_init(key, n_in: int, n_out: int) -> dict:
  kernel = jax.nn.initializers.lecun_normal()(key, (n_in, n_out), jnp.float32)
  return {"kernel": kernel, "bias": jnp.zeros((n_out,), jnp.float32)}


def init_params(key, num_dims: int) -> dict:
  """Encoder [D]-200-200 with mean and log-scale heads; decoder 50-200-200-[D]."""
  keys = iter(jax.random.split(key, 16))
  widths = (num_dims,) + ENCODER
  encoder = [_dense_init(next(keys), i, o) for i, o in zip(widths[:-1], widths[1:])]
  widths = (LATENT,) + DECODER + (num_dims,)
  decoder = [_dense_init(next(keys), i, o) for i, o in zip(widths[:-1], widths[1:])]
  return {"encoder": encoder, "decoder": decoder,
          "mean": _dense_init(next(keys), ENCODER[-1], LATENT),
          "log_scale": _dense_init(next(keys), ENCODER[-1], LATENT)}


def _dense(p, h):
  return h @ p["kernel"] + p["bias"]


def encode(params, x):
  """x: [B, D] -> mean, log_scale: [B, L]."""
  h = x
  for p in params["encoder"]:
    h = jax.nn.relu(_dense(p, h))
  return _dense(params["mean"], h), _dense(params["log_scale"], h)


def decode(params, z):
  """z: [..., L] -> Bernoulli logits [..., D]."""
  h = z
  for p in params["decoder"][:-1]:
    h = jax.nn.relu(_dense(p, h))
  return _dense(params["decoder"][-1], h)


# ----------------------------------------------------------------------------
# The distribution code under comparison.
# ----------------------------------------------------------------------------


def softplus(x):
  """log(1 + exp(x)), stable."""
  return jnp.maximum(x, 0.0) + jnp.log1p(jnp.exp(-jnp.abs(x)))


def bernoulli_log_lik(x, logits, kind: str):
  """x: [B, D], logits: [..., B, D] -> [..., B]."""
  if kind == "jnp":
    return jnp.sum(x * logits - softplus(logits), -1)
  return distrax.Independent(distrax.Bernoulli(logits=logits), 1).log_prob(x)


def _distrax_normal(family: str, mean, scale):
  if family == "mvn":
    return distrax.MultivariateNormalDiag(mean, scale)
  return distrax.Independent(distrax.Normal(mean, scale), 1)


def posterior_sample(key, mean, log_scale, num_samples: int, family: str):
  """z ~ q(z|x) and log q(z|x): [S, B, L] and [S, B]; q and p(z) as ``family``.

  Also returns the prior (None for jnp), for the caller's KL or log p(z).
  """
  if family == "jnp":
    eps = jax.random.normal(key, (num_samples,) + mean.shape, mean.dtype)
    z = mean + jnp.exp(log_scale) * eps
    log_q = jnp.sum(-0.5 * jnp.square(eps) - HALF_LOG_2PI - log_scale, -1)
    return z, log_q, None
  q = _distrax_normal(family, mean, jnp.exp(log_scale))
  z, log_q = q.sample_and_log_prob(seed=key, sample_shape=(num_samples,))
  return z, log_q, q


def kl_to_std_normal(mean, log_scale, q, family: str):
  """KL(q(z|x) || N(0, I)): [B]."""
  if family == "jnp":
    return jnp.sum(0.5 * (jnp.square(mean) + jnp.exp(2.0 * log_scale) - 1.0) - log_scale, -1)
  prior = _distrax_normal(family, jnp.zeros_like(mean), jnp.ones_like(mean))
  return q.kl_divergence(prior)


def std_normal_log_prob(z, family: str):
  """log N(z; 0, I): [..., L] -> [...]."""
  if family == "jnp":
    return jnp.sum(-0.5 * jnp.square(z) - HALF_LOG_2PI, -1)
  zeros = jnp.zeros(z.shape[-1:], z.dtype)
  return _distrax_normal(family, zeros, jnp.ones_like(zeros)).log_prob(z)


# ----------------------------------------------------------------------------
# What a user runs: the fused training loop and the streamed IWAE bound.
# ----------------------------------------------------------------------------


def neg_elbo(params, x, key, *, family: str, likelihood: str):
  """Mean over the batch of KL - log p(x|z), one reparametrized sample; x: [B, D]."""
  mean, log_scale = encode(params, x)
  z, _, q = posterior_sample(key, mean, log_scale, 1, family)   # log q unused: analytic KL
  log_lik = bernoulli_log_lik(x, decode(params, z), likelihood)[0]
  kl = kl_to_std_normal(mean, log_scale, q, family)
  return jnp.mean(kl - log_lik)


def matmul_only_loss(params, x, key):
  """The same products with no distribution code: z = mean + log_scale, squared error."""
  del key
  mean, log_scale = encode(params, x)
  return jnp.mean(jnp.square(decode(params, mean + log_scale) - x))


def make_train_loop(loss_fn, tx, steps: int, batch_size: int):
  """``steps`` Adam steps in one jitted fori_loop; returns (state, losses [steps])."""

  def loop(state, train_x, perm, key):
    params, opt_state, step = state
    n = train_x.shape[0]

    def body(i, carry):
      params, opt_state, losses = carry
      t = step + i
      rows = jnp.take(perm, (t * batch_size + jnp.arange(batch_size)) % n)
      x = jnp.take(train_x, rows, axis=0)
      loss, grads = jax.value_and_grad(loss_fn)(params, x, jax.random.fold_in(key, t))
      updates, opt_state = tx.update(grads, opt_state, params)
      return optax.apply_updates(params, updates), opt_state, losses.at[i].set(loss)

    params, opt_state, losses = jax.lax.fori_loop(
        0, steps, body, (params, opt_state, jnp.zeros((steps,), jnp.float32)))
    return (params, opt_state, step + steps), losses

  return jax.jit(loop, donate_argnums=0)


def iwae_bound(params, x, key, *, num_samples: int, chunk: int, family: str,
               likelihood: str):
  """log (1/K) sum_k p(x, z_k) / q(z_k|x), streamed in chunks; x: [B, D] -> [B]."""
  mean, log_scale = encode(params, x)
  batch, latent = mean.shape

  def body(lse, c):
    z, log_q, _ = posterior_sample(jax.random.fold_in(key, c), mean, log_scale, chunk, family)
    logits = decode(params, z.reshape(chunk * batch, latent)).reshape(chunk, batch, -1)
    log_w = bernoulli_log_lik(x, logits, likelihood) + std_normal_log_prob(z, family) - log_q
    return jnp.logaddexp(lse, jax.nn.logsumexp(log_w, axis=0)), None

  lse, _ = jax.lax.scan(body, jnp.full((batch,), -jnp.inf, mean.dtype),
                        jnp.arange(num_samples // chunk))
  return lse - math.log(num_samples)


def iwae_matmul_only(params, x, key, *, num_samples: int, chunk: int):
  """The IWAE scan's products alone: decode mean + c, a plain sum of the logits."""
  del key
  mean, _ = encode(params, x)
  batch, latent = mean.shape

  def body(acc, c):
    z = jnp.broadcast_to(mean + c.astype(mean.dtype), (chunk, batch, latent))
    logits = decode(params, z.reshape(chunk * batch, latent)).reshape(chunk, batch, -1)
    return jnp.maximum(acc, jnp.max(jnp.sum(logits, -1), 0)), None

  acc, _ = jax.lax.scan(body, jnp.full((batch,), -jnp.inf, mean.dtype),
                        jnp.arange(num_samples // chunk))
  return acc


# ----------------------------------------------------------------------------
# Timing, interleaved.
# ----------------------------------------------------------------------------


def _summary(values, scale: float) -> dict:
  v = np.asarray(values) * scale
  return {"median": float(np.median(v)), "min": float(np.min(v)), "n": int(v.size)}


def _ratios(secs: dict, base: str = "jnp") -> dict:
  """Each variant's time over ``base``'s: paired per round (the decision's figure), and
  the ratio of the medians and of the mins over rounds."""
  b = np.asarray(secs[base])
  out = {}
  for name, s in secs.items():
    if name in (base, "matmul_only"):
      continue
    s = np.asarray(s)
    out[name] = {"paired_median": float(np.median(s / b)),
                 "paired_quartiles": [float(q) for q in np.percentile(s / b, [25, 75])],
                 "median": float(np.median(s) / np.median(b)),
                 "min": float(np.min(s) / np.min(b))}
  return out


def _compile(fn, *args):
  """Ahead-of-time compile: (executable, seconds, XLA's cost analysis of it)."""
  t0 = time.perf_counter()
  compiled = fn.lower(*args).compile()
  seconds = time.perf_counter() - t0
  return compiled, seconds, paired.xla_cost(compiled)


def _cost_ratios(costs: dict, base: str = "jnp") -> dict:
  return {name: {k: v / costs[base][k] for k, v in c.items() if costs[base].get(k)}
          for name, c in costs.items() if name not in (base, "matmul_only")}


def _rel_diff(a, b) -> float:
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.max(np.abs(a - b) / np.maximum(np.abs(a), 1e-30)))


def _check_agreement(name: str, what: str, rel_diff: float) -> None:
  """A variant that computes another number than jnp's is a bug, not a timing."""
  if rel_diff > RTOL:
    raise RuntimeError(f"{name}'s {what} differ from jnp's by {rel_diff:.3g} relative, more "
                       f"than {RTOL}.")


def bench_train(params, train_x, perm, key, variants: dict, rounds: int, calls: int,
                steps: int, matmul_only: bool) -> dict:
  tx = optax.adam(LEARNING_RATE)
  state0 = (params, tx.init(params), jnp.zeros((), jnp.int32))
  loss_fns = {name: functools.partial(neg_elbo, family=f, likelihood=l)
              for name, (f, l) in variants.items()}
  if matmul_only:
    loss_fns["matmul_only"] = matmul_only_loss
  loops, compile_s, costs = {}, {}, {}
  for name, fn in loss_fns.items():
    loops[name], compile_s[name], costs[name] = _compile(
        make_train_loop(fn, tx, steps, BATCH_SIZE), state0, train_x, perm, key)

  # Check the variants agree: the same start, the same keys, one fused call.
  losses, states = {}, {}
  for name, loop in loops.items():
    states[name], out = loop(paired.copy_tree(state0), train_x, perm, key)
    losses[name] = np.asarray(out)
  agreement = {}
  for name in variants:
    agreement[name] = {"first_step_loss_rel_diff": _rel_diff(losses["jnp"][0], losses[name][0]),
                       "max_loss_rel_diff_over_steps": _rel_diff(losses["jnp"], losses[name])}
    _check_agreement(name, "losses", agreement[name]["max_loss_rel_diff_over_steps"])

  def timed(name):
    def run():
      t0 = time.perf_counter()
      for _ in range(calls):
        states[name], out = loops[name](states[name], train_x, perm, key)
      jax.block_until_ready((states[name], out))
      return time.perf_counter() - t0
    return run

  secs = paired.interleaved({name: timed(name) for name in loops}, rounds)
  ms = {name: _summary(s, 1e3 / (calls * steps)) for name, s in secs.items()}
  return {"ms": ms, "ratios": _ratios(secs), "xla_cost": costs,
          "xla_cost_ratios": _cost_ratios(costs), "agreement": agreement,
          "compile_s": compile_s, "loss_at_step_1": float(losses["jnp"][0]),
          "loss_at_step_{}".format(steps): float(losses["jnp"][-1])}


def bench_iwae(params, eval_x, key, variants: dict, rounds: int, num_images: int,
               num_samples: int, matmul_only: bool) -> dict:
  if num_images % IWAE_BATCH or num_samples % IWAE_CHUNK:
    raise ValueError(f"--iwae_images must be a multiple of {IWAE_BATCH} and --num_samples "
                     f"of {IWAE_CHUNK}; got {num_images} and {num_samples}.")
  bound_fns = {name: functools.partial(iwae_bound, num_samples=num_samples, chunk=IWAE_CHUNK,
                                       family=f, likelihood=l)
               for name, (f, l) in variants.items()}
  if matmul_only:
    bound_fns["matmul_only"] = functools.partial(iwae_matmul_only, num_samples=num_samples,
                                                 chunk=IWAE_CHUNK)
  batches = [jnp.asarray(eval_x[i:i + IWAE_BATCH]) for i in range(0, num_images, IWAE_BATCH)]
  keys = [jax.random.fold_in(key, j) for j in range(len(batches))]

  fns, compile_s, costs, bounds = {}, {}, {}, {}
  for name, fn in bound_fns.items():
    fns[name], compile_s[name], costs[name] = _compile(jax.jit(fn), params, batches[0], keys[0])
    bounds[name] = np.asarray(fns[name](params, batches[0], keys[0]))   # also the warm-up
  agreement = {}
  for name in variants:
    agreement[name] = {"bound_rel_diff": _rel_diff(bounds["jnp"], bounds[name])}
    _check_agreement(name, "IWAE bounds", agreement[name]["bound_rel_diff"])

  def timed(name):
    def run():
      t0 = time.perf_counter()
      out = [fns[name](params, xb, k) for xb, k in zip(batches, keys)]
      jax.block_until_ready(out)
      return time.perf_counter() - t0
    return run

  secs = paired.interleaved({name: timed(name) for name in fns}, rounds)
  ms = {name: _summary(s, 1e3 / num_images) for name, s in secs.items()}
  return {"ms": ms, "ratios": _ratios(secs), "xla_cost": costs,
          "xla_cost_ratios": _cost_ratios(costs), "agreement": agreement, "compile_s": compile_s,
          "mean_bound_first_batch_nats": float(np.mean(bounds["jnp"]))}


def noise_agreement(key, mean, log_scale, num_samples: int) -> dict:
  """Max |z_jnp - z_distrax| and |log q_jnp - log q_distrax| on the same key."""
  z, log_q, _ = posterior_sample(key, mean, log_scale, num_samples, "jnp")
  out = {}
  for family in ("mvn", "independent"):
    zd, log_qd, _ = posterior_sample(key, mean, log_scale, num_samples, family)
    out[family] = {"z_max_abs_diff": float(jnp.max(jnp.abs(z - zd))),
                   "log_q_max_abs_diff": float(jnp.max(jnp.abs(log_q - log_qd)))}
  return out


# ----------------------------------------------------------------------------
# The learned mixture prior's log-density: ours (matrix products) vs distrax.
# ----------------------------------------------------------------------------


def mixture_log_prob(logits, loc, log_scale, z, *, impl: str):
  """log p(z) of sum_k softmax(logits)_k N(loc_k, diag exp(log_scale_k)^2): [N, L] -> [N]."""
  if impl == "ours":
    return mixture_lib.DiagNormalMixture(logits, loc, log_scale).log_prob(z)
  return distrax.MixtureSameFamily(
      distrax.Categorical(logits=logits),
      distrax.MultivariateNormalDiag(loc, jnp.exp(log_scale))).log_prob(z)


def _mixture_eval(impl: str, grad: bool):
  """One evaluation: log p(z) [N], or jax.grad of its sum w.r.t. (logits, loc, log_scale, z)."""
  f = functools.partial(mixture_log_prob, impl=impl)
  if not grad:
    return f
  return jax.grad(lambda *args: jnp.sum(f(*args)), argnums=(0, 1, 2, 3))


def _mixture_fused(impl: str, grad: bool):
  """Many evaluations in one jitted lax.scan, as a fused loop sees them.

  With the gradient (the training loop), parameters and z differ every iteration:
  xs = (logits [R, K], loc [R, K, L], log_scale [R, K, L], z [R, N, L]). Forward only
  (the IWAE scan), the parameters are the same throughout and only z [R, N, L] varies.
  """
  f = _mixture_eval(impl, grad)
  if grad:
    def fused(logits, loc, log_scale, z):
      return jax.lax.scan(lambda c, xs: (c, f(*xs)), None, (logits, loc, log_scale, z))[1]
  else:
    def fused(logits, loc, log_scale, z):
      return jax.lax.scan(lambda c, zi: (c, f(logits, loc, log_scale, zi)), None, z)[1]
  return jax.jit(fused)


def mixture_inputs(key, reps: int, num_components: int, rows: int, varying_params: bool):
  """logits ~ N(0, 1), loc ~ N(0, 1), log_scale ~ U(-2, 0.5), z ~ N(0, 1.5^2), float32."""
  k_pi, k_loc, k_scale, k_z = jax.random.split(key, 4)
  lead = (reps,) if varying_params else ()
  shape = lead + (num_components, LATENT)
  logits = jax.random.normal(k_pi, lead + (num_components,), jnp.float32)
  loc = jax.random.normal(k_loc, shape, jnp.float32)
  log_scale = jax.random.uniform(k_scale, shape, jnp.float32, -2.0, 0.5)
  z = 1.5 * jax.random.normal(k_z, (reps, rows, LATENT), jnp.float32)
  return logits, loc, log_scale, z


def mixture_log_prob_f64(logits, loc, log_scale, z, block: int = 100) -> np.ndarray:
  """The float64 reference: explicit [N, K, L] distances, scipy's logsumexp."""
  from scipy import special  # pylint: disable=g-import-not-at-top
  logits, loc, log_scale, z = (np.asarray(a, np.float64) for a in (logits, loc, log_scale, z))
  log_pi = logits - special.logsumexp(logits)
  scale = np.exp(log_scale)
  log_norm = -np.sum(log_scale, -1) - loc.shape[-1] * HALF_LOG_2PI          # [K]
  out = []
  for i in range(0, z.shape[0], block):
    d = (z[i:i + block, None, :] - loc) / scale                              # [n, K, L]
    out.append(special.logsumexp(-0.5 * np.sum(d * d, -1) + log_norm + log_pi, axis=-1))
  return np.concatenate(out)


def _max_abs(a, b) -> float:
  return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def bench_mixture(key, rounds: int, train_reps: int, iwae_reps: int, num_samples: int,
                  ref_train_ms: float, ref_iwae_ms: float, ref_source: str) -> dict:
  """Times ours vs distrax's mixture log-density; see the module docstring."""
  impls = ("ours", "distrax")
  fns, compile_s, costs, agreement, inputs = {}, {}, {}, {}, {}
  for num_components in MIXTURE_COMPONENTS:
    for case, (rows, grad) in MIXTURE_CASES.items():
      tag = f"K{num_components}/{case}"
      reps = train_reps if grad else iwae_reps
      args = mixture_inputs(jax.random.fold_in(key, 1000 * num_components + rows), reps,
                            num_components, rows, varying_params=grad)
      inputs[tag] = (args, reps)
      first = tuple(a[0] for a in args) if grad else args[:3] + (args[3][0],)
      values, grads = {}, {}
      for impl in impls:
        name = f"{tag}/{impl}"
        fns[name], compile_s[name], _ = _compile(_mixture_fused(impl, grad), *args)
        jax.block_until_ready(fns[name](*args))                                  # warm-up
        _, _, costs[name] = _compile(jax.jit(_mixture_eval(impl, grad)), *first)
        values[impl] = np.asarray(jax.jit(_mixture_eval(impl, False))(*first))
        if grad:
          grads[impl] = [np.asarray(g) for g in jax.jit(_mixture_eval(impl, True))(*first)]
      ref = mixture_log_prob_f64(*first)
      agreement[tag] = {
          "ours_vs_distrax_max_abs_diff": _max_abs(values["ours"], values["distrax"]),
          "ours_vs_f64_max_abs_diff": _max_abs(values["ours"], ref),
          "distrax_vs_f64_max_abs_diff": _max_abs(values["distrax"], ref),
          "ours_vs_f64_max_rel_diff": _rel_diff(ref, values["ours"]),
          "distrax_vs_f64_max_rel_diff": _rel_diff(ref, values["distrax"]),
          "log_prob_f64_min_median_max": [float(np.min(ref)), float(np.median(ref)),
                                          float(np.max(ref))],
      }
      if grad:
        agreement[tag]["grads_ours_vs_distrax_max_abs_diff_over_max_abs"] = {
            arg: _max_abs(a, b) / max(float(np.max(np.abs(a))), 1e-30)
            for arg, a, b in zip(("logits", "loc", "log_scale", "z"), grads["ours"],
                                 grads["distrax"])}

  def timed(name):
    args, _ = inputs[name.rsplit("/", 1)[0]]
    def run():
      t0 = time.perf_counter()
      jax.block_until_ready(fns[name](*args))
      return time.perf_counter() - t0
    return run

  secs = paired.interleaved({name: timed(name) for name in fns}, rounds)
  ms, ratios, cost_ratios, perspective = {}, {}, {}, {}
  for num_components in MIXTURE_COMPONENTS:
    for case, (rows, grad) in MIXTURE_CASES.items():
      tag = f"K{num_components}/{case}"
      reps = inputs[tag][1]
      pair = {impl: secs[f"{tag}/{impl}"] for impl in impls}
      ms[tag] = {impl: _summary(s, 1e3 / reps) for impl, s in pair.items()}
      ratios[tag] = _ratios(pair, base="ours")["distrax"]
      cost_ratios[tag] = _cost_ratios({impl: costs[f"{tag}/{impl}"] for impl in impls},
                                      base="ours")["distrax"]
      extra = float(np.median(np.asarray(pair["distrax"]) - np.asarray(pair["ours"]))
                    ) * 1e3 / reps
      per_unit = 1.0 if grad else num_samples / rows       # evaluations per step / per image
      ref = ref_train_ms if grad else ref_iwae_ms
      ours_ms = ms[tag]["ours"]["median"] * per_unit
      distrax_ms = ms[tag]["distrax"]["median"] * per_unit
      perspective[tag] = {
          "unit": "train step (batch 100, 1 sample)" if grad
                  else f"IWAE-{num_samples} image ({per_unit:g} chunks of {rows} rows)",
          "evaluations_per_unit": per_unit,
          "reference_ms": ref,
          "ours_ms": ours_ms, "distrax_ms": distrax_ms,
          "extra_ms": extra * per_unit,
          "ours_pct_of_reference": 100 * ours_ms / ref,
          "distrax_pct_of_reference": 100 * distrax_ms / ref,
          "extra_pct_of_reference": 100 * extra * per_unit / ref,
          "extra_pct_of_reference_plus_ours": 100 * extra * per_unit / (ref + ours_ms),
      }
  return {
      "latent_dim": LATENT, "components": list(MIXTURE_COMPONENTS),
      "evaluations_fused": {"train_n100_grad": train_reps, "iwae_chunk_n2000": iwae_reps},
      "rounds": rounds, "ms_per_evaluation": ms, "ratio_distrax_vs_ours": ratios,
      "within_threshold": {tag: r["paired_median"] <= DECISION_THRESHOLD
                           for tag, r in ratios.items()},
      "perspective": {"reference_source": ref_source, **perspective},
      "xla_cost_per_evaluation": {name: c for name, c in costs.items()},
      "xla_cost_ratio_distrax_vs_ours": cost_ratios,
      "agreement": agreement, "compile_s": compile_s,
  }


def _machine() -> dict:
  import jaxlib  # pylint: disable=g-import-not-at-top
  return {**machine.describe(), "jaxlib_version": jaxlib.__version__,
          "distrax_version": distrax.__version__, "optax_version": optax.__version__,
          "xla_flags": os.environ.get("XLA_FLAGS", "")}


def main(argv):
  del argv
  quick = _QUICK.value
  only = _ONLY.value
  train_rounds = 1 if quick else _TRAIN_ROUNDS.value
  calls = 1 if quick else _CALLS.value
  iwae_rounds = 1 if quick else _IWAE_ROUNDS.value
  iwae_images = IWAE_BATCH if quick else _IWAE_IMAGES.value
  num_samples = 200 if quick else _NUM_SAMPLES.value
  matmul_only = _MATMUL.value and not quick
  quick_names = ("jnp", "distrax_q_and_prior_only")
  train_variants = {n: v for n, v in TRAIN_VARIANTS.items() if not quick or n in quick_names}
  iwae_variants = {n: v for n, v in IWAE_VARIANTS.items() if not quick or n in quick_names}
  steps = _STEPS_PER_JIT.value
  mixture_rounds = 1 if quick else _MIXTURE_ROUNDS.value
  mixture_train_reps = 2 if quick else steps
  mixture_iwae_reps = 2 if quick else _MIXTURE_IWAE_CHUNKS.value

  root = jax.random.key(_SEED.value)
  init_key, data_key, noise_key, eval_key = (jax.random.fold_in(root, i) for i in range(4))
  out = {
      "benchmark": "distrax_vs_jnp",
      "model": "mlp 784-200-200-(50, 50) / 50-200-200-784, bernoulli, relu, adam 1e-3, "
               f"batch {BATCH_SIZE}; mnist_5k static binarization, random init",
      "machine": _machine(),
      "flags": {"quick": quick, "only": only, "train_rounds": train_rounds,
                "calls_per_measurement": calls, "steps_per_jit": steps,
                "iwae_rounds": iwae_rounds, "iwae_images": iwae_images,
                "num_samples": num_samples, "matmul_only": matmul_only,
                "iwae_batch": IWAE_BATCH, "iwae_chunk": IWAE_CHUNK,
                "mixture_rounds": mixture_rounds},
      "decision_threshold": DECISION_THRESHOLD,
  }
  within = {}
  ref_train_ms, ref_iwae_ms = _REF_TRAIN_MS.value, _REF_IWAE_MS.value
  ref_source = ("--ref_train_step_ms / --ref_iwae_ms_per_image (not measured in this run)")

  if only != "mixture":
    ds = data_lib.load_arrays("mnist_5k", None, binarize="static", seed=_SEED.value)
    params = init_params(init_key, ds.num_dims)
    train_x = jnp.asarray(ds.train_x)                                   # [4500, 784]
    perm = jax.random.permutation(data_key, train_x.shape[0])
    mean, log_scale = encode(params, train_x[:BATCH_SIZE])
    train = bench_train(params, train_x, perm, noise_key, train_variants, train_rounds, calls,
                        steps, matmul_only)
    iwae = bench_iwae(params, ds.eval_x, eval_key, iwae_variants, iwae_rounds, iwae_images,
                      num_samples, matmul_only)
    iwae_key = f"iwae{num_samples}"
    matmul_train = train["ms"].pop("matmul_only", None)
    matmul_iwae = iwae["ms"].pop("matmul_only", None)
    out.update({
        "train_step_ms": train["ms"],
        "train_step_ratio_vs_jnp": train["ratios"],
        f"{iwae_key}_ms_per_image": iwae["ms"],
        f"{iwae_key}_ratio_vs_jnp": iwae["ratios"],
        "matmul_only_ms": {"train_step": matmul_train, "iwae_per_image": matmul_iwae},
        "xla_cost_ratio_vs_jnp": {"train_loop": train["xla_cost_ratios"],
                                  iwae_key: iwae["xla_cost_ratios"]},
        "xla_cost": {"train_loop": train["xla_cost"], iwae_key: iwae["xla_cost"]},
        "agreement": {"rtol": RTOL,
                      "noise_max_abs_diff": noise_agreement(noise_key, mean, log_scale, 1),
                      "train": train["agreement"], "iwae": iwae["agreement"]},
        "compile_s": {"train_loop": train["compile_s"], iwae_key: iwae["compile_s"]},
        "sanity": {k: v for k, v in {**train, **iwae}.items()
                   if k.startswith(("loss_at", "mean_bound"))},
    })
    within.update({
        f"{section}/{name}": r["paired_median"] <= DECISION_THRESHOLD
        for section, ratios in (("train_step", train["ratios"]), (iwae_key, iwae["ratios"]))
        for name, r in ratios.items()})
    ref_train_ms = train["ms"]["jnp"]["median"]
    ref_iwae_ms = iwae["ms"]["jnp"]["median"]
    ref_source = f"this run's jnp medians (train_step_ms, {iwae_key}_ms_per_image)"

  if only != "train_iwae":
    mixture = bench_mixture(jax.random.fold_in(root, 4), mixture_rounds, mixture_train_reps,
                            mixture_iwae_reps, num_samples, ref_train_ms, ref_iwae_ms,
                            ref_source)
    out["mixture"] = mixture
    within.update({f"mixture/{tag}": v for tag, v in mixture["within_threshold"].items()})

  out["notes"] = NOTES
  out["within_threshold"] = within
  out["machine"]["load_average_at_end"] = round(os.getloadavg()[0], 2)
  print(json.dumps(out, indent=2))


if __name__ == "__main__":
  app.run(main)
