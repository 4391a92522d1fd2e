r"""A VAE with a discrete latent, trained with the score-function estimator.

Model (binary images x in {0, 1}^D, binary codes z in {0, 1}^L):

    p(z) = Bernoulli(1/2)^L,   p(x|z, theta) = Bernoulli(sigmoid(dec_theta(z))),
    q(z|x, phi) = Bernoulli(sigmoid(enc_phi(x)))   (independent over the L bits).

There is no differentiable path z = g(phi, eps) to a discrete z, so the
reparametrization trick does not apply. The ELBO is split as in the lecture,

    L(phi, theta) = E_q[log p(x|z, theta)] - KL(q(z|x, phi) || p(z)),

and each part gets the gradient it allows:

* grad_phi E_q[log p(x|z)]: the log-derivative trick,
  mean_s (f(z_s) - b_s) grad_phi log q(z_s|x), f = log p(x|z), z_s ~ q, with
  ``estimators.surrogate`` on the ``bernoulli`` family. The baseline b is 0
  (``score``), a running mean of f over previous steps (``score_baseline``)
  or the mean of f over the other S - 1 samples of the same x (``score_loo``).
* grad_phi KL: analytic (``kl_bernoulli_uniform``).
* grad_theta: direct, mean_s grad_theta log p(x|z_s) with the z_s held fixed.

For L <= ``MAX_EXACT_LATENT_DIM`` the 2^L codes can be enumerated, which gives
the exact ELBO and the exact log p(x) = logsumexp_z log p(x, z): the run
reports them next to the Monte-Carlo ELBO, and the tests use the exact ELBO's
gradient to check that every estimator is unbiased.

``run_discrete_vae(config, workdir)`` trains on the VAE's data pipeline and
writes ``config.json``, ``data_spec.json``, ``metrics.jsonl`` (splits
``train``, ``eval`` from step 0 on, and ``grad_stats``: variance / SNR of the
encoder and decoder gradients over ``grad_stats_draws`` draws on the current
batch), ``summary.json``, ``samples.png``, ``reconstructions.png`` and
``training_curves.png``. It keeps no checkpoints: re-running with the same
workdir starts again from step 0 and overwrites the outputs. A run is a pure
function of its config (initialization from ``seed``; batches, dynamic
binarization and the noise of step t from ``(seed, t)``).

  python -m experiments.main --experiment=discrete_vae --workdir=/tmp/dvae
"""

from __future__ import annotations

import functools
import math
import os
from typing import Any, Sequence

from absl import logging
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from vae_jax import data as data_lib
from vae_jax import distributions as D
from vae_jax import estimators
from vae_jax import models
from vae_jax import objectives
from vae_jax import plots
from vae_jax import train as vae_train
from vae_jax import workdir as wd
from vae_jax.errors import UserError, check_positive

Array = jax.Array
sg = jax.lax.stop_gradient

# Encoder estimators that need no path z = g(phi, eps).
DISCRETE_ESTIMATORS = ("score", "score_baseline", "score_loo")
# Exact enumeration over 2^L codes is offered up to this L (4,096 codes).
MAX_EXACT_LATENT_DIM = 12

DISCRETE_DEFAULTS = dict(
    experiment="discrete_vae", dataset="mnist_5k", data_dir=None, binarize="dynamic",
    batch_size=100, num_steps=10000, learning_rate=1e-3, seed=0, log_every=100,
    eval_every=1000, eval_batch_size=500, hidden_dims="200",
    discrete_latent_dim=10, discrete_estimator="score_loo", num_samples=4,
    baseline_decay=0.9, grad_stats_every=500, grad_stats_draws=16)


# ----------------------------------------------------------------------------
# Model.
# ----------------------------------------------------------------------------


