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
# With a conjugate prior all of this is in closed form: `vae_jax.classical.bayes` has `BetaBernoulli`,
# `DirichletCategorical` and `NormalNormal`. This notebook
#
# 1. checks the closed forms (posterior, evidence, predictive) against `scipy.stats` and numerical integration;
# 2. shows the $n = 1$ failure of the MLE: after one flip it predicts the other outcome with
#    probability 0 (infinite log loss), while MAP and the predictive stay finite;
# 3. compares the held-out log loss of the posterior predictive and of the MAP plug-in as $n$ grows:
#    each one's excess loss falls as $1/(2n)$, their difference as $1/n^2$.

# %%
import math

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from scipy import integrate, special, stats

from vae_jax.classical import bayes
from vae_jax.classical import evidence
from vae_jax.data import load_arrays

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
labels = load_arrays("digits").train_y[:200]                # [200] in 0..9
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
# so its average excess loss is the smallest.
#
# **The rates.** Each excess loss falls as $1/(2n)$: an estimate $\hat\theta$ off by $\delta$ costs
# $KL \approx \delta^2 / (2\theta^*(1-\theta^*))$, and $\mathbb{E}\,\delta^2 \approx \theta^*(1-\theta^*)/n$. Their **difference** falls as $1/n^2$,
# an order faster: with $k$ ones the predictive is $(k + 2)/(n + 4)$ and MAP is $(k + 1)/(n + 2)$, which differ
# by $(n - 2k)/((n + 2)(n + 4)) \approx (1 - 2\theta^*)/n$, and averaging the KL between them over the prior gives
# $1/n^2$. Given the $k$ ones, $\theta^*$ averages to the predictive $(k+2)/(n+4)$, so the average gap is exactly
# $\mathbb{E}_k\, KL\big(\mathrm{Bern}(\tfrac{k+2}{n+4}) \,\|\, \mathrm{Bern}(\tfrac{k+1}{n+2})\big)$ with $k \sim \mathrm{BetaBinomial}(n, 2, 2)$: a sum over $k$, computed below
# with SciPy's beta-binomial as the **exact reference** for the Monte-Carlo (and likewise each excess loss).
#
# The Monte-Carlo difference is paired (the same flips for both predictors), but its noise falls only
# as $n^{-3/2}$ (the predictors' errors, $\propto n^{-1/2}$, times their difference, $\propto 1/n$), slower than the gap:
# 4,000 trials resolve the gap up to $n = 100$, and the exact sums settle the larger $n$.
# The MLE's average is $+\infty$ whenever some trial's flips all agree, which happens with probability
# $\mathbb{E}[\theta^n + (1-\theta)^n] = 12/((n+2)(n+3))$ under the prior.

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
  return {name: jnp.stack(v) for name, v in out.items()} | {"entropy": coin.entropy(theta_star)}


losses = {name: np.asarray(v, np.float64) for name, v in excess_losses(KEY_CURVE).items()}
entropy = losses.pop("entropy")                                      # [T] H(theta*) of each trial


def mc_summary(losses):
  """Monte-Carlo means and s.e. over trials: predictive, MAP, their paired gap; MLE's inf fraction."""
  out = {name: (losses[name].mean(1), losses[name].std(1, ddof=1) / math.sqrt(TRIALS))
         for name in ("predictive", "MAP")}
  gap = losses["MAP"] - losses["predictive"]                          # paired, > 0: predictive wins
  out["gap"] = (gap.mean(1), gap.std(1, ddof=1) / math.sqrt(TRIALS))
  out["mle_inf"] = np.mean(~np.isfinite(losses["MLE"]), axis=1)
  return out


# The exact reference: sums over k ~ BetaBinomial(n, 2, 2) (SciPy), no library code.
H_PRIOR = integrate.quad(lambda t: -stats.beta(2, 2).pdf(t) * (special.xlogy(t, t)
                                                              + special.xlogy(1 - t, 1 - t)), 0, 1)[0]


