"""Variational families and priors: distribution objects, and the parts that build them.

Every posterior q(z|x) and prior p(z) is a pytree of arrays with distrax's
interface (``sample``, ``sample_and_log_prob``, ``log_prob``) plus
``kl_divergence`` / ``kl_per_dim`` where a closed form exists, so every
objective (ELBO, IWAE, the gradient estimators, evaluation, the amortization
gaps) takes any family. The objects:

* ``normal``: ``DiagNormal`` (q), ``StandardNormal`` (p = N(0, I));
* ``discrete``: ``Bernoulli``, ``Categorical`` (the discrete VAE's q, and the
  generic estimators' discrete q);
* ``mixture``: ``DiagNormalMixture`` (the learned priors);
* ``flows``: ``FlowPosterior``, a Gaussian pushed through invertible maps;
* ``hierarchical``: two stochastic layers, q(z1|x) q(z2|z1) and p(z2) p(z1|z2).

The parts a config chooses by name, one module each, found by their registries:

* ``posteriors/<name>.py`` (``model.posterior``): gaussian, planar, iaf, coupling;
* ``priors/<name>.py`` (``model.prior``): standard, mog, vamp.

Each part declares its config keys, validates them and builds itself (a head
that turns the encoder's features into q; a module whose call gives p).
"""

from vae_jax.families.discrete import Bernoulli, Categorical
from vae_jax.families.mixture import DiagNormalMixture
from vae_jax.families.normal import DiagNormal, StandardNormal


def __getattr__(name):
  # The flows build distrax bijectors: distrax and TensorFlow Probability cost
  # seconds to import, so flows load only when a flow is asked for.
  if name == "FlowPosterior":
    from vae_jax.families import flows  # pylint: disable=g-import-not-at-top
    return flows.FlowPosterior
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DiagNormal", "StandardNormal", "DiagNormalMixture", "FlowPosterior", "Bernoulli",
           "Categorical"]