class DiscreteVAE(nn.Module):
  """MLP encoder x -> logits of q(z|x) and MLP decoder z -> logits of p(x|z).

  Parameters live under ``{"encoder", "decoder"}`` (phi, theta) as in
  ``models.VAE``; the decoder mirrors the encoder's hidden sizes.

  Attributes:
    hidden_dims: ReLU hidden widths of the encoder.
    latent_dim: L, the number of binary latents.
    output_dim: D, the number of pixels.
  """
  hidden_dims: Sequence[int]
  latent_dim: int
  output_dim: int

  def setup(self):
    self.encoder = models.MLP(tuple(self.hidden_dims) + (self.latent_dim,))
    self.decoder = models.MLP(tuple(reversed(tuple(self.hidden_dims))) + (self.output_dim,))

  def __call__(self, x):
    logits = self.encode(x)
    return logits, self.decode((logits > 0).astype(x.dtype))

  def encode(self, x):
    """x: [B, D] -> logits of q(z|x): [B, L]."""
    return self.encoder(x)

  def decode(self, z):
    """z: [..., L] in {0, 1} -> {"logits": [..., D]} of p(x|z)."""
    return {"logits": self.decoder(z)}


def build_model(config: dict, num_dims: int) -> DiscreteVAE:
  return DiscreteVAE(hidden_dims=vae_train.parse_hidden_dims(config["hidden_dims"]),
                     latent_dim=int(config["discrete_latent_dim"]), output_dim=num_dims)


# ----------------------------------------------------------------------------
# KL, the surrogate objective, and exact enumeration.
# ----------------------------------------------------------------------------


def kl_bernoulli_uniform(logits: Array) -> Array:
  """KL(Bernoulli(sigmoid(logits)) || Bernoulli(1/2)) summed over the last axis.

  Per bit: log 2 - H(q) = log 2 - softplus(l) + sigmoid(l) * l.

  Args:
    logits: [..., L].

  Returns:
    [...] KL in nats, in [0, L log 2].
  """
  return logits.shape[-1] * math.log(2.0) - D.bernoulli_entropy(logits)


def _log_lik(params: Any, x: Array, z: Array, *, model: DiscreteVAE) -> Array:
  """log p(x|z): x [B, D], z [S, B, L] -> [S, B]."""
  return objectives.log_likelihood(x, model.apply(params, z, method="decode"))


def check_estimator(estimator: str, num_samples: int) -> None:
  """Raises UserError for an estimator this model cannot use."""
  if estimator in estimators.REPARAMETRIZABLE:
    raise UserError(
        f"--discrete_estimator={estimator} needs the reparametrization trick, which does "
        f"not apply to a discrete z (no differentiable path z = g(phi, eps) to "
        f"z in {{0, 1}}^L); use one of {', '.join(DISCRETE_ESTIMATORS)}.")
  if estimator not in DISCRETE_ESTIMATORS:
    raise UserError(f"unknown --discrete_estimator={estimator!r}; choose one of "
                    f"{', '.join(DISCRETE_ESTIMATORS)}.")
  check_positive(num_samples, "num_samples", integer=True)
  if estimator == "score_loo" and int(num_samples) < 2:
    raise UserError(f"--discrete_estimator=score_loo needs --num_samples >= 2 (the "
                    f"baseline of each sample is the mean of the others), got {num_samples}.")


