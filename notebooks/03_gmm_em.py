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
# # Part 3 — Latent-variable models: the Gaussian mixture and EM
#
# A latent-variable model introduces a latent $\mathbf{z}$ for each $\mathbf{x}$,
# $p(\mathbf{x}, \mathbf{z}|\boldsymbol{\theta}) = p(\mathbf{x}|\mathbf{z}, \boldsymbol{\theta})p(\mathbf{z})$, and maximizes the
# **incomplete likelihood** $\log p(\mathbf{x}|\boldsymbol{\theta}) = \log \int p(\mathbf{x}|\mathbf{z}, \boldsymbol{\theta}) p(\mathbf{z}) d\mathbf{z}$.
# For the mixture of Gaussians, $p(z) = \mathrm{Categorical}(z|\boldsymbol{\pi})$ and
# $p(\mathbf{x}|z, \boldsymbol{\theta}) = \mathcal{N}(\mathbf{x}|\boldsymbol{\mu}_z, \boldsymbol{\Sigma}_z)$, so the integral is a sum:
#
# $$\log p(\mathbf{x}|\boldsymbol{\theta}) = \log \sum_{k=1}^K \pi_k \mathcal{N}(\mathbf{x}|\boldsymbol{\mu}_k, \boldsymbol{\Sigma}_k).$$
#
# For **any** distribution $q(\mathbf{z})$ the lecture's variational decomposition holds:
#
# $$\log p(\mathbf{x}|\boldsymbol{\theta}) = \mathcal{L}(q, \boldsymbol{\theta}) + KL(q(\mathbf{z})||p(\mathbf{z}|\mathbf{x}, \boldsymbol{\theta})) \ge \mathcal{L}(q, \boldsymbol{\theta}),
# \qquad \mathcal{L}(q, \boldsymbol{\theta}) = \int q(\mathbf{z}) \log \frac{p(\mathbf{x}, \mathbf{z}|\boldsymbol{\theta})}{q(\mathbf{z})} d\mathbf{z}.$$
#
# **EM** is block-coordinate ascent on $\mathcal{L}$: the E-step sets $q(\mathbf{z}) = p(\mathbf{z}|\mathbf{x}, \boldsymbol{\theta}^*)$ (the
# responsibilities; the KL becomes 0), the M-step maximizes $\mathcal{L}(q, \boldsymbol{\theta})$ over $\boldsymbol{\theta}$. Hence
# $\log p(\mathbf{x}|\boldsymbol{\theta}_t) = \mathcal{L}(q_t, \boldsymbol{\theta}_t) \le \mathcal{L}(q_t, \boldsymbol{\theta}_{t+1}) \le \log p(\mathbf{x}|\boldsymbol{\theta}_{t+1})$:
# the likelihood never decreases.
#
# This notebook runs `vae_jax.classical.gmm` on the 8x8 digits (projected on their top two principal components, so the
# mixture can be drawn) and checks the monotone bound, the ELBO identity for an arbitrary $q$, the posterior,
# and $\log p(\mathbf{x})$ against scikit-learn.

# %%
import warnings

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
from matplotlib.patches import Ellipse
import numpy as np
from scipy import stats
from scipy.special import logsumexp
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture

from vae_jax.classical import gmm
from vae_jax.data import load_arrays

jax.config.update("jax_enable_x64", True)     # float64: the EM invariants hold to round-off
root = jax.random.key(0)
KEY_INIT, KEY_Q = (jax.random.fold_in(root, i) for i in range(2))

# %% [markdown]
# ## Data: the digits in two dimensions
#
# The 1,500 training digits, centred and projected on the top two principal directions (an SVD; this is
# preprocessing, not the lecture's math). EM starts from $K = 6$ means at random data points, each with the
# data's covariance, equal weights.

