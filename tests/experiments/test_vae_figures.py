"""The VAE experiment's figures: what samples.png says was sampled, and a
training_curves.png whose y-range shows the part of training that matters."""

import json
import os

import jax
import pytest

from experiments import vae
from tests.conftest import get_config
from vae_jax import plots
from vae_jax import tasks


def _prior(**model):
  """The prior object of a tiny VAE with ``model`` settings, as write_figures gets it."""
  config = get_config("vae", "tiny")
  config.model.update(model)
  task = tasks.build_task(config, (8, 8, 1), 100)
  params = task.init_params(jax.random.key(0))
  return jax.eval_shape(lambda p: task.model.apply(p, method="prior_distribution"), params)


@pytest.mark.parametrize("model, title", [
    ({}, "z ~ N(0, I)"),
    ({"top_latent_dim": 2, "top_hidden_dims": (8,)}, "z2 ~ N(0, I), then z1 ~ p(z1|z2)"),
    ({"prior": "mog", "prior_components": 3}, "z ~ the learned mixture prior"),
])
def test_samples_title_names_the_prior_sampled(model, title):
  assert vae.sampled_from(_prior(**model)) == title


def test_samples_title_of_a_prior_it_does_not_know():
  class Described:
    description = "z ~ my new prior"
  assert vae.sampled_from(Described()) == "z ~ my new prior"
  assert vae.sampled_from(object()) == "z ~ p(z), the model's prior"   # never a KeyError


def _metrics(workdir, iwae: bool):
  """metrics.jsonl shaped like the default run's: a first train mean of 250 nats,
  then 150 down to 102; eval every 1000 steps; the final IWAE estimate if ``iwae``."""
  train = [250.0, 190.0, 167.0, 156.0, 148.0] + [150.0 - 48.0 * i / 44 for i in range(45)]
  rows = [{"step": 100 * (i + 1), "split": "train", "elbo": -v} for i, v in enumerate(train)]
  for i, v in enumerate([127.7, 116.0, 111.0, 109.6, 108.1]):
    rows.append({"step": 1000 * (i + 1), "split": "eval", "neg_elbo": v})
  if iwae:
    rows[-1]["neg_log_likelihood_iw"] = 101.8
  with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in rows)


@pytest.fixture
def drawn(monkeypatch):
  """The figures plots.save writes, kept (and still saved)."""
  figures = []
  save = plots.save

  def keep(fig, path, *args, **kwargs):
    figures.append(fig)
    return save(fig, path, *args, **kwargs)
  monkeypatch.setattr(plots, "save", keep)
  return figures


def test_training_curves_leave_out_the_first_steps_and_draw_the_iwae_estimate(tmp_path, drawn):
  _metrics(str(tmp_path), iwae=True)
  path = vae.save_training_curves(str(tmp_path), get_config("vae", "tiny"), "mnist_5k")
  assert os.path.getsize(path) > 0
  (ax,) = drawn[0].axes
  low, high = ax.get_ylim()
  assert high < 190.0                 # the first points (250, 190) are off the axis ...
  assert low < 101.8 and high > 150.0  # ... everything from a tenth of the run on is on it
  assert high - low < 70.0            # so 1 nat is visible: the range is not 100-250
  lines = {line.get_label(): line for line in ax.get_lines()}
  iwae = lines["eval IWAE estimate of -log p(x), K = 8"]
  assert list(iwae.get_xdata()) == [5000] and list(iwae.get_ydata()) == [101.8]
  assert any("above the axis, up to 250" in t.get_text() for t in ax.texts)


def test_training_curves_without_an_iwae_estimate(tmp_path, drawn):
  _metrics(str(tmp_path), iwae=False)
  vae.save_training_curves(str(tmp_path), get_config("vae", "tiny"), "mnist_5k")
  labels = [line.get_label() for line in drawn[0].axes[0].get_lines()]
  assert labels == ["train -ELBO (batch avg)", "eval -ELBO"]


def test_focus_ylim_keeps_short_curves_and_lone_points():
  assert plots.focus_ylim({}) is None
  low, high = plots.focus_ylim({"a": ([10, 20, 30], [50.0, 40.0, 30.0]), "iw": ([30], [29.0])})
  assert low < 29.0 and 40.0 < high < 50.0
  assert plots.focus_ylim({"one": ([5], [3.0])}) is not None
