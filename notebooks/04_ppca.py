# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Part 4 — Probabilistic PCA: closed form, EM, and the linear VAE
#
# The lecture's second latent-variable example is the PCA model:
#
# $$p(\mathbf{z}) = \mathcal{N}(\mathbf{z}|0, I), \qquad p(\mathbf{x}|\mathbf{z}, \boldsymbol{\theta}) = \mathcal{N}(\mathbf{x}|W\mathbf{z} + \boldsymbol{\mu}, \sigma^2 I)
# \quad\Rightarrow\quad p(\mathbf{x}|\boldsymbol{\theta}) = \mathcal{N}(\mathbf{x}|\boldsymbol{\mu}, WW^T + \sigma^2 I).$$
#
# Its maximum-likelihood solution is in **closed form** (Tipping & Bishop, 1999): with $U_M$, $\Lambda_M$ the top $M$
# eigenvectors and eigenvalues of the sample covariance,
#
# $$W_{ML} = U_M(\Lambda_M - \sigma^2 I)^{1/2} R, \qquad \sigma^2_{ML} = \frac{1}{D - M}\sum_{j = M+1}^{D} \lambda_j,$$
#
# for any rotation $R$. The posterior is Gaussian too, $p(\mathbf{z}|\mathbf{x}) = \mathcal{N}(M^{-1}W^T(\mathbf{x} - \boldsymbol{\mu}), \sigma^2 M^{-1})$
# with $M = W^TW + \sigma^2 I$, so both EM steps are exact and the ELBO identity
# $\log p(\mathbf{x}|\boldsymbol{\theta}) = \mathcal{L}(q, \boldsymbol{\theta}) + KL(q(\mathbf{z})||p(\mathbf{z}|\mathbf{x}, \boldsymbol{\theta}))$ can be checked for any Gaussian $q$.
#
# Finally the bridge to the VAE: a VAE whose encoder and decoder are **linear** (one learned decoder variance) *is*
# PPCA with an amortized diagonal $q(\mathbf{z}|\mathbf{x}, \boldsymbol{\phi})$. Trained by stochastic gradient ascent on the ELBO, it should
# reach the PPCA maximum likelihood. This notebook checks, with `vae_jax.classical.ppca` and the VAE machinery, on the
# 8x8 digits ($D = 64$, $M = 4$):
#
# 1. the closed form against scikit-learn's `PCA` (`noise_variance_`, `score`, `get_covariance`) and SciPy;
# 2. EM climbs monotonically to the closed-form likelihood;
# 3. the ELBO identity for an arbitrary Gaussian $q$;
# 4. the linear VAE's ELBO $\le$ its own exact $\log p(\mathbf{x})$ $\le$ the PPCA optimum, and it ends within 1% of it.

# %%
import functools
import shutil
import tempfile

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from scipy import stats
from sklearn.decomposition import PCA

from vae_jax import tasks
from vae_jax.classical import ppca
from vae_jax.data import Dataset, load_arrays
from vae_jax.inference import objectives
from vae_jax.training import trainer
from vae_jax.training import workdir as wd
from experiments.configs import vae as vae_config

root = jax.random.key(0)
KEY_EM, KEY_Q, KEY_ELBO = (jax.random.fold_in(root, i) for i in range(3))

ds = load_arrays("digits")                       # grey levels in [0, 1]
x = ds.train_x.astype(np.float64)                        # [1500, 64]
N, D = x.shape
M = 4

# %% [markdown]
# ## 1. The closed form
#
# `ppca.fit` computes $W_{ML}$ and $\sigma^2_{ML}$ from the eigendecomposition (in float64 here). scikit-learn's `PCA`
# is an independent implementation of the same model: its `noise_variance_` is $\sigma^2$, `score_samples` the
# $\log p(\mathbf{x})$, `get_covariance()` the model covariance $WW^T + \sigma^2 I$ — but built from the unbiased sample
# covariance (divided by $N - 1$), so its parameters are the MLE's times $c = N/(N-1)$, and its average log-likelihood
# is below the maximum by exactly $\frac{D}{2}(\log c + 1/c - 1)$ (about $10^{-5}$ nats here).

