"""experiments/configs/burda2015.py: the paper's settings and Table 1 numbers, pinned."""

import importlib
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from experiments.configs import burda2015
from tests.conftest import ROOT, failure_report, require_slow
from vae_jax.models import vae as vae_model


def test_table_1_one_stochastic_layer():
  """arXiv:1509.00519v4, Table 1, MNIST, 1 stochastic layer: (NLL, active units)."""
  one = {k: v for k, v in burda2015.PAPER.items() if "2_" not in k}
  assert one == {"vae_k1": (86.76, 19), "vae_k5": (86.47, 20),
                 "vae_k50": (86.35, 20), "iwae_k1": (86.76, 19),
                 "iwae_k5": (85.54, 22), "iwae_k50": (84.78, 25)}


def test_table_1_two_stochastic_layers():
  """Table 1, MNIST, 2 stochastic layers: test NLL (active units not pinned)."""
  two = {k: v[0] for k, v in burda2015.PAPER.items() if "2_" in k}
  assert two == {"vae2_k1": 85.33, "vae2_k5": 85.01, "vae2_k50": 84.78,
                 "iwae2_k1": 85.33, "iwae2_k5": 83.89, "iwae2_k50": 82.90}


@pytest.mark.parametrize("name", sorted(burda2015.PAPER))
def test_recipe_is_the_papers(name):
  config = burda2015.get_config(name)
  objective, k = name.split("_k")
  two = objective.endswith("2")
  assert config.objective.estimator == {"vae": "reparam", "iwae": "iwae"}[objective.rstrip("2")]
  assert config.objective.num_samples == int(k)
  assert (config.paper.nll, config.paper.active_units) == burda2015.PAPER[name]
  assert config.paper.layers == (2 if two else 1)
  m, t = config.model, config.train
  if two:   # x-200-200-z1(100)-100-100-z2(50); p mirrors it
    assert (m.kind, m.hidden_dims, m.latent_dim, m.top_hidden_dims, m.top_latent_dim,
            m.activation, m.likelihood) == ("mlp", (200, 200), 100, (100, 100), 50, "tanh",
                                            "bernoulli")
  else:
    assert (m.kind, m.hidden_dims, m.latent_dim, m.activation, m.likelihood) == (
        "mlp", (200, 200), 50, "tanh", "bernoulli")
    assert m.top_latent_dim is None
  assert (t.batch_size, t.learning_rate, t.adam_eps, t.lr_schedule) == (20, 1e-3, 1e-4, "burda")
  assert t.num_steps == 3280 * 60000 // 20
  assert (config.data.dataset, config.data.binarize) == ("mnist", "dynamic")
  cpu = burda2015.get_config(f"{name},cpu")
  assert cpu.data.dataset == "mnist_t10k" and cpu.train.num_steps == 20 * 9000 // 20
  assert cpu.objective == config.objective and cpu.model == config.model


def test_two_layer_network_shapes_are_the_papers():
  """The built model's weights: q x-200-200-z1(100)-100-100-z2(50), p z2-100-100-z1-200-200-x."""
  config = burda2015.get_config("iwae2_k5")
  model = vae_model.build_network(config.model, (28, 28, 1))
  params = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 784)))["params"]
  enc, dec, prior = params["encoder"], params["decoder"], params["prior"]
  assert [enc[f"hidden_{i}"]["kernel"].shape for i in range(2)] == [(784, 200), (200, 200)]
  assert enc["mean"]["kernel"].shape == enc["log_scale"]["kernel"].shape == (200, 100)
  assert [l["kernel"].shape for l in enc["layer2"]] == [(100, 100), (100, 100), (100, 2 * 50)]
  assert [l["kernel"].shape for l in prior["net"]] == [(50, 100), (100, 100), (100, 2 * 100)]
  assert [dec["mlp"][f"dense_{i}"]["kernel"].shape for i in range(3)] == [
      (100, 200), (200, 200), (200, 784)]


@pytest.mark.slow
def test_reproduce_script_trains_evaluates_and_prints_the_table(shared_mnist_dir, tmp_path):
  """scripts/reproduce.py end to end on a cpu form cut to 4 steps: the runner trains,
  experiments/evaluate.py scores 20 held-out images at k = 3, and the row is printed
  in the table format of docs/running.md and merged into WORKDIR/summary.json."""
  del shared_mnist_dir   # the cpu forms read it; skipped when absent
  require_slow("runs scripts/reproduce.py in a subprocess")
  cmd = [sys.executable, "scripts/reproduce.py", "vae_k1,cpu", "--num_steps=4",
         "--max_examples=20", "--iw_samples=3", f"--workdir={tmp_path}"]
  proc = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ, JAX_PLATFORMS="cpu"), text=True,
                        capture_output=True, timeout=600)
  assert proc.returncode == 0, failure_report(proc)
  with open(tmp_path / "summary.json") as f:
    rows = json.load(f)["rows"]
  assert [r["variant"] for r in rows] == ["vae_k1,cpu"]
  row = rows[0]
  assert row["train_steps"] == 4 and row["num_examples"] == 20 and row["iw_samples"] == 3
  assert row["paper_nll"] == 86.76 and 50 < row["nll"] < 800 and row["nll_stderr"] > 0
  head, lines = _results().burda_table(rows)
  assert head in proc.stdout and lines[0] in proc.stdout
  assert json.loads(proc.stdout.strip().splitlines()[-1])["variant"] == "vae_k1,cpu"


def _results():
  sys.path.insert(0, os.path.join(ROOT, "scripts"))
  return importlib.import_module("results")