# %%
ds = load_arrays("digits")
centred = ds.train_x.astype(np.float64) - ds.train_x.mean(0)
_, _, vt = np.linalg.svd(centred, full_matrices=False)
x = centred @ vt[:2].T                                      # [N, 2]
N, K, ITERS = len(x), 6, 100

start = np.asarray(jax.random.choice(KEY_INIT, N, (K,), replace=False))
init = (np.full(K, 1.0 / K), x[start], np.repeat(np.cov(x.T)[None], K, axis=0))
params, trace = gmm.fit_with_trace(KEY_INIT, x, K, covariance_type="full", max_iters=ITERS,
                                   tol=0.0, init=init)
n_it = int(trace.num_iters)
final_ll = float(jnp.mean(gmm.log_prob(params, x)))
ll = np.append(np.asarray(trace.log_likelihood)[:n_it], final_ll)   # log p(x|theta_t), t = 0..T
elbo = np.asarray(trace.elbo)[:n_it]                                # L(q_t, theta_{t+1})
print(f"{n_it} EM iterations: mean log p(x) {ll[0]:.4f} -> {ll[-1]:.4f} nats")
print(f"smallest increase of log p(x) per iteration: {np.min(np.diff(ll)):.2e}")

# %% [markdown]
# ## The monotone bound
#
# Each iteration: the E-step closes the gap ($\mathcal{L}(q_t, \boldsymbol{\theta}_t) = \log p(\mathbf{x}|\boldsymbol{\theta}_t)$), the M-step raises the
# bound ($\mathcal{L}(q_t, \boldsymbol{\theta}_{t+1})$, the trace's `elbo[t]`), and the new likelihood is above the raised bound.

# %%
sandwich_low = np.max(ll[:-1] - elbo)          # <= 0: log p(x|theta_t) <= L(q_t, theta_{t+1})
sandwich_high = np.max(elbo - ll[1:])          # <= 0: L(q_t, theta_{t+1}) <= log p(x|theta_{t+1})
print(f"max of log p(x|theta_t) - L(q_t, theta_t+1):     {sandwich_low:.2e}")
print(f"max of L(q_t, theta_t+1) - log p(x|theta_t+1):   {sandwich_high:.2e}")

# %% [markdown]
# ## The ELBO identity for an arbitrary $q$, and the posterior
#
# `gmm.elbo_decomposition` computes $\log p(\mathbf{x})$, $\mathcal{L}(q)$ and $KL(q||p(z|\mathbf{x}))$ per example, each from its own
# formula. Take a $q$ that has nothing to do with the model — one random point of the simplex per example, drawn
# from $\mathrm{Dir}(\mathbf{1})$ — and check $\log p(\mathbf{x}) = \mathcal{L}(q) + KL$ with $KL \ge 0$; then $q = p(z|\mathbf{x})$
# (`gmm.posterior`, the responsibilities $p(z = k|\mathbf{x}) = \pi_k \mathcal{N}_k(\mathbf{x}) / \sum_j \pi_j \mathcal{N}_j(\mathbf{x})$) makes the KL vanish.

# %%
decompose = jax.jit(gmm.elbo_decomposition)
q_random = jax.random.dirichlet(KEY_Q, jnp.ones(K), (N,))             # [N, K]
parts = {k: np.asarray(v) for k, v in decompose(params, x, q_random).items()}
resp = np.asarray(gmm.posterior(params, x))                           # [N, K]
parts_post = {k: np.asarray(v) for k, v in decompose(params, x, resp).items()}
identity_error = np.max(np.abs(parts["log_px"] - (parts["elbo"] + parts["kl"])))
print(f"random q:    mean ELBO {parts['elbo'].mean():.4f}, mean KL {parts['kl'].mean():.4f}, "
      f"mean log p(x) {parts['log_px'].mean():.4f}; max |log p - (ELBO + KL)| {identity_error:.1e}")
