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
# # Part 2 — Bayes: MLE, MAP and the posterior predictive
#
# Treat the parameters $\boldsymbol{\theta}$ as random, with a prior $p(\boldsymbol{\theta})$.
# After seeing $\mathbf{X} = \{\mathbf{x}_i\}_{i=1}^n$, **Bayes' theorem** gives the posterior
#
# $$p(\boldsymbol{\theta}|\mathbf{X}) = \frac{p(\mathbf{X}|\boldsymbol{\theta})p(\boldsymbol{\theta})}{p(\mathbf{X})}
# = \frac{p(\mathbf{X}|\boldsymbol{\theta})p(\boldsymbol{\theta})}{\int p(\mathbf{X}|\boldsymbol{\theta})p(\boldsymbol{\theta})d\boldsymbol{\theta}},$$
#
# with the **evidence** $p(\mathbf{X})$ in the denominator, and **Bayesian inference** predicts with the
# posterior predictive
#
# $$p(\mathbf{x}|\mathbf{X}) = \int p(\mathbf{x}|\boldsymbol{\theta})p(\boldsymbol{\theta}|\mathbf{X})d\boldsymbol{\theta}.$$
#
# The **MAP** estimate $\boldsymbol{\theta}^* = \arg\max_{\boldsymbol{\theta}} \left(\log p(\mathbf{X}|\boldsymbol{\theta}) + \log p(\boldsymbol{\theta})\right)$
# replaces the posterior by a delta, $p(\boldsymbol{\theta}|\mathbf{X}) \approx \delta(\boldsymbol{\theta} - \boldsymbol{\theta}^*)$,
# so that $p(\mathbf{x}|\mathbf{X}) \approx p(\mathbf{x}|\boldsymbol{\theta}^*)$ (the plug-in); the **MLE** drops the prior too.
#
# With a conjugate prior all of this is in closed form: `vae_jax.bayes` has `BetaBernoulli`,
# `DirichletCategorical` and `NormalNormal`. This notebook
#
# 1. checks the closed forms (posterior, evidence, predictive) against `scipy.stats` and numerical integration;
# 2. shows the $n = 1$ failure of the MLE: after one flip it predicts the other outcome with
#    probability 0 (infinite log loss), while MAP and the predictive stay finite;
# 3. compares the held-out log loss of the posterior predictive and of the MAP plug-in as $n$ grows.

# %%
import math

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from scipy import integrate, special, stats

import vae_jax
from vae_jax import bayes

root = jax.random.key(0)
KEY_COIN, KEY_NORMAL, KEY_CURVE = (jax.random.fold_in(root, i) for i in range(3))

# %% [markdown]
# ## 1. The closed forms against SciPy
#
# **Beta–Bernoulli**: $\theta \sim \mathrm{Beta}(a, b)$, $x_i|\theta \sim \mathrm{Bernoulli}(\theta)$; with $k$ ones
# in $n$ flips the posterior is $\mathrm{Beta}(a + k, b + n - k)$ and the evidence of the sequence is
# $p(\mathbf{X}) = B(a + k, b + n - k) / B(a, b)$. The evidence is checked twice: by integrating
# $p(\mathbf{X}|\theta)p(\theta)$ numerically (`scipy.integrate.quad`), and with SciPy's beta-binomial
# (which counts sequences: divide by $\binom{n}{k}$).

# %%
coin = bayes.BetaBernoulli(a=2.0, b=2.0)
flips = np.asarray(coin.sample(KEY_COIN, 0.3, (20,)))        # 20 flips of a coin with theta* = 0.3
n, k = len(flips), int(flips.sum())
post = coin.posterior(flips)
ref_post = stats.beta(2.0 + k, 2.0 + n - k)

log_ev = float(coin.log_evidence(flips))
quad_ev, _ = integrate.quad(lambda t: t**k * (1 - t)**(n - k) * stats.beta(2, 2).pdf(t), 0, 1)
betabinom_ev = stats.betabinom(n, 2.0, 2.0).logpmf(k) - math.log(math.comb(n, k))
theta_grid = np.linspace(0.05, 0.95, 7)