# %%
with jax.enable_x64(True):
  closed = ppca.fit(x, M)
  closed_ll = np.asarray(ppca.log_prob(closed, x))                    # [N]
  W, sigma2, mu = np.asarray(closed.W), float(closed.sigma2), np.asarray(closed.mean)

sk = PCA(n_components=M, svd_solver="full").fit(x)
c = N / (N - 1)                          # sklearn's covariance divides by N - 1, the MLE's by N
eigvals = np.linalg.eigvalsh(np.cov(x.T, bias=True))[::-1]           # sample covariance spectrum


def closed_form_checks(fit):
  """Max abs differences of a PPCA fit from scikit-learn, SciPy and the eigenvalues."""
  with jax.enable_x64(True):
    fit_ll = np.asarray(ppca.log_prob(fit, x))                        # [N]
    rescaled_ll = np.asarray(ppca.log_prob(fit.replace(W=fit.W * np.sqrt(c),    # the MLE rescaled to
                                                       sigma2=fit.sigma2 * c), x))  # sklearn's ddof=1
  W, sigma2, mu = np.asarray(fit.W), float(fit.sigma2), np.asarray(fit.mean)
  model_cov = W @ W.T + sigma2 * np.eye(D)
  return {
      "c sigma^2 vs sklearn noise_variance_": abs(c * sigma2 - sk.noise_variance_),
      "sigma^2 vs mean of discarded eigenvalues": abs(sigma2 - eigvals[M:].mean()),
      "c (WW^T + s2 I) vs sklearn get_covariance": np.max(np.abs(c * model_cov - sk.get_covariance())),
      "log p(x), rescaled, vs sklearn score_samples": np.max(np.abs(rescaled_ll - sk.score_samples(x))),
      "log p(x) vs scipy multivariate_normal": np.max(np.abs(
          fit_ll - stats.multivariate_normal(mu, model_cov).logpdf(x))),
      "MLE minus sklearn score = D/2 (log c + 1/c - 1)": abs(
          (fit_ll.mean() - sk.score(x)) - 0.5 * D * (np.log(c) + 1 / c - 1)),
  }


closed_checks = closed_form_checks(closed)
print(f"PPCA, M = {M}: sigma^2 = {sigma2:.5f}, mean log p(x) = {closed_ll.mean():.4f} nats")
for name, err in closed_checks.items():
  print(f"  {name:48s} {err:.1e}")

# %% [markdown]
# ## 2. EM converges to the closed form
#
# `ppca.em_with_trace` starts from a random $W$ and alternates the exact E-step ($q = p(\mathbf{z}|\mathbf{x}, \boldsymbol{\theta}_t)$) and
# the closed-form M-step. It returns $\log p(\mathbf{x}|\boldsymbol{\theta}_t)$ for every $t$ and the bound after each M-step.
# $W$ is identifiable only up to the rotation $R$, so we compare $WW^T$.

# %%
with jax.enable_x64(True):
  em_params, em_ll, em_elbo = ppca.em_with_trace(x, M, KEY_EM, num_iters=150)
  em_WWt = np.asarray(em_params.W @ em_params.W.T)
  em_sigma2 = float(em_params.sigma2)
em_gap = closed_ll.mean() - em_ll                                      # [T + 1], >= 0
print(f"EM: mean log p(x) {em_ll[0]:.3f} -> {em_ll[-1]:.6f} (closed form {closed_ll.mean():.6f}); "
      f"sigma^2 {em_sigma2:.6f} vs {sigma2:.6f}")
print(f"smallest per-iteration change {np.min(np.diff(em_ll)):.1e}; "
      f"max |WW^T (EM) - WW^T (closed)| {np.max(np.abs(em_WWt - W @ W.T)):.1e}")
print(f"bound sandwich: max(ll_t - elbo_t) {np.max(em_ll[:-1] - em_elbo):.1e}, "
      f"max(elbo_t - ll_t+1) {np.max(em_elbo - em_ll[1:]):.1e}")