def exact_excess(n):
  """Exact average excess loss of the predictive and of MAP, and their gap (a KL), at n flips."""
  k = np.arange(n + 1)
  weight = stats.betabinom(n, 2, 2).pmf(k)
  pred, map_ = (k + 2) / (n + 4), (k + 1) / (n + 2)                  # E[theta*|k] and the mode
  cross = lambda q: -(pred * np.log(q) + (1 - pred) * np.log(1 - q))  # E[loss of q | k]
  kl = pred * np.log(pred / map_) + (1 - pred) * np.log((1 - pred) / (1 - map_))
  return np.array([weight @ cross(pred) - H_PRIOR, weight @ cross(map_) - H_PRIOR, weight @ kl])


exact = np.array([exact_excess(n) for n in NS])                      # [len(NS), 3]
mle_inf_exact = 12.0 / ((np.array(NS) + 2.0) * (np.array(NS) + 3.0))
N_FAR = np.array([10**3, 10**4, 10**5, 10**6])                       # three decades, exact only
exact_far = np.array([exact_excess(n) for n in N_FAR])
mc = mc_summary(losses)
print(" n   predictive (exact)      MAP (exact)        MAP - pred (exact)        n^2 x gap   MLE inf (exact)")
for i, n in enumerate(NS):
  print(f"{n:4d}  {mc['predictive'][0][i]:.5f} ({exact[i, 0]:.5f})  {mc['MAP'][0][i]:.5f} ({exact[i, 1]:.5f})  "
        f"{mc['gap'][0][i]:+.2e} ± {mc['gap'][1][i]:.1e} ({exact[i, 2]:.2e})  {n * n * exact[i, 2]:6.3f}"
        f"   {mc['mle_inf'][i]:.4f} ({mle_inf_exact[i]:.4f})")
for n, (p, m, g) in zip(N_FAR, exact_far):
  print(f"exact at n = {n:7d}: n x predictive excess {n * p:.4f}, n x MAP excess {n * m:.4f}, "
        f"n^2 x gap {n * n * g:.4f}")


def loglog_slope(ns, values, stderr):
  """Slope of log(values) against log(n), weighted by the values' relative s.e., and its s.e."""
  coef, cov = np.polyfit(np.log(np.asarray(ns, np.float64)), np.log(values), 1,
                         w=values / stderr, cov="unscaled")
  return float(coef[0]), float(np.sqrt(cov[0, 0]))


def exact_slope(ns, values):
  """Slope of log(values) against log(n) (exact values: no uncertainty)."""
  return float(np.polyfit(np.log(np.asarray(ns, np.float64)), np.log(values), 1)[0])


ns = np.array(NS)
FIT_EXCESS, FIT_GAP = ns >= 50, (ns >= 10) & (ns <= 100)             # where the Monte-Carlo resolves
slopes = {"exact, n = 1e3..1e6": {name: exact_slope(N_FAR, exact_far[:, j])
                                   for j, name in enumerate(("predictive", "MAP", "gap"))}}
slopes["Monte-Carlo"] = {
    "predictive": loglog_slope(ns[FIT_EXCESS], *(v[FIT_EXCESS] for v in mc["predictive"])),
    "MAP": loglog_slope(ns[FIT_EXCESS], *(v[FIT_EXCESS] for v in mc["MAP"])),
    "gap": loglog_slope(ns[FIT_GAP], *(v[FIT_GAP] for v in mc["gap"]))}
slopes["exact, same n"] = {"predictive": exact_slope(ns[FIT_EXCESS], exact[FIT_EXCESS, 0]),
                           "MAP": exact_slope(ns[FIT_EXCESS], exact[FIT_EXCESS, 1]),
                           "gap": exact_slope(ns[FIT_GAP], exact[FIT_GAP, 2])}
print("log-log slopes (Monte-Carlo: n = 50..1000 for the excess losses, 10..100 for the gap, ± s.e.):")
for name in ("predictive", "MAP", "gap"):
  m, se = slopes["Monte-Carlo"][name]
  print(f"  {name:10s} Monte-Carlo {m:+.3f} ± {se:.3f}   exact at the same n {slopes['exact, same n'][name]:+.3f}"
        f"   exact over n = 1e3..1e6 {slopes['exact, n = 1e3..1e6'][name]:+.4f}")