print(f"q = p(z|x):  max KL {np.max(np.abs(parts_post['kl'])):.1e}, "
      f"max |log p(x) - ELBO| {np.max(np.abs(parts_post['log_px'] - parts_post['elbo'])):.1e}")

# %% [markdown]
# ## Cross-checks: SciPy and scikit-learn
#
# * $\log p(\mathbf{x})$ and $p(z|\mathbf{x})$ written out with `scipy.stats.multivariate_normal` and `logsumexp`;
# * scikit-learn's `GaussianMixture` given our parameters: `score_samples` and `predict_proba`;
# * scikit-learn's **own EM** from the same initialization and the same number of iterations reaches the same
#   parameters and likelihood.

# %%
log_joint = np.stack([np.log(w) + stats.multivariate_normal(m, c).logpdf(x)
                      for w, m, c in zip(np.asarray(params.weights), np.asarray(params.means),
                                         np.asarray(params.covariances))], axis=1)   # [N, K]
scipy_log_px = logsumexp(log_joint, axis=1)
scipy_resp = np.exp(log_joint - scipy_log_px[:, None])

sk = GaussianMixture(K, covariance_type="full")
sk.weights_, sk.means_, sk.covariances_ = (np.asarray(params.weights), np.asarray(params.means),
                                           np.asarray(params.covariances))
sk.precisions_cholesky_ = np.stack([np.linalg.inv(np.linalg.cholesky(c)).T
                                    for c in sk.covariances_])
with warnings.catch_warnings():               # tol=0 runs every iteration: "did not converge"
  warnings.simplefilter("ignore", ConvergenceWarning)
  sk_em = GaussianMixture(K, covariance_type="full", max_iter=n_it, tol=0.0, reg_covar=1e-6,
                          weights_init=init[0], means_init=init[1],
                          precisions_init=np.linalg.inv(init[2])).fit(x)

def cross_checks(log_px, resp):
  """Max abs differences of our log p(x) [N] and p(z|x) [N, K] from SciPy's and scikit-learn's,
  and of our EM's fit from scikit-learn's own EM."""
  return {
      "log p(x) vs scipy": np.max(np.abs(log_px - scipy_log_px)),
      "p(z|x) vs scipy": np.max(np.abs(resp - scipy_resp)),
      "log p(x) vs sklearn score_samples": np.max(np.abs(log_px - sk.score_samples(x))),
      "p(z|x) vs sklearn predict_proba": np.max(np.abs(resp - sk.predict_proba(x))),
      "means vs sklearn's own EM": np.max(np.abs(np.asarray(params.means) - sk_em.means_)),
      "mean log p(x) vs sklearn's own EM": abs(final_ll - sk_em.score(x)),
  }


checks = cross_checks(np.asarray(gmm.log_prob(params, x)), resp)
for name, err in checks.items():
  print(f"  {name:36s} max abs difference {err:.1e}")

# %% [markdown]
# ## Figure: the bound climbing, the fitted mixture, the decomposition
#
# Left: $\log p(\mathbf{x}|\boldsymbol{\theta}_t)$ and the bound after each M-step. Middle: the digits coloured by their most likely
# component (shade: how sure $p(z|\mathbf{x})$ is), with each component's 2-sigma ellipse. Right: for 40 digits, the
# random-$q$ ELBO plus the KL lands exactly on $\log p(\mathbf{x})$.

# %%
fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
ax = axes[0]
ax.plot(np.arange(n_it + 1), ll, "o-", ms=3, label=r"$\log p(x|\theta_t)$ (mean)")
ax.plot(np.arange(n_it) + 0.5, elbo, "x", ms=4, label=r"$\mathcal{L}(q_t, \theta_{t+1})$ after the M-step")
ax.set_xlabel("EM iteration t")
ax.set_ylabel("nats per example")
ax.set_title("EM never decreases the likelihood")
ax.set_ylim(ll[0] - 0.1, ll[-1] + 0.1)
ax.legend(fontsize=8)