# %% [markdown]
# ## 3. The ELBO identity for an arbitrary Gaussian $q$
#
# `ppca.elbo_decomposition` evaluates $\log p(\mathbf{x})$, $\mathcal{L}(q)$ and $KL(q||p(\mathbf{z}|\mathbf{x}))$ each from its own closed form.
# Take $q(\mathbf{z}|\mathbf{x}) = \mathcal{N}(\mathbf{m}, S)$ with $\mathbf{m}$ the posterior mean plus noise and a random positive-definite $S$
# per example; then $q = p(\mathbf{z}|\mathbf{x})$ (`ppca.posterior`) should make the KL vanish.

# %%
with jax.enable_x64(True):
  post_mean, post_cov = ppca.posterior(closed, x)                       # [N, M], [M, M]
  k_mean, k_cov = jax.random.split(KEY_Q)
  q_mean = post_mean + 0.5 * jax.random.normal(k_mean, post_mean.shape)
  a = jax.random.normal(k_cov, (N, M, M))
  q_cov = 0.1 * (a @ jnp.swapaxes(a, 1, 2)) / M + 0.01 * jnp.eye(M)    # [N, M, M], SPD
  parts = {k: np.asarray(v) for k, v in ppca.elbo_decomposition(closed, x, q_mean, q_cov).items()}
  at_post = {k: np.asarray(v) for k, v in
             ppca.elbo_decomposition(closed, x, post_mean, post_cov).items()}
identity_error = np.max(np.abs(parts["log_px"] - (parts["elbo"] + parts["kl"])))
print(f"arbitrary q: mean ELBO {parts['elbo'].mean():.4f} + mean KL {parts['kl'].mean():.4f} "
      f"= mean log p(x) {parts['log_px'].mean():.4f}; max identity error {identity_error:.1e}")
print(f"q = p(z|x): max KL {np.max(np.abs(at_post['kl'])):.1e}")

# %% [markdown]
# ## 4. The linear VAE reaches the PPCA optimum
#
# The VAE of `vae_jax.models` with `hidden_dims=()` (linear encoder and decoder), a Gaussian $p(\mathbf{x}|\mathbf{z})$ with one
# shared learned scale, $M = 4$, trained by the library's trainer with Adam on the reparametrized ELBO, full batch,
# on the centred digits (the PPCA mean is the data mean, so centring loses nothing). It evaluates on the same
# training images, since the claim is about the maximum of the training likelihood. The decoder's weights give the
# VAE's **own** exact marginal $p_{\boldsymbol{\theta}}(\mathbf{x}) = \mathcal{N}(\mathbf{b}, W_d W_d^T + s^2 I)$, which must lie between its ELBO and the PPCA optimum.

# %%
xc = (ds.train_x - ds.train_x.mean(0)).astype(np.float32)
centred = Dataset("digits_centred", xc, ds.train_y, xc, ds.train_y, ds.image_shape)
config = vae_config.get_config("gaussian")
config.data.dataset = "digits"
config.model.update(gaussian_scale="shared", hidden_dims=(), latent_dim=M)
config.train.update(batch_size=N, num_steps=2000, learning_rate=1e-2, log_every=50,
                    eval_every=2000, checkpoint_every=2000)
config.eval.iw_samples = 0
task = tasks.build_task(config, centred.image_shape, N)
workdir = tempfile.mkdtemp(prefix="linear_vae_")        # checkpoints and metrics go to a temp folder
result = trainer.train(task, config, centred, workdir)
model, params = task.model, result.state.params

elbo_fn = jax.jit(functools.partial(objectives.elbo, model=model, num_samples=100))
_, aux = elbo_fn(params, jnp.asarray(xc), KEY_ELBO)
vae_elbo = float(np.mean(aux["elbo"]))

dec = params["params"]["decoder"]
W_dec = np.asarray(dec["mlp"]["dense_0"]["kernel"], np.float64).T    # [D, M]
b_dec = np.asarray(dec["mlp"]["dense_0"]["bias"], np.float64)
s2_dec = float(np.exp(2 * np.asarray(dec["head"]["log_scale"])[0]))
vae_ll = stats.multivariate_normal(b_dec, W_dec @ W_dec.T + s2_dec * np.eye(D)).logpdf(xc).mean()
ppca_ll = closed_ll.mean()
print(f"linear VAE after {int(result.state.step)} steps: ELBO {vae_elbo:.4f}  <=  "
      f"its log p(x) {vae_ll:.4f}  <=  PPCA max {ppca_ll:.4f} nats")
