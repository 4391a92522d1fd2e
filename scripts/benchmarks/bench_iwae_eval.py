r"""log p(x) at the literature's standard: IWAE with K = 5000 on the 10,000 MNIST test images.

Times three ways of computing the same per-image estimate
log (1/K) sum_k p(x, z_k) / q(z_k|x) for the default MLP VAE (784-200-200-50,
Bernoulli), in one process on the same CPU:

* ``streamed``: ``vae_jax.inference.iwae.evaluate_iwae``, K drawn and reduced in chunks
  inside one jitted loop, the encoder run once per batch of images;
* ``reference``: a copy of the project's ``objectives.iwae_bound`` as it was
  before the streamed path (it materializes the [K, B, D] decoder outputs, and
  used ``jax.nn.softplus``), jitted, over batches of ``--reference_batch``
  images, which is what fits in memory at K = 5000;
* ``reference_new_softplus``: the same with ``distributions.softplus``, which
  XLA:CPU fuses with the sum (isolates the streaming's own share);
* ``torch_loop``: the per-image loop of PyTorch VAE code (repeat the image K
  times, encode, sample, decode, logsumexp), on the same weights; skipped if
  torch does not import.

Beside them, the machine's matmul throughput: a jitted chain of the matrix
products alone of one image's K-sample decode (K rows) and encode (1 row), and
the same chain in torch. The parameters are a random initialization (the
timing does not depend on them; trained weights are not needed), the images
the shared MNIST test set binarized once with a fixed NumPy seed.

  python scripts/benchmarks/bench_iwae_eval.py --num_images=200          # extrapolated to 10,000
  python scripts/benchmarks/bench_iwae_eval.py --num_images=1000 --reference=false --torch=false

Prints one JSON object.
"""

from __future__ import annotations

import functools
import json
import math
import os
import resource
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from experiments.configs import vae as vae_config
from vae_jax import data as data_lib
from vae_jax import distributions as D
from vae_jax.inference import iwae
from vae_jax.models import vae as vae_model
import machine  # this folder (scripts/benchmarks/) is on sys.path

_MNIST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data",
                      "mnist", "t10k-images-idx3-ubyte.gz")
_IMAGES = flags.DEFINE_string("images", _MNIST, "MNIST test images (IDX, gzipped).")
_NUM_IMAGES = flags.DEFINE_integer("num_images", 10_000, "Images timed (the first N); times "
                                   "are extrapolated to 10,000.")
_K = flags.DEFINE_integer("num_samples", 5000, "K, importance samples per image.")
_CHUNK = flags.DEFINE_integer("chunk_size", None, "Streamed: samples per chunk; default "
                              "iwae.default_chunk_size(batch_size).")
_BATCH = flags.DEFINE_integer("batch_size", iwae.DEFAULT_BATCH_SIZE, "Streamed: images per call.")
_REFERENCE = flags.DEFINE_bool("reference", True, "Time the materializing reference.")
_REFERENCE_BATCH = flags.DEFINE_integer("reference_batch", 1, "Reference: images per call.")
_TORCH = flags.DEFINE_bool("torch", True, "Time the PyTorch per-image loop if torch imports.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the binarization, the init and the draws.")

FULL_TEST_SET = 10_000
# The evaluate path's time over its matrix products' alone: at most this.
MATMUL_TARGET = 1.5
MODEL = vae_config.get_config().model   # the default VAE: 784-200-200-50, Bernoulli


def _peak_rss_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0   # Linux: KiB


def _images(path: str, n: int, seed: int) -> np.ndarray:
  """[n, 784] float32 in {0, 1}: the first n test images, binarized once."""
  x = data_lib.read_idx(path).reshape(-1, 784).astype(np.float32) / 255.0
  return data_lib.binarize_array(x, seed)[:n]


def _flops(k: int) -> dict:
  """Multiply-adds x 2 of the dense layers of one image (biases and the rest ignored)."""
  dec = 2 * (50 * 200 + 200 * 200 + 200 * 784)
  enc = 2 * (784 * 200 + 200 * 200 + 200 * 100)
  return {"needed": k * dec + enc,          # K decodes, one encode
          "torch_loop": k * (dec + enc)}    # the per-image loop encodes K copies


# ----------------------------------------------------------------------------
# The paths.
# ----------------------------------------------------------------------------