ax = axes[1]
colors = plt.cm.tab10(np.arange(K))
hard = resp.argmax(1)
ax.scatter(x[:, 0], x[:, 1], s=6, c=colors[hard], alpha=0.25 + 0.75 * (resp.max(1) - 1 / K) / (1 - 1 / K))
for k in range(K):
  vals, vecs = np.linalg.eigh(np.asarray(params.covariances[k]))
  angle = np.degrees(np.arctan2(vecs[1, 1], vecs[0, 1]))
  ax.add_patch(Ellipse(np.asarray(params.means[k]), 4 * np.sqrt(vals[1]), 4 * np.sqrt(vals[0]),
                       angle=angle, fill=False, color=colors[k], lw=2))
  ax.annotate(f"π={float(params.weights[k]):.2f}", np.asarray(params.means[k]), fontsize=8,
              ha="center", va="center", bbox=dict(boxstyle="round", fc="white", alpha=0.8))
ax.set_xlabel("principal component 1")
ax.set_ylabel("principal component 2")
ax.set_title(f"GMM, K = {K}: colour = argmax p(z|x)")

ax = axes[2]
idx = np.arange(40)
ax.vlines(idx, parts["elbo"][idx], parts["elbo"][idx] + parts["kl"][idx], color="tab:orange", lw=3,
          label=r"$KL(q||p(z|x))$ (segment length)")
ax.plot(idx, parts["elbo"][idx], "o", color="tab:blue", ms=4, label=r"$\mathcal{L}(q)$, random q")
ax.plot(idx, parts["log_px"][idx], "k_", ms=9, mew=2, label=r"$\log p(x)$")
ax.set_ylim(parts["elbo"][idx].min() - 12, parts["log_px"][idx].max() + 2)
ax.set_xlabel("example")
ax.set_ylabel("nats")
ax.set_title(r"$\log p(x) = \mathcal{L}(q) + KL(q||p(z|x))$")
ax.legend(fontsize=8, loc="lower left")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Choosing K: BIC and the held-out likelihood
#
# The likelihood always rises with $K$, so it cannot choose $K$. The evidence can: $p(\mathbf{X}|K) = \int p(\mathbf{X}|\boldsymbol{\theta}, K)p(\boldsymbol{\theta}|K)d\boldsymbol{\theta}$
# penalizes the parameters a model does not need. Its Laplace approximation for large $N$ (Schwarz, 1978) is,
# up to terms that do not grow with $N$, $-\frac12\mathrm{BIC}$:
#
# $$\mathrm{BIC}(K) = -2\sum_{i=1}^N \log p(\mathbf{x}_i|\hat{\boldsymbol{\theta}}_K) + P_K \log N, \qquad
# P_K = \underbrace{K - 1}_{\pi} + \underbrace{KD}_{\boldsymbol{\mu}} + \underbrace{K\tfrac{D(D+1)}{2}}_{\boldsymbol{\Sigma}\ \text{full}}\ \ (KD\ \text{diag},\ K\ \text{spherical}).$$
#
# The other way to choose is the log-likelihood of **held-out** data. Here both choose among $K = 1..8$ for
# points drawn from a known 4-component mixture, with our EM (`gmm.fit`) and with scikit-learn's: `gmm.bic`
# and `GaussianMixture.bic` are evaluated on **both** sets of fitted parameters, and each EM's fits are
# scored by their own criteria.

# %%
KEY_TRUE, KEY_HELD_OUT, KEY_SELECT = (jax.random.fold_in(root, i) for i in range(2, 5))
true_mix = gmm.GMMParams(
    weights=jnp.array([0.35, 0.25, 0.25, 0.15]),
    means=jnp.array([[0.0, 0.0], [4.0, 0.5], [1.0, 4.5], [-3.5, 3.0]]),
    covariances=jnp.array([[[1.0, 0.5], [0.5, 1.0]], [[0.6, -0.2], [-0.2, 0.9]],
                           [[1.2, 0.0], [0.0, 0.4]], [[0.5, 0.1], [0.1, 0.5]]]),
    covariance_type="full")
