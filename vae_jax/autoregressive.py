"""An exact-likelihood autoregressive baseline: MADE for binary images.

The lecture's recap writes the likelihood of x = (x_1, ..., x_m) as a chain:

    log p(x | theta) = sum_{i=1}^{m} log p(x_i | x_{1:i-1}, theta),

fits theta by maximum likelihood, and samples ancestrally,
x_1 ~ p(x_1), x_2 ~ p(x_2 | x_1), ..., x_m ~ p(x_m | x_{1:m-1}).

Here every conditional is a Bernoulli whose logit comes from MADE
(Germain et al., 2015): an MLP whose weight matrices are multiplied by binary
masks so that ``logit_i`` depends only on ``x_{1:i-1}`` (natural ordering).
One forward pass therefore gives all m conditionals and the exact log p(x);
sampling needs m sequential passes. D below is the lecture's m.

Masks are deterministic (no RNG): input i has degree i; hidden unit k of
every layer has degree ``k mod (D - 1) + 1`` (cycling 1..D-1); a hidden unit
sees inputs of degree <= its own, and output i sees hidden units of degree
< i. With every hidden layer at least D - 1 wide, each logit_i depends on all
of x_{1:i-1}.

``run_autoregressive(config, workdir)`` trains MADE by MLE on the VAE's data
pipeline and reports the exact held-out negative log-likelihood, the number to
compare with the VAE's -ELBO and IWAE bound. It writes ``config.json``,
``data_spec.json``, ``metrics.jsonl``, ``summary.json``, ``samples.png`` and
``training_curves.png``. It keeps no checkpoints: a re-run with the same
``workdir`` starts again from step 0 and overwrites the outputs. A run is a
pure function of its config (initialization from ``seed``; batches and
dynamic binarization from ``(seed, step)`` as in the VAE).
"""

from __future__ import annotations

import functools
import os
from typing import Any, Sequence

from absl import logging
import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from vae_jax import data as data_lib
from vae_jax import distributions
from vae_jax import objectives
from vae_jax import plots
from vae_jax import train as vae_train
from vae_jax import workdir as wd
from vae_jax.errors import UserError, check_positive

# The VAE's data/optimization keys plus the MADE widths.
DEFAULT_CONFIG = dict(vae_train.DEFAULT_CONFIG, experiment="autoregressive",
                      ar_hidden_dims="500")


# ----------------------------------------------------------------------------
# MADE.
# ----------------------------------------------------------------------------


def made_degrees(num_dims: int, hidden_dims: Sequence[int]) -> list[np.ndarray]:
  """Degrees of the input units (1..D) and of each hidden layer (cycling 1..D-1)."""
  degrees = [np.arange(1, num_dims + 1)]
  for h in hidden_dims:
    degrees.append(np.arange(h) % max(num_dims - 1, 1) + 1)
  return degrees


def made_masks(num_dims: int, hidden_dims: Sequence[int]) -> list[np.ndarray]:
  """Binary [fan_in, fan_out] masks of every layer, input to output.

  Hidden layer: unit k sees unit j of the layer below iff deg(k) >= deg(j).
  Output layer: logit i sees unit j iff i > deg(j) (strict: no x_i in logit_i).
  """
  degrees = made_degrees(num_dims, hidden_dims)
  masks = [(d_out[None, :] >= d_in[:, None]).astype(np.float32)
           for d_in, d_out in zip(degrees[:-1], degrees[1:])]
  out_degrees = np.arange(1, num_dims + 1)
  masks.append((out_degrees[None, :] > degrees[-1][:, None]).astype(np.float32))
  return masks


class MaskedDense(nn.Module):
  """y = x @ (kernel * mask) + bias."""
  features: int

  @nn.compact
  def __call__(self, x: jax.Array, mask: np.ndarray) -> jax.Array:
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (x.shape[-1], self.features))
    bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
    return x @ (kernel * jnp.asarray(mask, kernel.dtype)) + bias


