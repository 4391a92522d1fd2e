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
# # Part 6 — Amortized inference and its gaps
#
# For any $q(\mathbf{z})$ the lecture's identity splits the log-likelihood into the
# ELBO and the KL to the true posterior:
#
# $$\log p(\mathbf{x}|\boldsymbol{\theta}) = \mathcal{L}(q,\boldsymbol{\theta}) + KL(q(\mathbf{z})||p(\mathbf{z}|\mathbf{x},\boldsymbol{\theta})) \geq \mathcal{L}(q,\boldsymbol{\theta}).$$
#
# The E-step $q(\mathbf{z}) = \arg\max_q \mathcal{L}(q, \boldsymbol\theta^*) = p(\mathbf{z}|\mathbf{x}, \boldsymbol\theta^*)$ is intractable
# and would be different for each object $\mathbf{x}$. **Amortized** variational inference restricts
# $q$ to a parametric class $q(\mathbf{z}|\mathbf{x}, \phi)$: one encoder predicts every example's $q$.
# Two things then keep the ELBO below $\log p(\mathbf{x})$ (Cremer et al., 2018):
#
# $$\log p(\mathbf{x}) - \mathcal{L}(q_\phi) = \underbrace{\log p(\mathbf{x}) - \mathcal{L}(q^*)}_{\text{approximation gap}} + \underbrace{\mathcal{L}(q^*) - \mathcal{L}(q_\phi)}_{\text{amortization gap}},$$
#
# where $q^*$ is the best member of $q$'s family for this one $\mathbf{x}$ (a per-example,
# non-amortized E-step: `vae_jax.amortization.optimize_local`). A richer family (planar or
# IAF flows on top of the Gaussian) can shrink the first gap; only a better encoder shrinks the second.
#
# With two latent dimensions ($L = 2$) $p(\mathbf{z}|\mathbf{x}) \propto p(\mathbf{x}|\mathbf{z})p(\mathbf{z})$ can be normalized by quadrature
# on a grid, and the KL term of the identity computed directly.

# %%
import tempfile

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from experiments import amortization as amortization_experiment
from experiments.configs import amortization as amortization_config
from vae_jax import amortization, evaluation, tasks, trainer

root = jax.random.key(0)
k_gaps, k_elbo, k_iw = (jax.random.fold_in(root, i) for i in range(3))

# %% [markdown]
# ## 1. One VAE per posterior family, $L = 2$
#
# The amortization experiment's config with its `tiny` and `l2` variants (8x8 digits,
# an MLP with 32 hidden units, two latents). For each family the experiment's own
# `family_config` sets `model.posterior` (and 2 flow maps for `planar` and `iaf`);
# each VAE trains through the library's trainer in a temporary workdir.

# %%
config = amortization_config.get_config("tiny,l2")
config.train.update(num_steps=300, eval_every=300, checkpoint_every=300, log_every=100)
config.eval.iw_samples = 0
FAMILIES = tuple(config.amortization.posteriors)          # gaussian, planar, iaf
ds = tasks.load_data(config)
trained = {}
with tempfile.TemporaryDirectory() as workdir:
  for f in FAMILIES:
    fc = amortization_experiment.family_config(config, f)
    task = tasks.build_task(fc, ds.image_shape, len(ds.train_x))
    result = trainer.train(task, fc, ds, f"{workdir}/vae_{f}")
    trained[f] = (task.model, jax.device_get(result.state.params))
    print(f"{f:8s} held-out -ELBO {result.final_eval['neg_elbo']:.2f} nats "
          f"after {int(result.state.step)} steps")

# %% [markdown]
# ## 2. The gaps, per family
#
# `amortization.gaps` starts each example's $q^*$ at the encoder's output and runs Adam on
# its ELBO with the decoder fixed; $\log p(\mathbf{x})$ is the importance-weighted estimate with
# $q^*$ as proposal. Settings: the `tiny` variant's (20 held-out images, 50 local steps,
# 50 samples per ELBO and IW estimate), the same key for every family.

# %%
a = config.amortization
x_gap = jnp.asarray(ds.eval_x[:int(a.examples)])
gap_results, summary = {}, {}
for f in FAMILIES:
  model, params = trained[f]
  g = amortization.gaps(params, x_gap, k_gaps, model=model, local_steps=int(a.local_steps),
                        local_learning_rate=float(a.local_lr),
                        eval_samples=int(a.eval_samples), iw_samples=int(a.iw_samples))
  gap_results[f] = g
  summary[f] = {k: evaluation.mean_and_stderr(np.asarray(g[k], np.float64))
                for k in amortization_experiment.GAP_KEYS}