# %% [markdown]
# Left: each excess loss against $n$ (Monte-Carlo points ± s.e., exact sums as lines), falling as $1/(2n)$.
# Middle: the paired gap times $n^2$, so that a $1/n^2$ rate is flat: Monte-Carlo ± 2 s.e. (the bars grow
# with $n$: the noise falls as $n^{-3/2}$, the gap as $n^{-2}$) and the exact sums, which approach 1.
# Right: how often the MLE predicts probability 0 for an outcome the truth allows.

# %%
fig, axes = plt.subplots(1, 3, figsize=(15, 4))
ax = axes[0]
n_line = np.unique(np.geomspace(1, 1000, 60).astype(int))
exact_line = np.array([exact_excess(n) for n in n_line])
for j, (name, style) in enumerate([("predictive", "o"), ("MAP", "s")]):
  ax.errorbar(NS, mc[name][0], yerr=mc[name][1], fmt=style, color=f"C{j}", ms=4, capsize=2,
              label=f"{name}, Monte-Carlo")
  ax.loglog(n_line, exact_line[:, j], color=f"C{j}", lw=1, label=f"{name}, exact")
finite = np.isfinite(losses["MLE"])
has_finite = finite.any(1)                                      # n = 1: no trial is finite
mle_finite_mean = (np.where(finite, losses["MLE"], 0.0).sum(1)[has_finite]
                   / finite.sum(1)[has_finite])
ax.loglog(np.array(NS)[has_finite], mle_finite_mean, "^:", color="gray",
          label="MLE (trials with finite loss only)")
ax.loglog(NS, 0.5 / np.array(NS), color="k", lw=0.7, ls="--", label="1 / (2n)")
ax.set_xlabel("number of observations n")
ax.set_ylabel("excess held-out log loss (nats)")
ax.set_title(r"Average over $\theta^* \sim$ Beta(2, 2)")
ax.legend(fontsize=7)
ax = axes[1]
n2 = ns.astype(np.float64) ** 2
ax.errorbar(ns, n2 * mc["gap"][0], yerr=2 * n2 * mc["gap"][1], fmt="o", capsize=3,
            label="Monte-Carlo, ± 2 paired s.e.")
ax.semilogx(n_line, n_line.astype(np.float64) ** 2 * exact_line[:, 2], color="k", lw=1,
            label="exact (beta-binomial sum)")
ax.axhline(1.0, color="gray", ls=":", lw=1, label="1 / n² asymptote")
ax.axhline(0.0, color="k", lw=0.5)
ax.set_ylim(-1.5, 2.5)
ax.set_xlabel("number of observations n")
ax.set_ylabel("n² × (MAP minus predictive), nats")
ax.set_title("Paired gap × n²: flat where the gap goes as 1/n²")
ax.legend(fontsize=8, loc="lower left")
ax = axes[2]
ax.loglog(NS, mc["mle_inf"], "^", color="gray", label="Monte-Carlo")
ax.loglog(n_line, 12.0 / ((n_line + 2.0) * (n_line + 3.0)), color="k", lw=1,
          label="12 / ((n + 2)(n + 3))")