class MADE(nn.Module):
  """Masked autoencoder for distribution estimation over binary vectors.

  Attributes:
    hidden_dims: widths of the ReLU hidden layers; () gives the fully visible
      logistic model (one strictly lower-triangular linear map).
  """
  hidden_dims: tuple[int, ...] = (500,)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """x: [B, D] in {0, 1} -> Bernoulli logits [B, D]; logits[:, i] sees x[:, :i] only."""
    num_dims = x.shape[-1]
    masks = made_masks(num_dims, self.hidden_dims)
    widths = tuple(self.hidden_dims) + (num_dims,)
    h = x
    for i, (mask, width) in enumerate(zip(masks, widths)):
      h = MaskedDense(width, name=f"masked_dense_{i}")(h, mask)
      if i < len(masks) - 1:
        h = nn.relu(h)
    return h


# ----------------------------------------------------------------------------
# Likelihood, MLE objective, ancestral sampling.
# ----------------------------------------------------------------------------


def log_prob(params: Any, x: jax.Array, *, model: MADE) -> jax.Array:
  """Exact log p(x) = sum_i log Bernoulli(x_i | sigmoid(logit_i(x_{1:i-1}))).

  Args:
    params: MADE variables.
    x: [B, D] binary vectors (grey levels give the cross-entropy instead).

  Returns:
    [B] log-likelihoods in nats.
  """
  return distributions.bernoulli_log_prob(x, model.apply(params, x))


def nll_loss(params: Any, x: jax.Array, *, model: MADE) -> tuple[jax.Array, dict]:
  """The MLE objective: mean over the batch of -log p(x).

  Args:
    x: [B, D] batch.

  Returns:
    (scalar mean negative log-likelihood in nats, {"log_prob": [B]}).
  """
  lp = log_prob(params, x, model=model)
  return -jnp.mean(lp), {"log_prob": lp}


def sample(key: jax.Array, params: Any, num_samples: int, *, model: MADE,
           num_dims: int) -> jax.Array:
  """Ancestral sampling: x_i ~ Bernoulli(sigmoid(logit_i(x_{1:i-1}))), i = 1..D.

  D sequential forward passes in a ``fori_loop``; pass i draws coordinate i
  with the key ``fold_in(key, i)``.

  Returns:
    [num_samples, num_dims] float32 samples in {0, 1}.
  """
  def body(i, x):
    logits = model.apply(params, x)                                   # [S, D]
    logit_i = jax.lax.dynamic_index_in_dim(logits, i, axis=1, keepdims=False)
    x_i = distributions.bernoulli_sample(jax.random.fold_in(key, i), logit_i)
    return jax.lax.dynamic_update_index_in_dim(x, x_i, i, axis=1)

  x0 = jnp.zeros((num_samples, num_dims), jnp.float32)
  return jax.lax.fori_loop(0, num_dims, body, x0)


# ----------------------------------------------------------------------------
# Training and evaluation.
# ----------------------------------------------------------------------------


@flax.struct.dataclass
class ARTrainState:
  """step: [] int32; params: MADE variables; opt_state: Adam state."""
  step: jax.Array
  params: Any
  opt_state: Any


def parse_ar_hidden_dims(value) -> tuple[int, ...]:
  """'500' -> (500,); '' -> () (the fully visible logistic model)."""
  try:
    return vae_train.parse_hidden_dims(value)
  except UserError:
    raise UserError(f"--ar_hidden_dims must be comma-separated positive integers "
                    f"like 500 or 500,500, got {value!r}.") from None


def build_model(config: dict) -> MADE:
  return MADE(hidden_dims=parse_ar_hidden_dims(config["ar_hidden_dims"]))


def num_free_parameters(num_dims: int, hidden_dims: Sequence[int]) -> int:
  """Weights not masked out plus biases: the parameters that can move."""
  masks = made_masks(num_dims, hidden_dims)
  return int(sum(m.sum() + m.shape[1] for m in masks))


def create_train_state(key: jax.Array, model: MADE, tx: optax.GradientTransformation,
                       num_dims: int) -> ARTrainState:
  params = model.init(key, jnp.zeros((1, num_dims), jnp.float32))
  return ARTrainState(step=jnp.zeros((), jnp.int32), params=params,
                      opt_state=tx.init(params))