coin_checks = {
    "posterior mean": (float(post.mean()), ref_post.mean()),
    "posterior std": (float(post.std()), ref_post.std()),
    "MAP (posterior mode)": (float(coin.map(flips)), (2.0 + k - 1) / (n + 2.0 + 2.0 - 2)),
    "log evidence vs quad": (log_ev, math.log(quad_ev)),
    "log evidence vs betabinom": (log_ev, betabinom_ev),
    "p(x=1|X) predictive": (math.exp(float(coin.posterior_predictive_log_prob(flips, np.array([1]))[0])),
                            ref_post.mean()),
}
print(f"{n} flips, {k} ones")
for name, (ours, ref) in coin_checks.items():
  print(f"  {name:28s} vae_jax {ours: .6f}   reference {ref: .6f}")
log_prior_err = np.max(np.abs(np.asarray(post.log_prior(theta_grid)) - ref_post.logpdf(theta_grid)))
print(f"  max |log Beta density - scipy| on a grid: {log_prior_err:.1e}")

# %% [markdown]
# **Dirichlet–Categorical** on the class labels of the 8x8 digits shipped with the package
# ($K = 10$): $p(\boldsymbol{\theta}|\mathbf{X}) = \mathrm{Dir}(\boldsymbol{\alpha} + \mathbf{n})$ and
# $p(\mathbf{X}) = \frac{\Gamma(A)}{\Gamma(n + A)}\prod_k \frac{\Gamma(n_k + \alpha_k)}{\Gamma(\alpha_k)}$, $A = \sum_k \alpha_k$,
# against SciPy's Dirichlet-multinomial (again divided by the multinomial coefficient).
#
# **Normal–Normal** (known $\sigma^2$): $\mu \sim \mathcal{N}(\mu_0, \tau^2)$, $x_i|\mu \sim \mathcal{N}(\mu, \sigma^2)$; the evidence is the
# joint Gaussian $\mathbf{X} \sim \mathcal{N}(\mu_0 \mathbf{1}, \sigma^2 I + \tau^2 \mathbf{1}\mathbf{1}^T)$, and the predictive
# $\mathcal{N}(\mu_n, \sigma^2 + \tau_n^2)$.

# %%
labels = vae_jax.load_arrays("digits").train_y[:200]                # [200] in 0..9
dice = bayes.DirichletCategorical(alpha=jnp.ones(10))
counts = np.bincount(labels, minlength=10)
log_ev_dir = float(dice.log_evidence(labels))
ref_dir = (stats.dirichlet_multinomial(np.ones(10), len(labels)).logpmf(counts)
           - (special.gammaln(len(labels) + 1) - special.gammaln(counts + 1).sum()))
print(f"Dirichlet-Categorical, {len(labels)} digit labels: log p(X) = {log_ev_dir:.4f}, "
      f"scipy {ref_dir:.4f}")

gauss = bayes.NormalNormal(mu0=0.0, tau2=4.0, sigma2=1.0)
xs = np.asarray(gauss.sample(KEY_NORMAL, 1.5, (12,)), np.float64)   # 12 draws, mu* = 1.5
cov = 1.0 * np.eye(12) + 4.0 * np.ones((12, 12))
log_ev_normal = float(gauss.log_evidence(xs))
ref_normal = stats.multivariate_normal(np.zeros(12), cov).logpdf(xs)
post_n = gauss.posterior(xs)
tau2_n = 1.0 / (1.0 / 4.0 + 12 / 1.0)
mu_n = tau2_n * xs.sum() / 1.0
x_new = np.array([-1.0, 0.5, 3.0])
pred_err = np.max(np.abs(np.asarray(gauss.posterior_predictive_log_prob(xs, x_new))
                         - stats.norm(mu_n, math.sqrt(1.0 + tau2_n)).logpdf(x_new)))
print(f"Normal-Normal, 12 draws: log p(X) = {log_ev_normal:.4f}, scipy {ref_normal:.4f}; "
      f"posterior N({float(post_n.mean()):.4f}, {float(post_n.tau2):.5f}) vs "
      f"N({mu_n:.4f}, {tau2_n:.5f}); max predictive error {pred_err:.1e}")

# %% [markdown]
# ## 2. One observation: the MLE predicts probability 0
#
# One flip, $\mathbf{X} = \{1\}$. The MLE is $\hat\theta = k/n = 1$: it says the coin *never* lands 0, and the
# log loss of a later 0 is $-\log(1 - \hat\theta) = +\infty$. With the prior $\mathrm{Beta}(2, 2)$, MAP gives
# $\theta^* = (k + a - 1)/(n + a + b - 2) = 2/3$ and the predictive $p(x = 1|\mathbf{X}) = (k + a)/(n + a + b) = 3/5$:
# both finite. The same happens with one digit label: the MLE gives the nine unseen classes probability 0.

