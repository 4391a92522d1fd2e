"""Comparing models by their evidence: the Bayes factor of a point null against a
conjugate model of ``vae_jax.classical.bayes``.

The lecture's summary: Bayesian inference lets one compare models' complexity.
The evidence p(X | H) = int p(X | theta) p(theta | H) d theta pays for every
free parameter (the Occam factor), so a simpler model wins when the data do not
need the freedom; ``ppca.log_evidence`` (Minka, 2000) and ``gmm.bic`` do the same
for PPCA's latent dimension and the mixture's number of components.
"""

from __future__ import annotations

import jax

from vae_jax.classical.bayes import BetaBernoulli, DirichletCategorical, NormalNormal
from vae_jax.errors import UserError

Array = jax.Array


def log_bayes_factor(model, theta0, x) -> Array:
  """log BF_01 = log p(X | H0) - log p(X | H1) of a point null against a conjugate model.

  H0 fixes theta = theta0 (no free parameter); H1 is ``model``, theta drawn from
  its prior. Both evidences are closed-form:

    log p(X | H0) = log p(X | theta0)                        (``model.log_likelihood``)
    log p(X | H1) = log int p(X | theta) p(theta) d theta    (``model.log_evidence``).

  For the coin, theta0 = 1/2 against Beta(a, b):
    log BF_01 = -N log 2 - log B(a + k, b + N - k) + log B(a, b).
  Positive favours H0. With equal prior odds, p(H0 | X) = sigmoid(log BF_01).
  As N grows it tends to +inf like log(N)/2 when H0 is true (the Occam factor
  of H1's free parameter) and to -inf like -N KL(theta* || theta0) when not.

  Args:
    model: a conjugate model of this module (``BetaBernoulli``,
      ``DirichletCategorical``, ``NormalNormal``): H1.
    theta0: H0's parameter, of the shape ``model.log_likelihood`` takes.
    x: [N] observations, as the model's methods take them.

  Returns:
    Shape [], in nats (0 for N = 0).

  Raises:
    UserError: ``model`` is not one of the three, or theta0 / x are not what it takes.
  """
  if not isinstance(model, (BetaBernoulli, DirichletCategorical, NormalNormal)):
    raise UserError(f"model must be a conjugate model of vae_jax.classical.bayes (BetaBernoulli, "
                    f"DirichletCategorical or NormalNormal), got {type(model).__name__}.")
  return model.log_likelihood(theta0, x) - model.log_evidence(x)
