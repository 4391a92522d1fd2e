"""experiments/configs/burda2015.py: the paper's settings and Table 1 numbers, pinned."""

import pytest

from experiments.configs import burda2015


def test_table_1_one_stochastic_layer():
  """arXiv:1509.00519v4, Table 1, MNIST, 1 stochastic layer: (NLL, active units)."""
  assert burda2015.PAPER == {"vae_k1": (86.76, 19), "vae_k5": (86.47, 20),
                             "vae_k50": (86.35, 20), "iwae_k1": (86.76, 19),
                             "iwae_k5": (85.54, 22), "iwae_k50": (84.78, 25)}


@pytest.mark.parametrize("name", sorted(burda2015.PAPER))
def test_recipe_is_the_papers(name):
  config = burda2015.get_config(name)
  objective, k = name.split("_k")
  assert config.objective.estimator == {"vae": "reparam", "iwae": "iwae"}[objective]
  assert config.objective.num_samples == int(k)
  assert (config.paper.nll, config.paper.active_units) == burda2015.PAPER[name]
  m, t = config.model, config.train
  assert (m.kind, m.hidden_dims, m.latent_dim, m.activation, m.likelihood) == (
      "mlp", (200, 200), 50, "tanh", "bernoulli")
  assert (t.batch_size, t.learning_rate, t.adam_eps, t.lr_schedule) == (20, 1e-3, 1e-4, "burda")
  assert t.num_steps == 3280 * 60000 // 20
  assert (config.data.dataset, config.data.binarize) == ("mnist", "dynamic")
  cpu = burda2015.get_config(f"{name},cpu")
  assert cpu.data.dataset == "mnist_t10k" and cpu.train.num_steps == 20 * 9000 // 20
  assert cpu.objective == config.objective and cpu.model == config.model