# %%
one_flip = np.array([1])
theta_mle, theta_map = float(coin.mle(one_flip)), float(coin.map(one_flip))
zero = np.array([0])
loss_mle = -float(coin.plugin_log_prob(theta_mle, zero)[0])
loss_map = -float(coin.plugin_log_prob(theta_map, zero)[0])
loss_pred = -float(coin.posterior_predictive_log_prob(one_flip, zero)[0])
print(f"after one flip x=1:  theta_MLE = {theta_mle}, theta_MAP = {theta_map:.4f}, "
      f"p(x=1|X) = {math.exp(float(coin.posterior_predictive_log_prob(one_flip, np.array([1]))[0])):.4f}")
print(f"log loss of a 0:     MLE {loss_mle}   MAP {loss_map:.4f}   predictive {loss_pred:.4f}")

one_label = labels[:1]
unseen = np.array([c for c in range(10) if c != one_label[0]])
dice_mle_loss = -np.asarray(dice.plugin_log_prob(dice.mle(one_label), unseen))
dice_pred_loss = -np.asarray(dice.posterior_predictive_log_prob(one_label, unseen))
print(f"after one digit label ({one_label[0]}): MLE log loss of the other classes "
      f"{dice_mle_loss[:3]}..., predictive {dice_pred_loss[0]:.4f} (= log 11)")

grid = np.linspace(0.0, 1.0, 401)
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(grid, stats.beta(2, 2).pdf(grid), "--", color="gray", label="prior Beta(2, 2)")
ax.plot(grid, np.exp(np.asarray(coin.posterior(one_flip).log_prior(grid))),
        label="posterior Beta(3, 2) after x = 1")
for value, name, style in [(theta_mle, "MLE = 1", "r:"), (theta_map, "MAP = 2/3", "g-."),
                           (float(coin.posterior(one_flip).mean()), "predictive p(1|X) = 3/5", "b:")]:
  ax.axvline(value, linestyle=style[1:], color=style[0], label=name)
ax.set_xlabel(r"$\theta = p(x = 1)$")
ax.set_ylabel("density")
ax.set_title("One flip: the MLE sits on the boundary")
ax.legend(fontsize=8, loc="upper left")
plt.show()

# %% [markdown]
# ## 3. Predictive vs MAP plug-in as $n$ grows
#
# For each of 4,000 trials draw $\theta^* \sim \mathrm{Beta}(2, 2)$ (the prior is then the truth), $n$ flips
# from it, and score each predictor $q$ by its **expected** held-out log loss
# $-\theta^* \log q(1) - (1 - \theta^*) \log q(0)$ (exact, no held-out sampling noise), minus the entropy
# $H(\theta^*)$ (the loss of the truth). The posterior predictive is the Bayes-optimal predictor here,
# so its average excess loss is the smallest; the gap to the MAP plug-in closes like $1/n$. The MLE's
# average is $+\infty$ whenever some trial's flips all agree; we show how often that happens.

# %%
NS = (1, 2, 3, 5, 10, 20, 50, 100, 300, 1000)
TRIALS = 4000


@jax.jit
def excess_losses(key):
  """[len(NS), TRIALS] excess log loss (nats) of predictive, MAP and MLE plug-ins."""
  k_theta, k_x = jax.random.split(key)
  theta_star = jax.random.beta(k_theta, 2.0, 2.0, (TRIALS,))
  stream = jax.vmap(lambda k, t: coin.sample(k, t, (max(NS),)))(
      jax.random.split(k_x, TRIALS), theta_star)                         # [T, max n]
  both = jnp.array([0, 1])
  expected = lambda logq, t: -(t * logq[1] + (1 - t) * logq[0])
  out = {"predictive": [], "MAP": [], "MLE": []}
  for n in NS:                                                           # static: one program
    def one(x, t, n=n):
      h = coin.entropy(t)
      return (expected(coin.posterior_predictive_log_prob(x[:n], both), t) - h,
              expected(coin.plugin_log_prob(coin.map(x[:n]), both), t) - h,
              expected(coin.plugin_log_prob(coin.mle(x[:n]), both), t) - h)
    pred, map_, mle = jax.vmap(one)(stream, theta_star)
    out["predictive"].append(pred), out["MAP"].append(map_), out["MLE"].append(mle)
  return {name: jnp.stack(v) for name, v in out.items()}