def iwae_bound_reference(params, x, key, *, model, num_samples, softplus=jax.nn.softplus):
  """The project's ``objectives.iwae_bound`` as it was before the streamed path,
  copied: all K decoder outputs [K, B, D] at once, and its Bernoulli
  log-likelihood x * l - softplus(l) with ``jax.nn.softplus`` (``softplus``
  swaps in ``distributions.softplus``, the form written since, to separate the
  two changes' effects)."""
  q = model.apply(params, x, method="encode")
  mean, log_scale = q.loc, q.log_scale
  z = D.normal_sample(key, mean, log_scale, (num_samples,))      # [K, B, L]
  logits = model.apply(params, z, method="decode")["logits"]     # [K, B, D]
  log_lik = jnp.sum(x * logits - softplus(logits), -1)
  log_w = log_lik + D.std_normal_log_prob(z) - D.normal_log_prob(z, mean, log_scale)
  return jax.nn.logsumexp(log_w, axis=0) - math.log(num_samples)


def _timed(fn, x: np.ndarray) -> tuple[np.ndarray, float]:
  t0 = time.perf_counter()
  out = fn(x)
  return out, time.perf_counter() - t0


def run_streamed(params, x, key, model, k) -> tuple[np.ndarray, dict]:
  fn = functools.partial(iwae.evaluate_iwae, params, key=key, model=model, num_samples=k,
                         chunk_size=_CHUNK.value, batch_size=_BATCH.value)
  t0 = time.perf_counter()
  fn(x[:min(_BATCH.value, len(x))])                     # compile + one batch
  warm_s = time.perf_counter() - t0
  out, secs = _timed(fn, x)
  batch = min(_BATCH.value, len(x))
  return out, {"seconds": secs, "compile_and_first_batch_s": warm_s, "batch_size": batch,
               "chunk_size": _CHUNK.value or iwae.default_chunk_size(batch)}


def run_reference(params, x, key, model, k, softplus=jax.nn.softplus
                  ) -> tuple[np.ndarray, dict]:
  step = jax.jit(functools.partial(iwae_bound_reference, model=model, num_samples=k,
                                   softplus=softplus))
  b = _REFERENCE_BATCH.value

  def fn(xs):
    out = [step(params, xb, jax.random.fold_in(key, j))
           for j, (xb, _) in enumerate(data_lib.eval_batches(xs, b))]
    return np.concatenate(jax.device_get(out))[:len(xs)]

  fn(x[:b])
  out, secs = _timed(fn, x)
  return out, {"seconds": secs, "batch_size": b,
               "decoder_output_mb_per_call": k * b * 784 * 4 / 2**20}


def _torch_modules(params):
  import torch  # pylint: disable=g-import-not-at-top
  from torch import nn  # pylint: disable=g-import-not-at-top

  def linear(p):
    layer = nn.Linear(*np.shape(p["kernel"]))
    with torch.no_grad():
      layer.weight.copy_(torch.from_numpy(np.asarray(p["kernel"]).T.copy()))
      layer.bias.copy_(torch.from_numpy(np.asarray(p["bias"]).copy()))
    return layer

  enc, dec = params["params"]["encoder"], params["params"]["decoder"]["mlp"]
  body = nn.Sequential(linear(enc["hidden_0"]), nn.ReLU(), linear(enc["hidden_1"]), nn.ReLU())
  decoder = nn.Sequential(linear(dec["dense_0"]), nn.ReLU(), linear(dec["dense_1"]), nn.ReLU(),
                          linear(dec["dense_2"]))
  return body, linear(enc["mean"]), linear(enc["log_scale"]), decoder


