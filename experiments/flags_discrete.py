"""Flags of --experiment=discrete_vae (vae_jax.discrete_vae).

It shares the data, optimization and logging flags of the VAE (--dataset,
--binarize, --batch_size, --num_steps, --learning_rate, --seed, --hidden_dims,
--num_samples, --baseline_decay, --log_every, --eval_every, --eval_batch_size,
--grad_stats_every, --grad_stats_draws) and adds the binary latent's size and
its encoder estimator.
"""

from absl import flags

from vae_jax.discrete_vae import DISCRETE_DEFAULTS as _DV
from vae_jax.discrete_vae import DISCRETE_ESTIMATORS

flags.DEFINE_integer("discrete_latent_dim", _DV["discrete_latent_dim"],
                     "discrete_vae: number L of binary latents z in {0, 1}^L. With L <= 12 "
                     "the run also reports the exact ELBO and -log p(x) by enumerating "
                     "the 2^L codes.")
flags.DEFINE_enum("discrete_estimator", _DV["discrete_estimator"], list(DISCRETE_ESTIMATORS),
                  "discrete_vae: encoder gradient estimator (reparametrization does not "
                  "apply to discrete z): score (plain log-derivative trick), "
                  "score_baseline (minus a running mean, --baseline_decay) or score_loo "
                  "(minus the mean of the other --num_samples >= 2 samples).")
