"""Flags of the estimator experiments (--experiment=estimator_variance|amortization)."""

from absl import flags

from vae_jax.estimator_experiments import ESTIMATOR_DEFAULTS as _E

flags.DEFINE_string("variance_estimators", _E["variance_estimators"],
                    "estimator_variance: comma-separated estimators to compare (see "
                    "vae_jax.estimators.ESTIMATORS).")
flags.DEFINE_string("variance_num_samples", _E["variance_num_samples"],
                    "estimator_variance: comma-separated sample counts S; summary 'variance' "
                    "and the per-step curves use the first.")
flags.DEFINE_string("variance_steps", _E["variance_steps"],
                    "estimator_variance: training steps (reparametrized VAE) at which to "
                    "measure; the last one also sweeps S.")
flags.DEFINE_integer("variance_draws", _E["variance_draws"],
                     "estimator_variance: independent gradient draws R per measurement.")
flags.DEFINE_integer("amortization_examples", _E["amortization_examples"],
                     "amortization: held-out examples evaluated.")
flags.DEFINE_integer("amortization_local_steps", _E["amortization_local_steps"],
                     "amortization: Adam steps of the per-example (non-amortized) q.")
flags.DEFINE_float("amortization_local_lr", _E["amortization_local_lr"],
                   "amortization: learning rate of the per-example q (cosine-decayed).")
flags.DEFINE_integer("amortization_eval_samples", _E["amortization_eval_samples"],
                     "amortization: Monte-Carlo samples of each ELBO evaluation.")
flags.DEFINE_integer("num_importance_samples", _E["num_importance_samples"],
                     "amortization: importance samples K of the log p(x) estimate.")