def elbo_surrogate(params: Any, x: Array, key: Array, est_state: dict, *,
                   model: DiscreteVAE, estimator: str, num_samples: int,
                   baseline_decay: float = 0.9) -> tuple[Array, tuple[dict, dict]]:
  """Negative surrogate ELBO of one batch; its gradient is the chosen estimator.

  Value: -(1/B) sum_b [mean_s log p(x_b|z_bs) - KL(q(z|x_b) || p(z))], the
  Monte-Carlo negative ELBO. Gradient: encoder by the score-function estimator
  (``estimators.surrogate`` on ``estimators.bernoulli``) plus the analytic KL
  gradient; decoder directly through log p(x|z_s) with the z_s fixed.

  Args:
    params: {"params": {"encoder", "decoder"}}.
    x: [B, D] batch in {0, 1}.
    key: PRNG key for the S draws z_s ~ q(z|x): [S, B, L].
    est_state: {"baseline": [], "count": []} for score_baseline; {} otherwise.
    estimator: one of ``DISCRETE_ESTIMATORS``.
    num_samples: S (>= 2 for score_loo).
    baseline_decay: decay of score_baseline's running mean of mean f.

  Returns:
    (loss, (aux, new_est_state)); aux holds per-example [B] ``recon``
    (mean_s log p(x|z_s)), ``kl`` and ``elbo`` = recon - kl, in nats.
  """
  logits = model.apply(params, x, method="encode")                          # [B, L]
  kl = kl_bernoulli_uniform(logits)                                         # [B]
  # The draws estimators.surrogate makes from the same key (no gradient path).
  z = estimators.bernoulli.sample(key, sg(logits), num_samples)             # [S, B, L]
  log_lik = _log_lik(params, x, z, model=model)                             # [S, B]
  new_state = est_state
  baseline = 0.0
  if estimator == "score_baseline":
    baseline = est_state["baseline"]   # from previous steps only: unbiased
    new_state = estimators.update_baseline(est_state, jnp.mean(sg(log_lik)), baseline_decay)
  frozen = sg(params)
  f = lambda zs: _log_lik(frozen, x, zs, model=model)                       # [S, B] -> [S, B]
  encoder_term = estimators.surrogate(estimator, estimators.bernoulli, f, logits, key,
                                      num_samples, baseline)
  # Same value mean(log_lik); the decoder's gradient is the direct one.
  decoder_term = jnp.mean(log_lik) - sg(jnp.mean(log_lik))
  loss = -(encoder_term + decoder_term - jnp.mean(kl))
  recon = jnp.mean(sg(log_lik), 0)
  aux = {"recon": recon, "kl": sg(kl), "elbo": recon - sg(kl)}
  return loss, (aux, new_state)


def make_loss(model: DiscreteVAE, estimator: str, num_samples: int,
              baseline_decay: float = 0.9):
  """(loss_fn, est_state0): loss_fn(params, x, key, est_state) -> (loss, (aux, state))."""
  check_estimator(estimator, num_samples)
  estimators.check_baseline_decay(baseline_decay)
  loss_fn = functools.partial(elbo_surrogate, model=model, estimator=estimator,
                              num_samples=int(num_samples),
                              baseline_decay=float(baseline_decay))
  return loss_fn, (estimators.init_baseline() if estimator == "score_baseline" else {})


def all_codes(latent_dim: int) -> Array:
  """Every z in {0, 1}^L as float32 rows: [2^L, L] (row k = binary digits of k)."""
  k = jnp.arange(2 ** latent_dim)[:, None]
  return ((k >> jnp.arange(latent_dim - 1, -1, -1)) & 1).astype(jnp.float32)


def _enumerate(params: Any, x: Array, model: DiscreteVAE) -> tuple[Array, Array]:
  """log p(x|z) and log q(z|x) for every code: x [B, D] -> ([B, K], [B, K]), K = 2^L."""
  if model.latent_dim > MAX_EXACT_LATENT_DIM:
    raise UserError(f"exact enumeration needs L <= {MAX_EXACT_LATENT_DIM} "
                    f"(2^L codes), got L = {model.latent_dim}.")
  codes = all_codes(model.latent_dim)                                      # [K, L]
  dec = model.apply(params, codes, method="decode")["logits"]               # [K, D]
  # sum_d x_d l_d - softplus(l_d), as one matmul instead of a [B, K, D] tensor.
  log_lik = x @ dec.T - jnp.sum(jax.nn.softplus(dec), -1)                   # [B, K]
  enc = model.apply(params, x, method="encode")                             # [B, L]
  log_q = enc @ codes.T - jnp.sum(jax.nn.softplus(enc), -1, keepdims=True)  # [B, K]
  return log_lik, log_q


def _exact_terms(params: Any, x: Array, model: DiscreteVAE) -> tuple[Array, Array]:
  """(log p(x), ELBO) per example [B], from one enumeration."""
  log_lik, log_q = _enumerate(params, x, model)
  log_prior = -model.latent_dim * math.log(2.0)
  log_marginal = jax.nn.logsumexp(log_lik, -1) + log_prior
  elbo = jnp.sum(jnp.exp(log_q) * (log_lik + log_prior - log_q), -1)
  return log_marginal, elbo


