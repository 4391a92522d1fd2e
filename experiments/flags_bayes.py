"""Flags of the conjugate-Bayes experiment (--experiment=bayes)."""

from absl import flags

from vae_jax.bayes_experiment import BAYES_DEFAULTS as _B

flags.DEFINE_string("bayes_sizes", _B["bayes_sizes"],
                    "bayes: comma-separated training-set sizes n at which the posterior and "
                    "the predictive are evaluated.")
flags.DEFINE_integer("bayes_trials", _B["bayes_trials"],
                     "bayes: independent simulated data sets averaged per n.")
flags.DEFINE_integer("bayes_heldout", _B["bayes_heldout"],
                     "bayes: held-out examples per trial for the log-loss.")
