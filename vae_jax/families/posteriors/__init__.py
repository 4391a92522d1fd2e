"""The posterior families q(z|x), one module each: ``model.posterior=<name>`` is
``vae_jax.families.posteriors.<name>``.

A posterior module declares:

* ``KEYS``: the ``config.model`` keys it reads besides ``latent_dim`` and
  ``scale_head`` (every other family's keys must be left unset, None);
* ``HAS_DENSITY``: whether q has log q(z|x) at any z (the score-function
  estimators, STL, DReG and VIMCO need it);
* ``CLOSED_FORM_KL``: whether KL(q || p) has a closed form when the prior's
  has one too (``vae_jax.families.priors``);
* ``TWO_LAYERS``: whether it can be q(z1 | x) under a second stochastic layer
  (``model.top_latent_dim``);
* ``REFINABLE``: whether semi-amortized inference (``model.refine_steps``,
  ``vae_jax.inference.refinement``) can refine q by gradient steps on each
  example's ELBO: its draws are reparametrized and its per-example arrays are
  its parameters (arrays shared by every example, ``q.shared_fields``, stay
  the encoder's). A family that does not declare it is not refined;
* ``validate(model_config)``: its own keys' rules (UserError naming the key);
* ``head(settings) -> head``: ``head(encoder, h)`` turns the encoder's
  features h: [B, F] into q(z|x), creating its parameters in the encoder's
  scope (so the checkpoints' parameter names do not depend on the family's
  code layout). ``settings`` is ``config.model`` or a mapping with the same keys.

``REGISTRY.get(name)`` imports only that module; ``REGISTRY.validate(config.model)``
checks the choice, that no other family's key is set, and the family's own rules.
"""

from vae_jax.registry import Registry

REGISTRY = Registry(__name__, "posterior family", "config.model.posterior", marker="head")