ax.set_xlabel("number of observations n")
ax.set_ylabel("fraction of trials")
ax.set_title("MLE: infinite log loss (all n flips agree)")
ax.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 4. Choosing a model by its evidence: is the coin fair?
#
# The lecture's summary says Bayesian inference lets us "compare models' complexity". Two models of the
# same flips: $H_0$, the **fair coin**, $\theta = 1/2$ with no free parameter, and $H_1$, **Beta–Bernoulli**,
# $\theta \sim \mathrm{Beta}(1, 1)$. Each model's evidence is the probability it gave the data before seeing them:
#
# $$p(\mathbf{X}|H_0) = 2^{-n}, \qquad p(\mathbf{X}|H_1) = \int_0^1 \theta^k (1-\theta)^{n-k} d\theta = B(1 + k, 1 + n - k),$$
#
# and the **Bayes factor** $BF_{01} = p(\mathbf{X}|H_0) / p(\mathbf{X}|H_1)$ (with even prior odds, $p(H_0|\mathbf{X}) = \sigma(\log BF_{01})$)
# is `evidence.log_bayes_factor(model, 0.5, x)`. $H_1$ spreads its probability over every bias, so it pays an
# **Occam factor**: when the coin is fair, Laplace's method gives
#
# $$\mathbb{E}\log BF_{01} \approx -n\,KL(\theta^*\|\tfrac12) + \tfrac12\log\frac{n}{2\pi\theta^*(1-\theta^*)} - \log p(\theta^*|H_1) - \tfrac12,$$
#
# so the evidence for the true, simpler model grows only like $\frac12\log n$, while a biased coin
# ($KL > 0$) is exposed at a rate linear in $n$. Below: the closed form against quadrature, then 1,000 simulated
# streams of a fair coin and of a coin with $\theta^* = 0.6$, against the **exact** expectation
# $\sum_k \mathrm{Binomial}(k|n, \theta^*) \log BF_{01}(k)$ (SciPy, no library code).

# %%
KEY_FACTOR = jax.random.fold_in(root, 3)
FAIR, BIASED = 0.5, 0.6
NS_BF = (1, 3, 10, 30, 100, 300, 1000, 3000, 10000)
TRIALS_BF = 1000
h1 = bayes.BetaBernoulli(a=1.0, b=1.0)


def quad_log_bf(k, n):
  """log BF_01 with p(X|H1) integrated by scipy.integrate.quad (scaled at its peak)."""
  log_f = lambda t: special.xlogy(k, t) + special.xlog1py(n - k, -t)
  mode = min(max(k / n, 1e-12), 1 - 1e-12)
  value = integrate.quad(lambda t: np.exp(log_f(t) - log_f(mode)), 0, 1, points=[mode],
                         epsabs=0.0, epsrel=1e-12, limit=200)[0]
  return n * math.log(0.5) - (log_f(mode) + math.log(value))


with jax.enable_x64(True):                  # log BF_01 is a difference of O(n) terms
  bf_quad_err = max(
      abs(float(evidence.log_bayes_factor(h1, 0.5, np.r_[np.ones(k), np.zeros(n - k)].astype(int)))
          - quad_log_bf(k, n))
      for n, k in [(1, 0), (10, 3), (100, 50), (1000, 620), (10000, 5040)])
print(f"closed form vs quadrature, five (n, k): max |difference| {bf_quad_err:.1e} nats")


def simulate_log_bf(log_bf_fn, key):
  """{theta*: [len(NS_BF), TRIALS_BF]} log BF_01 of nested prefixes of each trial's flips."""
  out = {}
  with jax.enable_x64(True):
    for i, theta in enumerate((FAIR, BIASED)):
      flips = h1.sample(jax.random.fold_in(key, i), theta, (TRIALS_BF, max(NS_BF)))
      out[theta] = np.stack([np.asarray(jax.vmap(log_bf_fn)(flips[:, :n])) for n in NS_BF])
  return out


def exact_expected_log_bf(n, theta):
  """E log BF_01 under theta*: a sum over k ~ Binomial(n, theta*) with SciPy's beta function."""
  k = np.arange(n + 1)
  return stats.binom(n, theta).pmf(k) @ (n * math.log(0.5) - special.betaln(1 + k, 1 + n - k))


def laplace_log_bf(n, theta):
  kl = theta * math.log(2 * theta) + (1 - theta) * math.log(2 * (1 - theta))
  return -n * kl + 0.5 * np.log(n / (2 * math.pi * theta * (1 - theta))) - 0.5


def bayes_factor_summary(draws):
  """Per coin: Monte-Carlo mean and s.e. over trials, fraction with BF_01 > 1, exact expectation."""
  return {theta: dict(mean=d.mean(1), se=d.std(1, ddof=1) / math.sqrt(TRIALS_BF),
                      favours_fair=(d > 0).mean(1),
                      exact=np.array([exact_expected_log_bf(n, theta) for n in NS_BF]))
          for theta, d in draws.items()}


