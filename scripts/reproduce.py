r"""Reproduce rows of Burda et al. (2015), Table 1: train, evaluate at k = 5000, compare.

  python scripts/reproduce.py iwae_k5,cpu            # minutes on CPU (the MNIST test images)
  python scripts/reproduce.py iwae_k5 --workdir=W    # the paper's recipe (TFDS mnist, accelerator)
  python scripts/reproduce.py all --cpu              # both halves of the table, cpu forms
  python scripts/reproduce.py vae_k1,cpu --num_steps=4 --max_examples=20 --iw_samples=3
                                                     # seconds: the whole path, checked

Each VARIANT is one of experiments/configs/burda2015.py's (vae_k1, vae_k5,
vae_k50, iwae_k1, iwae_k5, iwae_k50 with one stochastic layer; vae2_k1 ...
iwae2_k50 with two), optionally with ``,cpu`` (or ``--cpu`` for all); ``all``
is every recipe. The ``,cpu`` forms read the MNIST test images from
burda2015.mnist_dir(); ``python scripts/download_mnist.py`` puts them there.
Each model trains (or resumes) through the runner's VAE
experiment in WORKDIR/VARIANT/train; then experiments/evaluate.py scores the
held-out split with the IWAE bound at --iw_samples in WORKDIR/VARIANT/eval.
Prints the Markdown table, one half per number of stochastic layers (target
vs achieved NLL and active units, per layer for two), and one JSON object per row.
The rows also go to WORKDIR/summary.json (``{"rows": [...]}``, merged by variant
with the rows of earlier calls into the same WORKDIR), which
``scripts/results.py`` records and renders into the README.
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
import results  # pylint: disable=g-import-not-at-top,wrong-import-position  # scripts/results.py

_WORKDIR = flags.DEFINE_string("workdir", None, "Output folder (default /tmp/reproduce).")
_IW = flags.DEFINE_integer("iw_samples", 5000, "k of the IWAE estimate of the test NLL.")
_MAX = flags.DEFINE_integer("max_examples", 0, "Evaluate only the first N held-out images (0: all).")
_CPU = flags.DEFINE_bool("cpu", False, "Append ,cpu to every variant (the few-minute forms).")
_STEPS = flags.DEFINE_integer("num_steps", 0, "Train only this many steps (0: the recipe's); "
                              "for a quick check of the whole path, not for the table.")


def variants(args: list[str]) -> list[str]:
  """The command line's variants: ``all`` expands to every recipe; --cpu appends ,cpu."""
  names = [v for a in args for v in (list(burda2015.PAPER) if a == "all" else [a])]
  return [f"{v},cpu" if _CPU.value and not v.endswith(",cpu") else v for v in names]


def reproduce(variant: str, workdir: str) -> dict:
  """Trains and evaluates one recipe; returns its table row as a dict."""
  config = burda2015.get_config(variant)
  if _STEPS.value:
    config.train.num_steps = _STEPS.value
  train = vae.run(config, os.path.join(workdir, "train"))
  eval_config = evaluate_config.get_config()
  eval_config.update(checkpoint=os.path.join(workdir, "train"), iw_samples=_IW.value,
                     max_examples=_MAX.value)
  result = evaluate.run(eval_config, os.path.join(workdir, "eval"))
  return {"variant": variant, "model": config.paper.model, "layers": config.paper.layers,
          "dataset": result["dataset"], "train_steps": train["step"],
          "paper_nll": config.paper.nll, "nll": result["nll_iw"],
          "nll_stderr": result["nll_iw_stderr"],
          "paper_active_units": config.paper.active_units,
          "active_units": result["active_units"],
          "active_units_per_layer": result.get("active_units_per_layer"),
          "iw_samples": result["iw_samples"], "num_examples": result["num_examples"],
          "device": result["device"], "train_steps_per_s": train["steps_per_s"],
          "eval_seconds": result["seconds"]}


def write_rows(root: str, rows: list[dict]) -> None:
  """Merges ``rows`` into ROOT/summary.json's rows by variant, in recipe order."""
  path = os.path.join(root, "summary.json")
  merged = {}
  if os.path.exists(path):
    with open(path) as f:
      merged = {r["variant"]: r for r in json.load(f)["rows"]}
  merged.update({r["variant"]: r for r in rows})
  order = {v: i for i, v in enumerate(burda2015.PAPER)}
  ordered = sorted(merged.values(), key=lambda r: order.get(r["variant"].split(",")[0], 99))
  with open(path, "w") as f:
    json.dump({"experiment": "burda2015", "rows": ordered}, f, indent=1)


def main(argv):
  if len(argv) < 2:
    raise app.UsageError(f"usage: reproduce.py VARIANT [VARIANT ...] | all [--cpu] (variants: "
                         f"{', '.join(burda2015.PAPER)}, optionally with ,cpu)")
  from vae_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  root = _WORKDIR.value or os.path.join("/tmp", "reproduce")
  rows = []
  try:
    for variant in variants(argv[1:]):
      rows.append(reproduce(variant, os.path.join(root, variant.replace(",", "_"))))
  except (UserError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  write_rows(root, rows)
  for layers in (1, 2):
    half = [r for r in rows if r["layers"] == layers]
    if half:
      print(f"\n{layers} stochastic layer{'s' if layers == 2 else ''}:\n")
      head, lines = results.burda_table(half)
      print("\n".join([head] + lines))
  for row in rows:
    print(json.dumps(row))


def parse_flags(argv: list[str]) -> list[str]:
  """absl's parser: --help (and --helpfull, ...) exits with status 0, not 1, and a
  bad flag is one ``error:`` line with status 2, as in the runner."""
  try:
    return flags.FLAGS(argv)
  except SystemExit as e:   # absl prints the asked-for help, then exits with 1
    if e.code == 1 and any(a.split("=")[0].lstrip("-") in ("help", "helpshort", "helpfull",
                                                            "helpxml", "?")
                           for a in argv[1:]):
      sys.exit(0)
    raise
  except flags.Error as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