x_known, _ = gmm.sample(KEY_TRUE, true_mix, 1000)
x_known_eval, _ = gmm.sample(KEY_HELD_OUT, true_mix, 1000)
x_known, x_known_eval = np.asarray(x_known), np.asarray(x_known_eval)
KS = np.arange(1, 9)


def sklearn_holding(p):
  """A GaussianMixture that holds our parameters, to score them with scikit-learn's bic."""
  mix = GaussianMixture(p.num_components, covariance_type="full")
  mix.weights_, mix.means_, mix.covariances_ = (np.asarray(p.weights), np.asarray(p.means),
                                                np.asarray(p.covariances))
  mix.precisions_cholesky_ = np.linalg.inv(np.linalg.cholesky(mix.covariances_)).transpose(0, 2, 1)
  return mix


ours_fit, sk_fit = {}, {}
for k in KS:                                # 4 restarts each; scikit-learn with its default tol
  ours_fit[k] = gmm.fit(jax.random.fold_in(KEY_SELECT, k), x_known, int(k), max_iters=300,
                        tol=1e-8, num_restarts=4)[0]
  with warnings.catch_warnings():           # an overfitted K may stop at max_iter: still scored
    warnings.simplefilter("ignore", ConvergenceWarning)
    sk_fit[k] = GaussianMixture(k, covariance_type="full", n_init=4, max_iter=300,
                                random_state=int(k)).fit(x_known)


def selection_table(bic_fn):
  """BIC of both EMs' fits by our formula (bic_fn) and by scikit-learn's, and held-out log p(x)."""
  as_params = lambda m: gmm.GMMParams(jnp.asarray(m.weights_), jnp.asarray(m.means_),
                                      jnp.asarray(m.covariances_), "full")
  return {
      "ours on our fits": np.array([bic_fn(ours_fit[k], x_known) for k in KS]),
      "sklearn on our fits": np.array([sklearn_holding(ours_fit[k]).bic(x_known) for k in KS]),
      "ours on sklearn fits": np.array([bic_fn(as_params(sk_fit[k]), x_known) for k in KS]),
      "sklearn on sklearn fits": np.array([sk_fit[k].bic(x_known) for k in KS]),
      "held-out, our fits": np.array([float(jnp.mean(gmm.log_prob(ours_fit[k], x_known_eval)))
                                      for k in KS]),
      "held-out, sklearn fits": np.array([sk_fit[k].score(x_known_eval) for k in KS]),
      "parameters": np.array([gmm.num_parameters(ours_fit[k]) for k in KS]),
  }


selection = selection_table(gmm.bic)
bic_rel_diff = max(
    np.max(np.abs(selection["ours on our fits"] / selection["sklearn on our fits"] - 1)),
    np.max(np.abs(selection["ours on sklearn fits"] / selection["sklearn on sklearn fits"] - 1)))
choices = {"BIC, our EM": KS[np.argmin(selection["ours on our fits"])],
           "BIC, sklearn's EM": KS[np.argmin(selection["sklearn on sklearn fits"])],
           "held-out, our EM": KS[np.argmax(selection["held-out, our fits"])],
           "held-out, sklearn's EM": KS[np.argmax(selection["held-out, sklearn fits"])]}
print(" K   P    BIC ours (sklearn's EM)   held-out log p(x) ours (sklearn's EM)")
for i, k in enumerate(KS):
  print(f"{k:2d} {selection['parameters'][i]:3d}   {selection['ours on our fits'][i]:9.2f} "
        f"({selection['sklearn on sklearn fits'][i]:9.2f})   "
        f"{selection['held-out, our fits'][i]:8.4f} ({selection['held-out, sklearn fits'][i]:8.4f})")