def exact_log_marginal(params: Any, x: Array, *, model: DiscreteVAE) -> Array:
  """log p(x) = logsumexp_z [log p(x|z) + log p(z)] over all 2^L codes: [B, D] -> [B]."""
  return _exact_terms(params, x, model)[0]


def exact_elbo(params: Any, x: Array, *, model: DiscreteVAE) -> Array:
  """sum_z q(z|x) [log p(x|z) + log p(z) - log q(z|x)] over all codes: [B, D] -> [B].

  Differentiable in the encoder and decoder: its gradient is the expectation
  every estimator's gradient should have.
  """
  return _exact_terms(params, x, model)[1]


# ----------------------------------------------------------------------------
# Training and evaluation.
# ----------------------------------------------------------------------------


def eval_step(params: Any, x: Array, mask: Array, key: Array, *, model: DiscreteVAE,
              exact: bool) -> dict:
  """Sums over the unmasked rows of one eval batch (x: [B, D], mask: [B]).

  Returns neg_elbo (one z ~ q per example), recon, kl, count and, when
  ``exact``, exact_neg_elbo and exact_nll by enumeration.
  """
  _, (aux, _) = elbo_surrogate(params, x, key, {}, model=model, estimator="score",
                               num_samples=1)
  out = {"neg_elbo": -jnp.sum(aux["elbo"] * mask), "recon": jnp.sum(aux["recon"] * mask),
         "kl": jnp.sum(aux["kl"] * mask), "count": jnp.sum(mask)}
  if exact:
    log_marginal, elbo = _exact_terms(params, x, model)
    out["exact_neg_elbo"] = -jnp.sum(elbo * mask)
    out["exact_nll"] = -jnp.sum(log_marginal * mask)
  return out


def resolve_config(config: dict) -> dict:
  """``DISCRETE_DEFAULTS`` overridden by ``config``, validated."""
  config = {**DISCRETE_DEFAULTS, **config}
  for name in ("batch_size", "num_steps", "log_every", "eval_every", "eval_batch_size"):
    check_positive(config[name], name, integer=True)
  check_positive(config["learning_rate"], "learning_rate")
  check_positive(config["discrete_latent_dim"], "discrete_latent_dim", integer=True)
  check_estimator(config["discrete_estimator"], config["num_samples"])
  estimators.check_baseline_decay(config["baseline_decay"])
  vae_train.validate_grad_stats(config)
  if config["binarize"] not in data_lib.BINARIZATIONS:
    raise UserError(f"--binarize must be one of {', '.join(data_lib.BINARIZATIONS)}, "
                    f"got {config['binarize']!r}.")
  vae_train.parse_hidden_dims(config["hidden_dims"])
  return config


def _validate_data(ds: data_lib.Dataset) -> None:
  if not data_lib.check_pixels(ds, "the discrete VAE models pixels as Bernoulli and",
                              "rescale it and use --binarize=dynamic or static"):
    logging.warning("The eval split of %s is not binary (--binarize=none): the eval "
                    "numbers are cross-entropies, not normalized likelihoods.", ds.name)