print(f"relative gap of the ELBO to the PPCA optimum: {(ppca_ll - vae_elbo) / abs(ppca_ll):.2%}; "
      f"decoder variance s^2 = {s2_dec:.5f} vs PPCA sigma^2 = {sigma2:.5f}")
curve = [(r["step"], r["elbo"]) for r in wd.read_metrics(workdir)   # one-sample ELBO, full batch
         if r["split"] == "train" and "elbo" in r]
shutil.rmtree(workdir)                         # the run's files are no longer needed

# %% [markdown]
# ## Figure
#
# Left: the spectrum of the sample covariance; PPCA keeps the top $M$ directions and sets $\sigma^2$ to the mean of the
# rest. Middle: EM's distance to the closed-form likelihood, falling monotonically (to round-off). Right: the linear
# VAE's ELBO climbing to the PPCA maximum likelihood (zoomed on the last half nat).

# %%
fig, axes = plt.subplots(1, 3, figsize=(16, 4.3))
ax = axes[0]
ax.semilogy(np.arange(1, D + 1), np.maximum(eigvals, 1e-8), "o", ms=3,
            label="eigenvalues $\\lambda_j$ (zeros drawn at $10^{-8}$)")
ax.semilogy(np.arange(1, M + 1), eigvals[:M], "o", ms=6, color="tab:red", label=f"kept (M = {M})")
ax.axhline(sigma2, color="k", ls="--", label=f"$\\sigma^2_{{ML}}$ = {sigma2:.4f}")
ax.set_xlabel("index j")
ax.set_ylabel("variance")
ax.set_title("Closed form: the discarded eigenvalues average to $\\sigma^2$")
ax.legend(fontsize=8)

ax = axes[1]
ax.semilogy(np.arange(len(em_gap)), np.maximum(em_gap, 1e-12))
ax.set_xlabel("EM iteration t")
ax.set_ylabel("closed-form log p(x) minus EM's (nats)")
ax.set_title("EM converges to the closed form")

ax = axes[2]
steps, values = zip(*curve)
ax.plot(steps, values, label="linear VAE: training ELBO (1 sample)")
ax.plot([steps[-1]], [vae_elbo], "o", color="tab:red", label=f"final ELBO, 100 samples = {vae_elbo:.2f}")
ax.axhline(ppca_ll, color="k", ls="--", label=f"PPCA max log p(x) = {ppca_ll:.2f}")
ax.axhline(vae_ll, color="tab:green", ls=":", label=f"VAE's own log p(x) = {vae_ll:.2f}")
ax.set_ylim(ppca_ll - 0.5, ppca_ll + 0.1)
ax.set_xlabel("training step")
ax.set_ylabel("nats per image")
ax.set_title("The linear VAE reaches the PPCA optimum")
ax.legend(fontsize=8, loc="lower right")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 5. Choosing $M$ by the evidence (Minka, 2000)
#
# The maximum likelihood never decreases with $M$, so it cannot choose $M$. The evidence $p(\mathbf{X}|M)$, with
# the parameters integrated out, can. Minka (2000) integrates over the principal directions $U$ (uniform on the
# Stiefel manifold), the kept eigenvalues and $\sigma^2$ by Laplace's method; with $\lambda_j$ the eigenvalues of the
# sample covariance and $v_M = \frac{1}{D - M}\sum_{j > M}\lambda_j$ (this is $\sigma^2_{ML}$),
#
# $$\log p(\mathbf{X}|M) \approx \underbrace{-\tfrac N2\Big[D\log 2\pi + \sum_{j \le M}\log\lambda_j + (D - M)\log v_M + D\Big]}_{\log p(\mathbf{X}|\boldsymbol{\theta}_{ML}(M))}
# + \log p(U) + \frac{m + M}{2}\log 2\pi - \frac12 \log|A_Z| - \frac M2 \log N,$$
#
# $m = DM - M(M+1)/2$, $\log|A_Z| = \sum_{i \le M}\sum_{j > i}\log\big[N(\lambda_i - \lambda_j)(\hat\lambda_j^{-1} - \hat\lambda_i^{-1})\big]$ ($\hat\lambda_j = v_M$ for $j > M$).
# The first term is section 1's maximum likelihood; the rest is the **Occam factor**, the price of the $m + M$
# parameters. `ppca.log_evidence` computes it for every $M$ at once; scikit-learn's `PCA(n_components="mle")`
# maximizes the same formula without the $M$-independent $-\frac{ND}{2}(\log 2\pi + 1)$. Two data sets: the digits,
# and the same number of draws from the $M = 4$ PPCA fitted in section 1 (whose $M$ is known).