def train_step(state: ARTrainState, x: jax.Array, *, model: MADE,
               tx: optax.GradientTransformation) -> tuple[ARTrainState, dict]:
  """One Adam step on the mean negative log-likelihood (jit, model/tx static).

  Args:
    state: the train state (donated).
    x: [B, D] batch.

  Returns:
    (new_state, metrics): scalar nll (nats/example), bits_per_dim, grad_norm,
    param_norm, finite. A non-finite loss or gradient leaves the state
    unchanged (finite = 0).
  """
  (loss, _), grads = jax.value_and_grad(
      functools.partial(nll_loss, model=model), has_aux=True)(state.params, x)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  grad_norm = optax.global_norm(grads)
  finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
  keep = lambda new, old: jax.tree_util.tree_map(
      lambda a, b: jnp.where(finite, a, b), new, old)
  params = keep(params, state.params)
  new_state = state.replace(step=state.step + 1, params=params,
                            opt_state=keep(opt_state, state.opt_state))
  metrics = {"nll": loss,
             "bits_per_dim": objectives.bits_per_dim(loss, x.shape[-1]),
             "grad_norm": grad_norm, "param_norm": optax.global_norm(params),
             "finite": finite.astype(jnp.float32)}
  return new_state, metrics


def eval_step(params: Any, x: jax.Array, mask: jax.Array, key: jax.Array | None = None, *,
              model: MADE) -> dict:
  """x: [B, D] (zero-padded), mask: [B] -> {"nll": sum of -log p(x), "count"}.

  ``key`` is unused (the likelihood is exact); it makes the signature the one
  ``vae_jax.train.evaluate`` calls.
  """
  del key
  lp = log_prob(params, x, model=model)
  return {"nll": -jnp.sum(lp * mask), "count": jnp.sum(mask)}


def validate_config(config: dict) -> None:
  """Checks the keys this experiment reads; raises UserError with the fix."""
  for name in ("batch_size", "num_steps", "eval_every", "log_every", "eval_batch_size"):
    check_positive(config[name], name, integer=True)
  check_positive(config["learning_rate"], "learning_rate")
  if config["binarize"] not in data_lib.BINARIZATIONS:
    raise UserError(f"--binarize must be one of {', '.join(data_lib.BINARIZATIONS)}, "
                    f"got {config['binarize']!r}.")
  parse_ar_hidden_dims(config["ar_hidden_dims"])


def validate_data(ds: data_lib.Dataset) -> bool:
  """Refuses data a Bernoulli model cannot score; returns whether eval is binary.

  Grey levels in [0, 1] are accepted as in the VAE (the score is then the
  binary cross-entropy, not a normalized log-likelihood) with a warning.
  """
  binary = data_lib.check_pixels(
      ds, "the autoregressive baseline models pixels as Bernoulli and",
      "rescale it and use --binarize=dynamic or static")
  if not binary:
    logging.warning("The eval split of %s is not binary (--binarize=none): eval_nll "
                    "is a cross-entropy, not an exact negative log-likelihood.", ds.name)
  return binary