def run_discrete_vae(config: dict, workdir: str,
                     dataset: data_lib.Dataset | None = None) -> dict:
  """Trains the discrete-latent VAE with a score-function estimator and evaluates it.

  Args:
    config: flat dict (see ``DISCRETE_DEFAULTS``): dataset, data_dir, binarize,
      batch_size, num_steps, learning_rate, seed, log_every, eval_every,
      eval_batch_size, hidden_dims, discrete_latent_dim, discrete_estimator,
      num_samples, baseline_decay, grad_stats_every, grad_stats_draws.
    workdir: output directory (created; an earlier run's outputs are replaced,
      there is no checkpointing and no resume).
    dataset: optional preloaded ``Dataset``; loaded from the config otherwise.

  Returns:
    The summary written to ``summary.json``: eval_neg_elbo (MC),
    eval_exact_neg_elbo and eval_exact_nll (when L <= 12), eval_bits_per_dim,
    steps_per_s, step, estimator, latent_dim, ...
  """
  config = resolve_config(config)
  os.makedirs(workdir, exist_ok=True)
  ds = dataset or data_lib.load_arrays(config["dataset"], config["data_dir"],
                                       binarize=config["binarize"], seed=int(config["seed"]))
  _validate_data(ds)
  wd.write_config(workdir, config)
  wd.write_json(os.path.join(workdir, "data_spec.json"),
                {"name": ds.name, "image_shape": list(ds.image_shape),
                 "num_train": len(ds.train_x), "num_eval": len(ds.eval_x)})

  model = build_model(config, ds.num_dims)
  estimator = config["discrete_estimator"]
  loss_fn, est_state0 = make_loss(model, estimator, int(config["num_samples"]),
                                  float(config["baseline_decay"]))
  tx = optax.adam(float(config["learning_rate"]))
  batch_size, eval_batch_size = int(config["batch_size"]), int(config["eval_batch_size"])
  replicated, batch_sharded = vae_train.make_shardings((batch_size, eval_batch_size))
  root = jax.random.key(int(config["seed"]))
  init_fn = jax.jit(functools.partial(vae_train.create_train_state, model=model, tx=tx,
                                      input_dim=ds.num_dims))
  state = jax.device_put(init_fn(root, est_state=est_state0), replicated)
  stream = data_lib.BatchStream(ds.train_x, batch_size, int(config["seed"]),
                                dynamic_binarize=config["binarize"] == "dynamic")
  writer = wd.MetricWriter(workdir)
  writer.truncate_after(-1)   # no resume: start the metrics afresh

  step_fn = jax.jit(functools.partial(vae_train.train_step, loss_fn=loss_fn, tx=tx,
                                      e_steps=1, m_steps=1), donate_argnums=0)
  exact = model.latent_dim <= MAX_EXACT_LATENT_DIM
  eval_fn = jax.jit(functools.partial(eval_step, model=model, exact=exact))
  eval_key = jax.random.key(12345)  # fixed: eval numbers compare across runs
  stats_every = int(config["grad_stats_every"])
  stats_fn = jax.jit(functools.partial(vae_train.grad_stats_step, loss_fn=loss_fn,
                                       num_draws=int(config["grad_stats_draws"])))
  stats_root = jax.random.key(int(config["seed"]) + 777)

  def run_eval(step):
    result = vae_train.evaluate(eval_fn, state.params, ds.eval_x, eval_batch_size,
                                eval_key, ds.num_dims, sharding=batch_sharded)
    writer.write(step, "eval", result)
    logging.info("step %d eval: neg_elbo %.3f nats%s", step, result["neg_elbo"],
                 f", exact neg_elbo {result['exact_neg_elbo']:.3f}, exact nll "
                 f"{result['exact_nll']:.3f}" if exact else "")
    return result

  initial = run_eval(0)
  num_steps = int(config["num_steps"])
  log_every, eval_every = int(config["log_every"]), int(config["eval_every"])
  meter = vae_train.StepMeter()
  stats = None
  for step in range(num_steps):
    x = jax.device_put(next(stream), batch_sharded)
    state, metrics = step_fn(state, x)
    meter.add(state, metrics)
    done = step + 1
    if not (done % log_every == 0 or done % eval_every == 0 or done == num_steps or
            (stats_every and done % stats_every == 0)):
      continue
    means = meter.flush(done, lambda first, last: (
        f"the loss or its gradient became NaN/Inf between steps {first} and {last}; "
        "stopped. Lower --learning_rate or check the data."))
    writer.write(done, "train", means)
    logging.info("step %d/%d loss %.3f (recon %.3f, kl %.3f) | %.1f steps/s", done,
                 num_steps, means["loss"], means["recon"], means["kl"],
                 means["steps_per_s"])
    if stats_every and done % stats_every == 0:
      stats = jax.device_get(stats_fn(state.params, x, state.est_state,
                                      jax.random.fold_in(stats_root, done)))
      stats = {k: float(v) for k, v in stats.items()}
      writer.write(done, "grad_stats", stats)
    if done % eval_every == 0 and done != num_steps:
      run_eval(done)
    meter.end_host()

  steps_per_s = meter.steps_per_s(num_steps) if num_steps > 1 else None
  final = run_eval(num_steps)

  summary = {
      "step": int(state.step), "estimator": estimator, "latent_dim": model.latent_dim,
      "num_samples": int(config["num_samples"]),
      "eval_neg_elbo": final["neg_elbo"], "eval_bits_per_dim": final["bits_per_dim"],
      "eval_recon": final["recon"], "eval_kl": final["kl"],
      "eval_initial_neg_elbo": initial["neg_elbo"],
      "eval_examples": int(len(ds.eval_x)),
      "steps_per_s": steps_per_s,
      "examples_per_s": steps_per_s * batch_size if steps_per_s else None,
      "dataset": ds.name, "device": jax.devices()[0].platform,
      "device_count": jax.device_count(),
  }
  if exact:
    summary.update(eval_exact_neg_elbo=final["exact_neg_elbo"],
                   eval_exact_nll=final["exact_nll"],
                   eval_exact_bits_per_dim=final["exact_bits_per_dim"])
  if stats is not None:
    summary["grad_var_encoder"] = stats["grad_var_encoder"]
  wd.write_summary(workdir, summary)
  _write_figures(workdir, config, ds, model, jax.device_get(state.params), int(state.step))
  return summary