print(f"{'family':8s} {'amortized':>10s} {'optimized':>10s} {'IW log p':>10s} "
      f"{'amort. gap':>16s} {'approx. gap':>16s}")
for f in FAMILIES:
  s = summary[f]
  print(f"{f:8s} {s['amortized_elbo'][0]:10.2f} {s['optimized_elbo'][0]:10.2f} "
        f"{s['log_likelihood_iw'][0]:10.2f} "
        f"{s['amortization_gap'][0]:8.3f} ± {s['amortization_gap'][1]:.3f} "
        f"{s['approximation_gap'][0]:8.3f} ± {s['approximation_gap'][1]:.3f}")

# %%
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
xs = np.arange(len(FAMILIES))
approx = np.array([summary[f]["approximation_gap"] for f in FAMILIES])   # [F, 2] mean, se
amort = np.array([summary[f]["amortization_gap"] for f in FAMILIES])
ax1.bar(xs, approx[:, 0], 0.6, yerr=approx[:, 1], capsize=4, color="C1",
        label="approximation gap  log p(x) - ELBO(q*)")
ax1.bar(xs, amort[:, 0], 0.6, bottom=approx[:, 0], yerr=amort[:, 1], capsize=4, color="C2",
        label="amortization gap  ELBO(q*) - ELBO(q_φ)")
ax1.set_xticks(xs, FAMILIES)
ax1.set_ylabel("nats per example (mean ± s.e.)")
ax1.set_title(f"inference gap on {len(x_gap)} held-out digits, L = 2")
ax1.legend(fontsize=8)
ax1.grid(alpha=0.3, axis="y")
for i, f in enumerate(FAMILIES):
  trace = np.asarray(gap_results[f]["trace"])
  smooth = np.convolve(trace, np.ones(5) / 5, mode="valid")
  ax2.plot(trace, color=f"C{i}", alpha=0.25, lw=0.8)
  ax2.plot(np.arange(4, len(trace)), smooth, color=f"C{i}", label=f"{f} (5-step mean)")
  ax2.axhline(summary[f]["amortized_elbo"][0], color=f"C{i}", ls=":", lw=1)
ax2.set(xlabel="per-example optimization step (8 draws each; decoder fixed)",
        ylabel="mean ELBO estimate (dotted: amortized)",
        title="the non-amortized E-step from the encoder's q")
ax2.legend(fontsize=8)
ax2.grid(alpha=0.3)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 3. The true posterior beside $q$, and the identity on a grid
#
# For the Gaussian family, $q(\mathbf{z}|\mathbf{x})$ has a density at every $\mathbf{z}$, so on a grid around $q$
# (`experiments.amortization.posterior_grid`: $\log p(\mathbf{x}, \mathbf{z})$ and $\log p(\mathbf{x})$ by quadrature)
# everything in the identity is a sum:
#
# $$p(\mathbf{z}|\mathbf{x}) = \frac{p(\mathbf{x}|\mathbf{z})p(\mathbf{z})}{\int p(\mathbf{x}|\mathbf{z})p(\mathbf{z})d\mathbf{z}}, \qquad
#   KL(q||p(\mathbf{z}|\mathbf{x})) = \int q(\mathbf{z}) \log \frac{q(\mathbf{z})}{p(\mathbf{z}|\mathbf{x})} d\mathbf{z}.$$
#
# The grid KL is an independent check of the library's Monte-Carlo ELBO
# (`amortization.elbo_estimate`, 4,000 draws) and of its importance-weighted $\log p(\mathbf{x})$
# (`amortization.iw_log_likelihood`, 2,000 draws).

# %%
model, params = trained["gaussian"]
picks = np.array([0, 7, 13])
x_pick = jnp.asarray(ds.eval_x[picks])
q_all = model.apply(params, x_pick, method="encode")
elbo_mc = np.asarray(amortization.elbo_estimate(params, x_pick, k_elbo, q_all, model=model,
                                                num_samples=4000, chunk=1000), np.float64)
log_px_iw = np.asarray(amortization.iw_log_likelihood(params, x_pick, k_iw, q_all, model=model,
                                                      num_samples=2000, chunk=1000), np.float64)