print(f"gmm.bic vs GaussianMixture.bic on the same parameters: max relative difference {bic_rel_diff:.1e}")
print("chosen K:", {name: int(k) for name, k in choices.items()}, "(true K = 4)")

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 4))
axes[0].plot(KS, selection["ours on our fits"], "o-", label="our EM")
axes[0].plot(KS, selection["sklearn on sklearn fits"], "x--", ms=8, label="scikit-learn's EM")
axes[1].plot(KS, selection["held-out, our fits"], "o-", label="our EM")
axes[1].plot(KS, selection["held-out, sklearn fits"], "x--", ms=8, label="scikit-learn's EM")
for ax, ylabel in zip(axes, ["BIC (lower is better)", "held-out mean log p(x)  [nats]"]):
  ax.axvline(4, color="k", ls=":", label="true K = 4")
  ax.set_xlabel("number of components K")
  ax.set_ylabel(ylabel)
  ax.legend(fontsize=8)
axes[0].set_title("BIC: the evidence's large-N approximation")
axes[1].set_title("Held-out log-likelihood")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## The claims, asserted
#
# * EM never decreases $\log p(\mathbf{x}|\boldsymbol{\theta})$, and each M-step's bound is sandwiched between consecutive likelihoods;
# * $\log p(\mathbf{x}) = \mathcal{L}(q) + KL(q||p(z|\mathbf{x}))$ per example for an arbitrary $q$, with $KL \ge 0$ (strictly positive here),
#   and the KL is 0 at $q = p(z|\mathbf{x})$;
# * $\log p(\mathbf{x})$ and the responsibilities agree with SciPy and scikit-learn, and scikit-learn's EM from the same start
#   lands on the same fit;
# * choosing $K$: `gmm.bic` equals scikit-learn's `GaussianMixture.bic` on the same parameters (both EMs' fits, every $K$,
#   to $10^{-6}$ relative), counts $P_K = K - 1 + KD + KD(D+1)/2$, and BIC and the held-out log-likelihood pick the true
#   $K = 4$ with either EM.

# %%
def check_claims(ll, elbo, parts, parts_post, checks, selection=selection):
  """The notebook's claims; ll [T + 1] and elbo [T] are EM's trace, selection the table over K."""
  tol = 1e-9                                      # float64 round-off on quantities of size ~10
  assert np.all(np.diff(ll) >= -tol), np.min(np.diff(ll))
  assert ll[-1] > ll[0] + 0.1
  assert np.max(ll[:-1] - elbo) <= tol and np.max(elbo - ll[1:]) <= tol, "the bound is not sandwiched"
  assert np.max(np.abs(parts["log_px"] - (parts["elbo"] + parts["kl"]))) < 1e-9, "identity"
  assert np.all(parts["kl"] >= -1e-12) and parts["kl"].mean() > 0.1
  assert np.max(np.abs(parts_post["kl"])) < 1e-9
  assert np.max(np.abs(parts_post["log_px"] - parts_post["elbo"])) < 1e-9
  for name, err in checks.items():
    assert err < (1e-6 if "own EM" in name else 1e-9), (name, err)

  for fits in ("our fits", "sklearn fits"):
    ours, theirs = selection[f"ours on {fits}"], selection[f"sklearn on {fits}"]
    assert np.max(np.abs(ours / theirs - 1)) < 1e-6, (fits, ours, theirs)
  assert np.array_equal(selection["parameters"], KS - 1 + 2 * KS + 3 * KS)   # D = 2, full
  for criterion, best in (("ours on our fits", np.argmin), ("sklearn on sklearn fits", np.argmin),
                          ("held-out, our fits", np.argmax), ("held-out, sklearn fits", np.argmax)):
    assert KS[best(selection[criterion])] == 4, (criterion, selection[criterion])


check_claims(ll, elbo, parts, parts_post, checks)
print("all claims hold")
