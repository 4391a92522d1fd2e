"""Flags of --experiment=autoregressive (MADE, vae_jax.autoregressive).

It shares the data and optimization flags of the VAE (--dataset, --binarize,
--batch_size, --num_steps, --learning_rate, --seed, --log_every,
--eval_every, --eval_batch_size) and adds only the MADE widths.
"""

from absl import flags

from vae_jax.autoregressive import DEFAULT_CONFIG as _AR

flags.DEFINE_string("ar_hidden_dims", _AR["ar_hidden_dims"],
                    "Comma-separated widths of MADE's masked ReLU hidden layers (use at "
                    "least D-1 units so every logit_i sees all of x_<i); empty for the "
                    "fully visible logistic model.")