rows = []
for r, i in enumerate(picks):
  loc = np.asarray(q_all.loc[r], np.float64)
  scale = np.exp(np.asarray(q_all.log_scale[r], np.float64))
  half = float(max(8 * scale.max(), 2.0))
  z1, z2, log_joint, log_px = amortization_experiment.posterior_grid(
      params, ds.eval_x[i], None, model=model, half_width=half, center=loc, num=161)
  cell = (z1[1] - z1[0]) * (z2[1] - z2[0])
  log_post = log_joint - log_px                                            # [G, G]
  grid = np.stack(np.meshgrid(z1, z2), -1).astype(np.float32)             # [G, G, 2]
  q_r = jax.tree_util.tree_map(lambda t: t[r], q_all)
  log_q = np.asarray(q_r.log_prob(jnp.asarray(grid)), np.float64)         # [G, G]
  q_mass = float(np.exp(log_q).sum() * cell)
  kl_grid = float(np.sum(np.exp(log_q) * (log_q - log_post)) * cell)
  rows.append(dict(i=int(i), z1=z1, z2=z2, log_post=log_post, log_q=log_q, log_px=log_px,
                   post_mass=float(np.exp(log_post).sum() * cell), q_mass=q_mass,
                   kl_grid=kl_grid, elbo=elbo_mc[r], iw=log_px_iw[r]))
  print(f"image {int(i):3d}: ∫p(z|x)dz = {rows[-1]['post_mass']:.4f}, ∫q dz = {q_mass:.4f}, "
        f"log p(x) quad {log_px:.3f} / IW {log_px_iw[r]:.3f}, "
        f"KL grid {kl_grid:.3f} vs log p(x) - ELBO {log_px - elbo_mc[r]:.3f}")

# %% [markdown]
# ## Summary: the gaps and the identity, measured
#
# Top: the gaps per family. Bottom: the true posterior (grey) and the Gaussian $q$
# (red contours) for three held-out digits; the KL in each title is the area
# between the two in the identity's sense, $\log p(\mathbf{x}) - \mathcal{L}(q)$.
# Asserted: both gaps are non-negative within 3 standard errors for every family; the
# quadrature posterior integrates to 1 and the grid captures $q$'s mass; the quadrature $\log p(\mathbf{x})$
# agrees with the library's IW estimate within 0.1 nats; $KL(q||p(\mathbf{z}|\mathbf{x})) \ge 0$ on the grid and equals
# $\log p(\mathbf{x}) - \mathcal{L}(q)$ within 0.05 nats.

# %%
fig = plt.figure(figsize=(12, 7.5))
top = fig.add_subplot(2, 1, 1)
total = approx[:, 0] + amort[:, 0]
top.barh(xs, approx[:, 0], xerr=approx[:, 1], color="C1", capsize=3, label="approximation gap")
top.barh(xs, amort[:, 0], left=approx[:, 0], xerr=amort[:, 1], color="C2", capsize=3,
         label="amortization gap")
top.set_yticks(xs, [f"{f}\nIW log p(x) {summary[f]['log_likelihood_iw'][0]:.2f}"
                    for f in FAMILIES], fontsize=8)
top.set_xlabel("nats per example: log p(x) - ELBO(q_φ), split in two")
top.legend(fontsize=8, loc="lower right")
top.grid(alpha=0.3, axis="x")
for c, row in enumerate(rows):
  ax = fig.add_subplot(2, 3, 4 + c)
  ax.contourf(row["z1"], row["z2"], np.exp(row["log_post"]), levels=12, cmap="Greys")
  ax.contour(row["z1"], row["z2"], np.exp(row["log_q"]), levels=5, colors="C3",
             linewidths=1.0)
  loc, scale = np.asarray(q_all.loc[c]), np.exp(np.asarray(q_all.log_scale[c]))
  reach = np.maximum(4.5 * scale.max(), 1.0)
  ax.set_xlim(loc[0] - reach, loc[0] + reach)
  ax.set_ylim(loc[1] - reach, loc[1] + reach)
  ax.set_title(f"image {row['i']}: KL(q || p(z|x)) = {row['kl_grid']:.3f}", fontsize=9)
  ax.set_xlabel("z1")
  if c == 0:
    ax.set_ylabel("z2")
fig.suptitle("amortized inference on 8x8 digits, L = 2: gaps per family; true posterior "
             "(grey) vs Gaussian q(z|x) (red)", fontsize=10)
fig.tight_layout()
plt.show()

for f in FAMILIES:
  for k in ("amortization_gap", "approximation_gap"):
    mean, se = summary[f][k]
    assert mean >= -3 * se - 1e-3, (f, k, mean, se)
for row in rows:
  i = row["i"]
  assert abs(row["post_mass"] - 1) < 1e-6, i          # normalized by quadrature
  assert abs(row["q_mass"] - 1) < 1e-2, i              # the grid holds q's mass
  # Quadrature vs importance sampling (2,000 draws from q: a lower bound in expectation).
  assert abs(row["log_px"] - row["iw"]) < 0.1, (i, row["log_px"], row["iw"])
  assert row["kl_grid"] >= 0, i
  assert abs(row["kl_grid"] - (row["log_px"] - row["elbo"])) < 0.05, (i, row["kl_grid"])
