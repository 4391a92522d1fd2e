r"""Reproduce one row of Burda et al. (2015), Table 1: train, evaluate at k = 5000, compare.

  python scripts/reproduce.py iwae_k5,cpu            # minutes on CPU (shared MNIST test images)
  python scripts/reproduce.py iwae_k5 --workdir=W    # the paper's recipe (TFDS mnist, accelerator)

VARIANT is one of experiments/configs/burda2015.py's (vae_k1, vae_k5, vae_k50,
iwae_k1, iwae_k5, iwae_k50), optionally with ``,cpu``. The model trains (or
resumes) through the runner's VAE experiment in WORKDIR/train; then
experiments/evaluate.py scores the held-out split with the IWAE bound at
--iw_samples in WORKDIR/eval. Prints one Markdown table row and one JSON object:
target vs achieved NLL and active units.
"""

from __future__ import annotations

import json
import os
import sys

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from experiments import evaluate  # pylint: disable=g-import-not-at-top,wrong-import-position
from experiments import vae  # pylint: disable=g-import-not-at-top,wrong-import-position
from experiments.configs import burda2015  # pylint: disable=g-import-not-at-top,wrong-import-position
from experiments.configs import evaluate as evaluate_config  # pylint: disable=g-import-not-at-top,wrong-import-position

_WORKDIR = flags.DEFINE_string("workdir", None, "Output folder (default /tmp/reproduce/VARIANT).")
_IW = flags.DEFINE_integer("iw_samples", 5000, "k of the IWAE estimate of the test NLL.")
_MAX = flags.DEFINE_integer("max_examples", 0, "Evaluate only the first N held-out images (0: all).")


def main(argv):
  if len(argv) != 2:
    raise app.UsageError(f"usage: reproduce.py VARIANT (one of {', '.join(burda2015.PAPER)}, "
                         f"optionally with ,cpu)")
  variant = argv[1]
  from vae_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  workdir = _WORKDIR.value or os.path.join("/tmp", "reproduce", variant.replace(",", "_"))
  try:
    config = burda2015.get_config(variant)
    train = vae.run(config, os.path.join(workdir, "train"))
    eval_config = evaluate_config.get_config()
    eval_config.update(checkpoint=os.path.join(workdir, "train"), iw_samples=_IW.value,
                       max_examples=_MAX.value)
    result = evaluate.run(eval_config, os.path.join(workdir, "eval"))
  except (UserError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  row = {"variant": variant, "model": config.paper.model, "dataset": result["dataset"],
         "train_steps": train["step"], "paper_nll": config.paper.nll,
         "nll": result["nll_iw"], "nll_stderr": result["nll_iw_stderr"],
         "paper_active_units": config.paper.active_units,
         "active_units": result["active_units"], "iw_samples": result["iw_samples"],
         "num_examples": result["num_examples"], "device": result["device"],
         "train_steps_per_s": train["steps_per_s"], "eval_seconds": result["seconds"]}
  print(f"| {variant} | {config.paper.nll:.2f} | {row['nll']:.2f} ± {row['nll_stderr']:.2f} | "
        f"{config.paper.active_units} | {row['active_units']} | {row['train_steps']} | "
        f"{row['num_examples']} |")
  print(json.dumps(row, indent=2))


if __name__ == "__main__":
  app.run(main)