def sample_and_reconstruct(params: Any, key: Array, x: Array, *, model: DiscreteVAE,
                           num_samples: int = 100) -> tuple[Array, Array]:
  """Decoder means E[x|z] for z ~ p(z): [num_samples, D], and for x: [B, D] at
  the mode of q(z|x) (each bit 1 iff its logit > 0): [B, D]."""
  z = D.bernoulli_sample(key, jnp.zeros((num_samples, model.latent_dim)))
  z_mode = (model.apply(params, x, method="encode") > 0).astype(x.dtype)
  mean = lambda v: jax.nn.sigmoid(model.apply(params, v, method="decode")["logits"])
  return mean(z), mean(z_mode)


def _write_figures(workdir, config, ds, model, params, step):
  """samples.png, reconstructions.png and training_curves.png."""
  key = jax.random.key(int(config["seed"]) + 7)
  # 50 held-out images spread over the split (it is sorted by label for some sets).
  x = ds.eval_x[np.linspace(0, len(ds.eval_x) - 1, min(50, len(ds.eval_x))).astype(int)]
  means, recon = jax.jit(functools.partial(sample_and_reconstruct, model=model))(
      params, key, jnp.asarray(x))
  plots.save_image_grid(os.path.join(workdir, "samples.png"), np.asarray(means),
                        ds.image_shape,
                        title=f"decoder means E[x|z], z ~ Bernoulli(1/2)^{model.latent_dim} "
                              f"(step {step})")
  plots.save_reconstructions(
      os.path.join(workdir, "reconstructions.png"), x, np.asarray(recon), ds.image_shape,
      title="odd rows: held-out inputs; even rows: E[x|z] at the mode of q(z|x)")
  records = wd.read_metrics(workdir)
  train = [r for r in records if r["split"] == "train"]
  evals = [r for r in records if r["split"] == "eval"]
  # Step 0 (the untrained model, several times worse) stays in metrics.jsonl only.
  evals = [r for r in evals if r["step"] > 0]
  steps = [r["step"] for r in evals]
  curves = {"train -ELBO (batch avg)": ([r["step"] for r in train], [-r["elbo"] for r in train]),
            "eval -ELBO (MC)": (steps, [r["neg_elbo"] for r in evals])}
  if evals and "exact_nll" in evals[0]:
    curves["eval -ELBO (exact)"] = (steps, [r["exact_neg_elbo"] for r in evals])
    curves["eval -log p(x) (exact)"] = (steps, [r["exact_nll"] for r in evals])
  plots.save_curves(os.path.join(workdir, "training_curves.png"), curves,
                    xlabel="step", ylabel="nats per example",
                    title=f"discrete VAE ({config['discrete_estimator']}, "
                          f"L = {model.latent_dim}) on {ds.name}")