bf_draws = simulate_log_bf(lambda x: evidence.log_bayes_factor(h1, 0.5, x), KEY_FACTOR)
bf = bayes_factor_summary(bf_draws)
N_BF_FAR = np.array([10**3, 10**4, 10**5, 10**6])                     # exact sums only
bf_far = {theta: np.array([exact_expected_log_bf(n, theta) for n in N_BF_FAR])
          for theta in (FAIR, BIASED)}
bf_fair_slope = float(np.polyfit(np.log(N_BF_FAR), bf_far[FAIR], 1)[0])   # d E log BF_01 / d log n
KL_BIASED = BIASED * math.log(2 * BIASED) + (1 - BIASED) * math.log(2 * (1 - BIASED))
print("   n   fair: mean log BF01 (exact)   P(BF01 > 1)   theta* = 0.6: mean (exact)   P(BF01 > 1)")
for i, n in enumerate(NS_BF):
  f, b = bf[FAIR], bf[BIASED]
  print(f"{n:5d}   {f['mean'][i]:+8.3f} ± {f['se'][i]:.3f} ({f['exact'][i]:+8.3f})   "
        f"{f['favours_fair'][i]:.3f}       {b['mean'][i]:+9.3f} ± {b['se'][i]:.3f} "
        f"({b['exact'][i]:+9.3f})   {b['favours_fair'][i]:.3f}")
print(f"exact, fair coin: slope of E log BF01 against log n over n = 1e3..1e6 = {bf_fair_slope:.4f}; "
      f"theta* = 0.6: E log BF01 / n at n = 1e6 = {bf_far[BIASED][-1] / 1e6:.5f} "
      f"(-KL = {-KL_BIASED:.5f})")

# %% [markdown]
# Left: $\log BF_{01}$ against $n$, the Monte-Carlo mean (points, $\pm 2$ s.e.) on the exact expectation (lines) and
# Laplace's approximation (dotted). Right: how often the evidence prefers the fair coin. At small $n$ the two models
# are indistinguishable and the simpler one is favoured even when it is wrong; the fair coin's support grows slowly,
# the biased coin's case against it quickly.

# %%
fig, axes = plt.subplots(1, 2, figsize=(13, 4.3))
n_line = np.geomspace(1, max(NS_BF), 100)
for j, theta in enumerate((FAIR, BIASED)):
  s = bf[theta]
  label = f"θ* = {theta}" + (" (fair)" if theta == FAIR else "")
  axes[0].errorbar(NS_BF, s["mean"], yerr=2 * s["se"], fmt="o", color=f"C{j}", ms=4, capsize=2,
                   label=f"{label}: Monte-Carlo")
  axes[0].plot(NS_BF, s["exact"], color=f"C{j}", lw=1, label="exact expectation")
  axes[0].plot(n_line, laplace_log_bf(n_line, theta), ":", color=f"C{j}", label="Laplace")
  axes[1].semilogx(NS_BF, s["favours_fair"], "o-", color=f"C{j}", ms=4, label=label)