losses = {name: np.asarray(v, np.float64) for name, v in excess_losses(KEY_CURVE).items()}
diff = losses["MAP"] - losses["predictive"]                          # paired, > 0: predictive wins
diff_mean, diff_se = diff.mean(1), diff.std(1, ddof=1) / math.sqrt(TRIALS)
mle_inf = np.mean(~np.isfinite(losses["MLE"]), axis=1)
print(" n    predictive     MAP   MAP-pred (se)    MLE inf fraction")
for i, n in enumerate(NS):
  print(f"{n:4d}   {losses['predictive'][i].mean():.5f}   {losses['MAP'][i].mean():.5f}   "
        f"{diff_mean[i]:.5f} ({diff_se[i]:.5f})   {mle_inf[i]:.3f}")

fig, axes = plt.subplots(1, 3, figsize=(15, 4))
ax = axes[0]
for name, style in [("predictive", "o-"), ("MAP", "s--")]:
  ax.loglog(NS, losses[name].mean(1), style, label=f"{name}")
finite = np.isfinite(losses["MLE"])
has_finite = finite.any(1)                                      # n = 1: no trial is finite
mle_finite_mean = (np.where(finite, losses["MLE"], 0.0).sum(1)[has_finite]
                   / finite.sum(1)[has_finite])
ax.loglog(np.array(NS)[has_finite], mle_finite_mean, "^:", color="gray",
          label="MLE (trials with finite loss only)")
ax.loglog(NS, 0.5 / np.array(NS), color="k", lw=0.7, label="1 / (2n)")
ax.set_xlabel("number of observations n")
ax.set_ylabel("excess held-out log loss (nats)")
ax.set_title(r"Average over $\theta^* \sim$ Beta(2, 2)")
ax.legend(fontsize=8)
ax = axes[1]
ax.errorbar(NS, diff_mean, yerr=2 * diff_se, fmt="o-", capsize=3)
ax.axhline(0.0, color="k", lw=0.7)
ax.set_xscale("log")
ax.set_xlabel("number of observations n")
ax.set_ylabel("MAP minus predictive (nats), ± 2 se")
ax.set_title("Paired gap: > 0 where the predictive wins")
ax = axes[2]
ax.semilogx(NS, mle_inf, "^-", color="gray")
ax.set_xlabel("number of observations n")
ax.set_ylabel("fraction of trials")
ax.set_title("MLE: infinite log loss (all n flips agree)")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## The claims, asserted
#
# * posterior, MAP, evidence and predictive agree with SciPy / numerical integration for the three models;
# * after one observation the MLE's log loss on the other outcome is $+\infty$, MAP's and the predictive's are finite
#   ($\log 3$ and $\log(5/2)$ for the coin);
# * the posterior predictive's average excess log loss is below the MAP plug-in's at every $n$ (strictly, by many
#   standard errors, for small $n$), both shrink towards 0 as $n$ grows, and the MLE is infinite in a
#   fraction of trials that vanishes as $n$ grows.

# %%
for name, (ours, ref) in coin_checks.items():
  assert abs(ours - ref) < 1e-5 * max(1.0, abs(ref)), (name, ours, ref)
assert log_prior_err < 1e-4
assert abs(log_ev_dir - ref_dir) < 1e-3, (log_ev_dir, ref_dir)
assert abs(log_ev_normal - ref_normal) < 1e-4, (log_ev_normal, ref_normal)
assert abs(float(post_n.mean()) - mu_n) < 1e-5 and abs(float(post_n.tau2) - tau2_n) < 1e-7
assert pred_err < 1e-5

assert theta_mle == 1.0 and loss_mle == math.inf
assert abs(loss_map - math.log(3.0)) < 1e-6 and abs(loss_pred - math.log(5 / 2)) < 1e-6
assert np.all(np.isinf(dice_mle_loss)) and np.allclose(dice_pred_loss, math.log(11.0))

assert np.all(diff_mean > -3 * diff_se), (diff_mean, diff_se)
small = np.array(NS) <= 20
assert np.all(diff_mean[small] > 5 * diff_se[small]), (diff_mean, diff_se)
assert losses["predictive"][-1].mean() < 0.01 * losses["predictive"][0].mean()
assert mle_inf[0] == 1.0 and mle_inf[-1] < 0.01 and np.all(np.diff(mle_inf) <= 0.01)
print("all claims hold")
