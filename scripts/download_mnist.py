r"""Download the MNIST test files that the few-minute real-MNIST recipes read.

  python scripts/download_mnist.py              # into ~/.cache/vae_jax/data/mnist
  python scripts/download_mnist.py --dir=DIR    # then --config.data.data_dir=DIR

Fetches t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz (1.6 MB) from
a public mirror and checks the SHA-256 of their contents against the ones in
vae_jax/mnist_files.py before writing them (atomically: a refused or broken
download leaves nothing behind). Without --dir they go where
burda2015.py:<recipe>,cpu, priors.py:cpu and scripts/reproduce.py ...,cpu look
($XDG_CACHE_HOME/vae_jax/data/mnist). Errors print one ``error:`` line and
exit 2.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from vae_jax import mnist_files  # pylint: disable=g-import-not-at-top,wrong-import-position
from vae_jax.errors import UserError  # pylint: disable=g-import-not-at-top,wrong-import-position


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter,
                                   epilog="\n".join(__doc__.splitlines()[1:]))
  parser.add_argument("--dir", default=None,
                      help=f"target folder (default {mnist_files.default_dir()})")
  args = parser.parse_args(argv)
  try:
    mnist_files.download(args.dir)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  main()