def run_torch(params, x, seed, k) -> tuple[np.ndarray, dict] | None:
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  from torch import nn  # pylint: disable=g-import-not-at-top
  torch.manual_seed(seed)
  body, mean_layer, scale_layer, decoder = _torch_modules(params)
  half_log_2pi = 0.5 * math.log(2 * math.pi)

  @torch.no_grad()
  def torch_log_weights(xi, eps=None):           # xi: [784] -> [K]
    xk = xi.unsqueeze(0).repeat(k if eps is None else len(eps), 1)   # [K, 784]
    h = body(xk)
    mean, log_scale = mean_layer(h), scale_layer(h)
    eps = torch.randn_like(mean) if eps is None else eps
    z = mean + torch.exp(log_scale) * eps
    logits = decoder(z)
    log_px_z = -nn.functional.binary_cross_entropy_with_logits(
        logits, xk, reduction="none").sum(-1)
    log_pz = (-0.5 * z**2 - half_log_2pi).sum(-1)
    log_qz = (-0.5 * eps**2 - log_scale - half_log_2pi).sum(-1)
    return log_px_z + log_pz - log_qz

  def fn(xs):
    xt = torch.from_numpy(xs)
    return np.array([float(torch.logsumexp(torch_log_weights(xi), 0)) - math.log(k)
                     for xi in xt])

  fn(x[:2])
  out, secs = _timed(fn, x)
  # The same model: log-weights of torch and vae_jax on the same 256 draws of image 0.
  eps = np.random.default_rng(seed).normal(size=(256, 50)).astype(np.float32)
  model = vae_model.build_network(MODEL, (28, 28, 1))
  q = model.apply(params, x[:1], method="encode")
  z = q.loc + jnp.exp(q.log_scale) * eps[:, None]                      # [256, 1, L]
  log_q = q.log_prob(z)
  prior = model.apply(params, method="prior_distribution")
  jax_lw = np.asarray(iwae.log_weights(params, x[:1], z, log_q, prior, model=model))[:, 0]
  torch_lw = torch_log_weights(torch.from_numpy(x[0]), torch.from_numpy(eps)).numpy()
  return out, {"seconds": secs, "torch_version": torch.__version__,
               "torch_threads": torch.get_num_threads(),
               "same_draws_max_abs_log_weight_diff_nats": float(np.max(np.abs(jax_lw - torch_lw))),
               "same_draws_log_weight_scale_nats": float(np.max(np.abs(jax_lw)))}


# ----------------------------------------------------------------------------
# The machine's matmul limit.
# ----------------------------------------------------------------------------


def _best_ms(fn, repeats: int = 5, number: int = 20) -> float:
  fn()
  best = float("inf")
  for _ in range(repeats):
    t0 = time.perf_counter()
    for _ in range(number):
      fn()
    best = min(best, (time.perf_counter() - t0) / number)
  return best * 1e3


def matmul_limit(k: int, with_torch: bool) -> dict:
  """The dense layers' matrix products alone (no bias, activation or likelihood)."""
  rng = np.random.default_rng(0)
  shapes_dec = [(50, 200), (200, 200), (200, 784)]
  shapes_enc = [(784, 200), (200, 200), (200, 100)]
  w_dec = [rng.normal(size=s).astype(np.float32) * 0.1 for s in shapes_dec]
  w_enc = [rng.normal(size=s).astype(np.float32) * 0.1 for s in shapes_enc]
  z = rng.normal(size=(k, 50)).astype(np.float32)
  x = rng.normal(size=(1, 784)).astype(np.float32)

  @jax.jit
  def chain(z, x, w_dec, w_enc):
    for w in w_dec:
      z = z @ w
    for w in w_enc:
      x = x @ w
    return z, x

  args = jax.device_put((z, x, w_dec, w_enc))
  ms = _best_ms(lambda: jax.block_until_ready(chain(*args)))
  flops = _flops(k)["needed"]
  out = {"what": f"matrix products of one image: decode [{k}, 50] -> 200 -> 200 -> 784, "
                 f"encode [1, 784] -> 200 -> 200 -> 100",
         "gflop_per_image": flops / 1e9,
         "jax_jit": {"ms": ms, "gflop_per_s": flops / ms / 1e6}}
  if with_torch:
    try:
      import torch  # pylint: disable=g-import-not-at-top
    except ImportError:
      return out
    zt, xt = torch.from_numpy(z), torch.from_numpy(x)
    wd = [torch.from_numpy(w) for w in w_dec]
    we = [torch.from_numpy(w) for w in w_enc]

    def torch_chain():
      a, b = zt, xt
      for w in wd:
        a = a @ w
      for w in we:
        b = b @ w
      return a, b

    ms = _best_ms(torch_chain)
    out["torch"] = {"ms": ms, "gflop_per_s": flops / ms / 1e6}
  return out


# ----------------------------------------------------------------------------