axes[0].set_xscale("log")
axes[0].set_yscale("symlog", linthresh=1)
axes[0].axhline(0, color="k", lw=0.6)
axes[0].set_xlabel("number of flips n")
axes[0].set_ylabel(r"$\log BF_{01}$ (> 0: the fair coin)")
axes[0].set_title("Fair coin vs Beta(1, 1)–Bernoulli")
axes[0].legend(fontsize=7)
axes[1].set_ylim(-0.03, 1.03)
axes[1].set_xlabel("number of flips n")
axes[1].set_ylabel(r"fraction of trials with $BF_{01} > 1$")
axes[1].set_title("The evidence picks the true model as n grows")
axes[1].legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## The claims, asserted
#
# * posterior, MAP, evidence and predictive agree with SciPy / numerical integration for the three models;
# * after one observation the MLE's log loss on the other outcome is $+\infty$, MAP's and the predictive's are finite
#   ($\log 3$ and $\log(5/2)$ for the coin);
# * the Monte-Carlo averages of both excess losses and of their gap agree with the exact sums within 3 s.e. at every
#   $n$, and the MLE's infinite fraction with $12/((n+2)(n+3))$ within 3 binomial s.e.;
# * the predictive is below the MAP plug-in at every $n$: the exact gap is positive, and the Monte-Carlo gap is
#   above 2 paired s.e. for every $n \le 100$;
# * the rates: over $n = 10^3 \ldots 10^6$ the exact log-log slopes are $-1$ for each excess loss and $-2$ for the gap
#   (within 0.01), with $n \times$ excess $\to 1/2$ and $n^2 \times$ gap $\to 1$ (within 1%); the Monte-Carlo slopes,
#   with their s.e., agree with the exact slopes at the same $n$ within 3 s.e., and the gap's is below $-1$ by more
#   than 3 s.e. (it does not close like $1/n$);
# * choosing by the evidence: `evidence.log_bayes_factor` equals quadrature (to $10^{-9}$ nats); its Monte-Carlo means agree
#   with the exact expectation within 4 s.e. at every $n$ for both coins; the exact expectation is Laplace's within
#   $2/n$ for $n \ge 1000$; for the fair coin it grows like $\frac12 \log n$ (slope within 0.01 over $n = 10^3 \ldots 10^6$),
#   for $\theta^* = 0.6$ it falls like $-n\,KL$ (within 1% at $n = 10^6$); at $n = 10^4$ the evidence prefers the fair coin
#   in at least 97% of the fair trials and in none of the biased ones.

# %%
def check_claims(mc, exact, exact_far, slopes, bf=bf):
  """The notebook's claims (the closed forms first, then the rates, then the Bayes factor)."""
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

  for j, name in enumerate(("predictive", "MAP", "gap")):
    mean, se = mc[name]
    assert np.all(np.abs(mean - exact[:, j]) < 3 * se + 1e-12), (name, mean, exact[:, j], se)
  binomial_se = np.sqrt(mle_inf_exact * (1 - mle_inf_exact) / TRIALS)
  assert np.all(np.abs(mc["mle_inf"] - mle_inf_exact) < 3 * binomial_se + 1e-12), mc["mle_inf"]

  assert np.all(exact[:, 2] > 0) and np.all(exact_far[:, 2] > 0)
  resolved = np.array(NS) <= 100
  assert np.all(mc["gap"][0][resolved] > 2 * mc["gap"][1][resolved]), mc["gap"]

  far = slopes["exact, n = 1e3..1e6"]
  assert abs(far["predictive"] + 1) < 0.01 and abs(far["MAP"] + 1) < 0.01, far
  assert abs(far["gap"] + 2) < 0.01, far
  assert np.allclose(N_FAR[-1] * exact_far[-1, :2], 0.5, rtol=0.01), exact_far[-1]
  assert abs(N_FAR[-1] ** 2 * exact_far[-1, 2] - 1) < 0.01, exact_far[-1]
  for name, (slope, se) in slopes["Monte-Carlo"].items():
    assert abs(slope - slopes["exact, same n"][name]) < 3 * se, (name, slope, se)
  slope, se = slopes["Monte-Carlo"]["gap"]
  assert slope < -1 - 3 * se, ("the gap closes like 1/n", slope, se)

  assert bf_quad_err < 1e-9, bf_quad_err
  for theta, s in bf.items():
    assert np.all(np.abs(s["mean"] - s["exact"]) <= 4 * s["se"] + 1e-12), (theta, s["mean"], s["exact"])
    far = np.array(NS_BF) >= 1000
    assert np.all(np.abs(s["exact"][far] - laplace_log_bf(np.array(NS_BF)[far], theta))
                  < 2 / np.array(NS_BF)[far]), theta
  assert abs(bf_fair_slope - 0.5) < 0.01, bf_fair_slope
  assert abs(bf_far[BIASED][-1] / 1e6 + KL_BIASED) < 0.01 * KL_BIASED
  assert bf[FAIR]["favours_fair"][-1] >= 0.97 and bf[BIASED]["favours_fair"][-1] == 0.0


check_claims(mc, exact, exact_far, slopes)
print("all claims hold")
