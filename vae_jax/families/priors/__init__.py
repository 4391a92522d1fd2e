"""The priors p(z), one module each: ``model.prior=<name>`` is
``vae_jax.families.priors.<name>``.

A prior module declares:

* ``KEYS``: the ``config.model`` keys it reads besides ``latent_dim`` (every
  other prior's keys must be left unset, None);
* ``LEARNED``: whether it has parameters (trained with the decoder, as part of
  theta, in their own optimizer group ``prior``);
* ``CLOSED_FORM_KL``: whether KL(q || p) has a closed form when q's has one too;
* ``TWO_LAYERS``: whether a second stochastic layer may replace it by
  p(z2) p(z1 | z2) (``model.top_latent_dim``);
* ``validate(model_config)``: its own keys' rules (UserError naming the key);
* ``module(settings, input_dim) -> nn.Module``: a Flax module whose
  ``__call__(encoder)`` returns p(z) as a distribution object (the encoder is
  there for priors built from it, such as the VampPrior); its parameters live
  under ``params["prior"]``.

``REGISTRY.get(name)`` imports only that module; ``REGISTRY.validate(config.model)``
checks the choice, that no other prior's key is set, and the prior's own rules.
"""

from vae_jax.registry import Registry

REGISTRY = Registry(__name__, "prior", "config.model.prior", marker="module")
