"""Shared fixtures: tiny configs, the shared MNIST test images, runner helper."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_MNIST = os.path.join(ROOT, "..", "shared", "data", "mnist")

# A VAE config that trains in about a second on the 8x8 digits.
TINY_VAE = dict(dataset="digits", binarize="static", hidden_dims="32", latent_dim=4,
                batch_size=50, num_steps=60, learning_rate=3e-3, seed=0,
                log_every=10, eval_every=30, checkpoint_every=30, eval_batch_size=128,
                eval_iw_samples=8)


@pytest.fixture
def tiny_config():
  return dict(TINY_VAE)


@pytest.fixture
def shared_mnist_dir():
  path = os.path.abspath(SHARED_MNIST)
  if not os.path.exists(os.path.join(path, "t10k-images-idx3-ubyte.gz")):
    pytest.skip("shared MNIST test images not present (../shared/data/mnist)")
  return path


def failure_report(proc: subprocess.CompletedProcess) -> str:
  """The informative part of a failed subprocess's stderr (a fatal error's head, or the tail)."""
  err = proc.stderr or ""
  at = err.find("Fatal Python error")
  head = err[max(0, at - 2500):at + 1500] if at >= 0 else ""
  return f"rc={proc.returncode}\n{head}\n...\n{err[-2500:]}"


def flag_args(config: dict) -> list[str]:
  return [f"--{k}={v}" for k, v in config.items()]


def run_main(args: list[str], timeout: float = 300, env=None,
             **kwargs) -> subprocess.CompletedProcess:
  """Runs `python -m experiments.main ARGS` in a subprocess from the repo root."""
  env = dict(env or os.environ, JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, "-m", "experiments.main", *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=timeout, env=env, **kwargs)