def run_autoregressive(config: dict, workdir: str,
                       dataset: data_lib.Dataset | None = None) -> dict:
  """Trains MADE by maximum likelihood and evaluates the exact held-out NLL.

  Args:
    config: flat dict (see ``DEFAULT_CONFIG``): dataset, data_dir, binarize,
      batch_size, num_steps, learning_rate, seed, log_every, eval_every,
      eval_batch_size, ar_hidden_dims.
    workdir: output directory (created; outputs of an earlier run are
      replaced, there is no resume).
    dataset: optional preloaded ``Dataset``; loaded from the config otherwise.

  Returns:
    The summary written to ``summary.json``: eval_nll (nats/example),
    eval_bits_per_dim, steps_per_s, step, num_parameters, ...
  """
  config = {**DEFAULT_CONFIG, **config}
  validate_config(config)
  os.makedirs(workdir, exist_ok=True)
  ds = dataset or data_lib.load_arrays(config["dataset"], config["data_dir"],
                                       binarize=config["binarize"],
                                       seed=int(config["seed"]))
  eval_binary = validate_data(ds)
  wd.write_config(workdir, config)
  wd.write_json(os.path.join(workdir, "data_spec.json"),
                {"name": ds.name, "image_shape": list(ds.image_shape),
                 "num_train": len(ds.train_x), "num_eval": len(ds.eval_x)})

  model = build_model(config)
  tx = optax.adam(float(config["learning_rate"]))
  batch_size, eval_batch_size = int(config["batch_size"]), int(config["eval_batch_size"])
  replicated, batch_sharded = vae_train.make_shardings((batch_size, eval_batch_size))
  root = jax.random.key(int(config["seed"]))
  init_key, sample_key = jax.random.split(root)
  state = jax.device_put(create_train_state(init_key, model, tx, ds.num_dims), replicated)
  stream = data_lib.BatchStream(ds.train_x, batch_size, int(config["seed"]),
                                dynamic_binarize=config["binarize"] == "dynamic")
  writer = wd.MetricWriter(workdir)
  writer.truncate_after(-1)   # no resume: start the metrics afresh

  step_fn = jax.jit(functools.partial(train_step, model=model, tx=tx), donate_argnums=0)
  eval_fn = jax.jit(functools.partial(eval_step, model=model))
  num_steps = int(config["num_steps"])
  log_every, eval_every = int(config["log_every"]), int(config["eval_every"])

  def run_eval(step):
    result = vae_train.evaluate(eval_fn, state.params, ds.eval_x, eval_batch_size,
                                jax.random.key(0), ds.num_dims, sharding=batch_sharded)
    writer.write(step, "eval", result)
    logging.info("step %d eval: nll %.3f nats (%.4f bits/dim)", step, result["nll"],
                 result["bits_per_dim"])
    return result

  meter = vae_train.StepMeter()
  for step in range(num_steps):
    state, metrics = step_fn(state, jax.device_put(next(stream), batch_sharded))
    meter.add(state, metrics)
    done = step + 1
    if not (done % log_every == 0 or done % eval_every == 0 or done == num_steps):
      continue
    means = meter.flush(done, lambda first, last: (
        f"the NLL or its gradient became NaN/Inf between steps {first} and {last}; "
        "stopped. Lower --learning_rate or check the data."))
    writer.write(done, "train", means)
    logging.info("step %d/%d nll %.3f (%.4f bits/dim) grad_norm %.3g | %.1f steps/s",
                 done, num_steps, means["nll"], means["bits_per_dim"],
                 means["grad_norm"], means["steps_per_s"])
    if done % eval_every == 0 and done != num_steps:
      run_eval(done)
    meter.end_host()

  steps_per_s = meter.steps_per_s(num_steps) if num_steps > 1 else None
  final = run_eval(num_steps)

  hidden = parse_ar_hidden_dims(config["ar_hidden_dims"])
  summary = {
      "step": int(state.step),
      "eval_nll": final["nll"], "eval_bits_per_dim": final["bits_per_dim"],
      "eval_examples": int(len(ds.eval_x)), "eval_data_binary": eval_binary,
      "steps_per_s": steps_per_s,
      "examples_per_s": steps_per_s * batch_size if steps_per_s else None,
      "num_parameters": int(sum(p.size for p in jax.tree_util.tree_leaves(state.params))),
      "num_free_parameters": num_free_parameters(ds.num_dims, hidden),
      "ar_hidden_dims": list(hidden),
      "dataset": ds.name, "device": jax.devices()[0].platform,
      "device_count": jax.device_count(),
  }
  wd.write_summary(workdir, summary)
  _write_figures(workdir, ds, model, state, sample_key)
  return summary


def _write_figures(workdir, ds, model, state, key):
  """samples.png (100 ancestral samples) and training_curves.png."""
  params = jax.device_get(state.params)   # off the training mesh
  draws = jax.jit(functools.partial(sample, model=model, num_samples=100,
                                    num_dims=ds.num_dims))(key, params)
  plots.save_image_grid(os.path.join(workdir, "samples.png"), np.asarray(draws),
                        ds.image_shape,
                        title=f"MADE ancestral samples (step {int(state.step)})")
  records = wd.read_metrics(workdir)
  train = [r for r in records if r["split"] == "train"]
  evals = [r for r in records if r["split"] == "eval"]
  curves = {"train NLL (batch avg)": ([r["step"] for r in train], [r["nll"] for r in train]),
            "eval NLL (exact)": ([r["step"] for r in evals], [r["nll"] for r in evals])}
  plots.save_curves(os.path.join(workdir, "training_curves.png"), curves,
                    xlabel="step", ylabel="nats per example",
                    title=f"MADE on {ds.name}")