# %%
from sklearn.decomposition._pca import _assess_dimension   # what PCA(n_components="mle") maximizes

KEY_DRAWS = jax.random.fold_in(root, 3)
LOG_2PI = np.log(2 * np.pi)
with jax.enable_x64(True):
  x_drawn = np.asarray(ppca.sample(KEY_DRAWS, closed, N))            # [N, D] from the M = 4 fit
  spectra = {"digits": np.asarray(ppca.spectrum(x)), "drawn, M = 4": np.asarray(ppca.spectrum(x_drawn))}
  max_ll = {name: np.asarray(ppca.max_log_likelihood(lam, N)) for name, lam in spectra.items()}
DATA = {"digits": x, "drawn, M = 4": x_drawn}


def evidence_checks(evidence_fn):
  """Per data set: the evidence of every M (evidence_fn(eigenvalues, N) -> [D - 1]), its choice,
  scikit-learn's choice, and the largest difference from sklearn's curve plus the constant
  (relative to the curve's scale)."""
  out = {}
  for name, lam in spectra.items():
    with jax.enable_x64(True):
      ours = np.asarray(evidence_fn(lam, N), np.float64)
    theirs = np.array([_assess_dimension(lam, m, N) for m in range(1, D)])
    finite = np.isfinite(theirs)
    out[name] = dict(
        curve=ours, chosen=int(np.argmax(ours)) + 1,
        sklearn_mle=int(PCA(n_components="mle", svd_solver="full").fit(DATA[name]).n_components_),
        same_inf=bool(np.array_equal(np.isfinite(ours), finite)),
        max_rel_diff=float(np.max(np.abs(ours[finite] - (theirs[finite] - N * D / 2 * (LOG_2PI + 1))))
                           / np.max(np.abs(theirs[finite]))))
  return out


evidence = evidence_checks(ppca.log_evidence)
for name, e in evidence.items():
  print(f"{name:13s}: M by the evidence {e['chosen']:2d}, by PCA(n_components='mle') {e['sklearn_mle']:2d}; "
        f"max relative difference from sklearn's curve + const {e['max_rel_diff']:.1e}")
print(f"the digits span {int(np.sum(spectra['digits'] >= 1e-15))} of {D} directions (3 pixels are constant)")

# %% [markdown]
# On the digits the evidence keeps rising up to $M = 61$, the number of directions the images span (three pixels
# are always blank): real images are far from "a subspace plus isotropic noise", and beyond the span $v_M = 0$ (floored
# at $10^{-15}$, as scikit-learn does). On data that *are* PPCA draws, the evidence peaks at the true $M = 4$, while the
# likelihood keeps climbing.

# %%
fig, axes = plt.subplots(1, 2, figsize=(13, 4))
ms = np.arange(1, D)
ax = axes[0]
ax.plot(ms, max_ll["digits"] / N, label="max log-likelihood / N")
ax.plot(ms, np.where(np.isfinite(evidence["digits"]["curve"]), evidence["digits"]["curve"], np.nan) / N,
        label="log evidence / N")
ax.axvline(evidence["digits"]["chosen"], color="k", ls="--", lw=1,
           label=f"chosen M = {evidence['digits']['chosen']} (sklearn: {evidence['digits']['sklearn_mle']})")