def _summary(secs: float, n: int, flops: dict, executed: str = "needed") -> dict:
  ms = secs / n * 1e3
  out = {"ms_per_image": ms, "images_per_s": n / secs,
         "total_s_10000_images": ms * FULL_TEST_SET / 1e3,
         "gflop_per_s": flops["needed"] / ms / 1e6}
  if executed != "needed":
    out["gflop_per_s_executed"] = flops[executed] / ms / 1e6
  return out


def _agreement(a: np.ndarray, b: np.ndarray) -> dict:
  """Paired difference of two estimates on the same images (independent draws)."""
  d = a - b
  se = float(np.std(d, ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")
  mean = float(np.mean(d))
  return {"mean_diff_nats": mean, "se_nats": se, "max_abs_diff_nats": float(np.max(np.abs(d))),
          "agree": bool(abs(mean) <= 4 * se + 1e-3)}


def main(argv):
  del argv
  k, n = _K.value, _NUM_IMAGES.value
  iwae.check_sizes(k, _CHUNK.value)
  x = _images(_IMAGES.value, n, _SEED.value)
  n = len(x)
  model = vae_model.build_network(MODEL, (28, 28, 1))
  params = model.init(jax.random.key(_SEED.value), jnp.zeros((1, 784), jnp.float32))
  key = jax.random.fold_in(jax.random.key(_SEED.value), 1)
  flops = _flops(k)
  result = {
      "benchmark": "iwae_eval", "num_samples": k,
      "model": "mlp 784-200-200-50, bernoulli (default config), random init params "
               "(timing does not depend on the weights; no trained checkpoint used)",
      "data": "shared MNIST t10k images, binarized once (numpy seed "
              f"{_SEED.value}), first {n}",
      "num_images_timed": n, "extrapolated_to_10000": n < FULL_TEST_SET,
      "machine": machine.describe(),
      "peak_rss_mb_before_paths": _peak_rss_mb(), "paths": {}}

  est, info = run_streamed(params, x, key, model, k)
  estimates = {"streamed": est}
  result["paths"]["streamed"] = {**_summary(info.pop("seconds"), n, flops), **info,
                                 "peak_rss_mb_after": _peak_rss_mb()}
  if _REFERENCE.value:
    est, info = run_reference(params, x, key, model, k)
    estimates["reference"] = est
    result["paths"]["reference"] = {**_summary(info.pop("seconds"), n, flops), **info,
                                    "peak_rss_mb_after": _peak_rss_mb()}
    est, info = run_reference(params, x, key, model, k, softplus=D.softplus)
    estimates["reference_new_softplus"] = est
    result["paths"]["reference_new_softplus"] = {**_summary(info.pop("seconds"), n, flops),
                                                 **info, "peak_rss_mb_after": _peak_rss_mb()}
  ran = run_torch(params, x, _SEED.value, k) if _TORCH.value else None
  if ran is not None:
    est, info = ran
    estimates["torch_loop"] = est
    result["paths"]["torch_loop"] = {**_summary(info.pop("seconds"), n, flops, "torch_loop"),
                                     **info, "peak_rss_mb_after": _peak_rss_mb()}
  result["matmul_limit"] = matmul_limit(k, _TORCH.value and ran is not None)

  paths = result["paths"]
  result["mean_log_px_estimate"] = {p: float(np.mean(e)) for p, e in estimates.items()}
  result["agreement_with_streamed"] = {p: _agreement(estimates["streamed"], e)
                                       for p, e in estimates.items() if p != "streamed"}
  speedups = {f"vs_{p}": paths[p]["ms_per_image"] / paths["streamed"]["ms_per_image"]
              for p in paths if p != "streamed"}
  result["streamed_speedup"] = speedups
  targets = {"vs_reference": 2.5, "vs_torch_loop": 1.5}
  result["targets"] = {t: {"want": v, "got": speedups[t], "met": speedups[t] >= v}
                       for t, v in targets.items() if t in speedups}
  # The evaluate path against its own matrix products, measured in this run.
  over_limit = paths["streamed"]["ms_per_image"] / result["matmul_limit"]["jax_jit"]["ms"]
  result["streamed_over_matmul_limit"] = over_limit
  result["targets"]["streamed_over_matmul_limit"] = {
      "want_at_most": MATMUL_TARGET, "got": over_limit, "met": over_limit <= MATMUL_TARGET}
  result["peak_rss_mb"] = _peak_rss_mb()
  print(json.dumps(result, indent=2))


if __name__ == "__main__":
  app.run(main)