ax.set_xlabel("latent dimension M")
ax.set_ylabel("nats per image")
ax.set_title("Digits: the evidence rises to the data's span")
ax.legend(fontsize=8)
ax = axes[1]
drawn = evidence["drawn, M = 4"]
shown = ms <= 12
ax.plot(ms[shown], (drawn["curve"] - drawn["curve"][3])[shown], "o-", label="log evidence")
ax.plot(ms[shown], (max_ll["drawn, M = 4"] - max_ll["drawn, M = 4"][3])[shown], "s:",
        label="max log-likelihood")
ax.axvline(4, color="k", ls="--", lw=1, label=f"true M = 4 (chosen {drawn['chosen']}, sklearn {drawn['sklearn_mle']})")
ax.set_ylim(-300, 300)
ax.set_xlabel("latent dimension M")
ax.set_ylabel("nats, relative to M = 4")
ax.set_title("Draws from the M = 4 PPCA: the evidence peaks at 4")
ax.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## The claims, asserted
#
# * `ppca.fit` is the maximum-likelihood solution scikit-learn and SciPy compute;
# * EM never decreases $\log p(\mathbf{x})$, its bound is sandwiched, and it ends at the closed form ($\sigma^2$ and $WW^T$);
# * $\log p(\mathbf{x}) = \mathcal{L}(q) + KL(q||p(\mathbf{z}|\mathbf{x}))$ for an arbitrary Gaussian $q$, with $KL > 0$, and $KL = 0$ at the posterior;
# * the linear VAE: ELBO $\le$ its exact $\log p(\mathbf{x})$ $\le$ the PPCA maximum, and its ELBO is within 1% of that maximum;
# * choosing $M$: `ppca.log_evidence` is scikit-learn's curve plus $-\frac{ND}{2}(\log 2\pi + 1)$ at every $M$ (to $10^{-12}$
#   relative, $-\infty$ at the same $M$) and picks scikit-learn's $M$ (61, the span, on the digits; the true 4 on the PPCA
#   draws); its likelihood term at $M = 4$ is section 1's maximum, and the evidence lies below the likelihood at every $M$.

# %%
def check_claims(closed_checks, em_ll, em_elbo, em_sigma2, em_WWt, vae_elbo, vae_ll,
                 evidence=evidence):
  """The notebook's claims."""
  for name, err in closed_checks.items():
    assert err < 1e-6, (name, err)
  assert np.all(np.diff(em_ll) >= -1e-9), np.min(np.diff(em_ll))
  assert np.max(em_ll[:-1] - em_elbo) <= 1e-9 and np.max(em_elbo - em_ll[1:]) <= 1e-9
  em_gap = ppca_ll - em_ll
  assert em_gap[-1] < 1e-4 and em_gap[0] > 1.0, (em_gap[0], em_gap[-1])
  assert abs(em_sigma2 - sigma2) < 1e-3 * sigma2 and np.max(np.abs(em_WWt - W @ W.T)) < 1e-2
  assert identity_error < 1e-8 and parts["kl"].min() > 0.0
  assert np.max(np.abs(at_post["kl"])) < 1e-8
  assert vae_elbo <= vae_ll + 0.01 and vae_ll <= ppca_ll + 1e-3, (vae_elbo, vae_ll, ppca_ll)
  assert ppca_ll - vae_elbo <= 0.01 * abs(ppca_ll), (vae_elbo, ppca_ll)

  for name, e in evidence.items():
    assert e["same_inf"] and e["max_rel_diff"] < 1e-12, (name, e["max_rel_diff"])
    assert e["chosen"] == e["sklearn_mle"] == {"digits": 61, "drawn, M = 4": 4}[name], (name, e)
    finite = np.isfinite(e["curve"]) & np.isfinite(max_ll[name])
    assert np.all(e["curve"][finite] < max_ll[name][finite]), name
  assert abs(max_ll["digits"][M - 1] - N * ppca_ll) < 1e-8 * N * abs(ppca_ll)


check_claims(closed_checks, em_ll, em_elbo, em_sigma2, em_WWt, vae_elbo, vae_ll)
print("all claims hold")
