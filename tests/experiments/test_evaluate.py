"""experiments/evaluate.py: any checkpoint, at K samples or exactly, with diagnostics."""

import json
import os
import re
import shutil

import numpy as np
import pytest

from experiments import autoregressive, discrete_vae, evaluate, vae
from tests.conftest import config_path, failure_report, get_config, run_main
from tests.test_workdir import read_tensorboard_scalars
from vae_jax import tasks
from vae_jax.inference import evaluation
from vae_jax.errors import UserError


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
  """A tiny VAE with L = 2 (so the manifold figure applies)."""
  workdir = str(tmp_path_factory.mktemp("vae_run"))
  config = get_config("vae")
  config.model.latent_dim = 2
  vae.run(config, workdir)
  return workdir


def _eval_config(checkpoint, **settings):
  config = get_config("evaluate")
  config.checkpoint = checkpoint
  config.update(settings)
  return config


@pytest.mark.slow
def test_vae_evaluation_writes_every_number_and_figure(tmp_path, vae_run):
  out = str(tmp_path / "out")
  result = evaluate.run(_eval_config(vae_run), out)
  on_disk = json.load(open(os.path.join(out, "evaluation.json")))
  assert on_disk == json.loads(json.dumps(result))
  for key in ("nll_iw", "nll_iw_stderr", "bits_per_dim_iw", "elbo", "recon", "kl",
              "kl_per_dim", "active_units", "num_examples", "iw_samples", "seconds",
              "examples_per_s"):
    assert key in on_disk, key
  assert on_disk["num_examples"] == 297 and on_disk["iw_samples"] == 50
  assert on_disk["nll_method"] == "iwae" and on_disk["nll"] == on_disk["nll_iw"]
  assert on_disk["bits_per_dim_iw"] == pytest.approx(on_disk["nll_iw"] / (64 * np.log(2)))
  # log p(x) >= IWAE-K >= ELBO in expectation: -ELBO >= NLL_IW up to Monte-Carlo error.
  assert on_disk["nll_iw"] <= -on_disk["elbo"] + 3 * on_disk["nll_iw_stderr"]
  assert on_disk["elbo"] == pytest.approx(on_disk["recon"] - on_disk["kl"], rel=1e-6)
  # KL per dimension sums to the KL; active units by Burda et al.'s criterion,
  # recomputed from the encoder's means with NumPy.
  assert len(on_disk["kl_per_dim"]) == 2
  assert sum(on_disk["kl_per_dim"]) == pytest.approx(on_disk["kl"], rel=1e-4)
  model, state, run_config = tasks.load_checkpoint(vae_run)
  x = tasks.load_data(run_config).eval_x
  mean = model.apply(state.params, x, method="encode").loc
  assert on_disk["active_units"] == int(np.sum(np.var(np.asarray(mean, np.float64), 0) > 0.01))
  for name in ("interpolations.png", "kl_per_dim.png", "latent_space.png", "manifold.png"):
    assert os.path.getsize(os.path.join(out, name)) > 0, name
  # Deterministic given the run and the seed; another seed draws other samples.
  again = evaluate.run(_eval_config(vae_run), str(tmp_path / "again"))
  assert again["nll_iw"] == result["nll_iw"] and again["elbo"] == result["elbo"]
  other = evaluate.run(_eval_config(vae_run, seed=1), str(tmp_path / "other"))
  assert other["nll_iw"] != result["nll_iw"]


@pytest.mark.slow
def test_vae_evaluation_writes_the_run_files_of_every_experiment(tmp_path, vae_run):
  """Catches a missing config.json, summary.json, metrics.jsonl or event file, and
  files whose numbers are not the evaluation's (docs/running.md, "What a run writes")."""
  out = str(tmp_path / "out")
  result = evaluate.run(_eval_config(vae_run, max_examples=60), out)
  assert json.load(open(os.path.join(out, "config.json")))["checkpoint"] == vae_run
  summary = json.load(open(os.path.join(out, "summary.json")))
  assert summary == json.loads(json.dumps(result))
  assert summary["nll_iw"] == result["nll_iw"] and summary["num_examples"] == 60
  records = [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]
  (main,) = [r for r in records if r["split"] == "eval"]
  assert main["step"] == result["step"] == 60      # the checkpoint's step
  for key in ("nll", "nll_iw", "nll_iw_stderr", "elbo", "recon", "kl", "bits_per_dim",
              "active_units", "num_examples", "iw_samples", "examples_per_s"):
    assert main[key] == result[key], key
  kl = [r for r in records if r["split"] == "kl_per_dim"]
  assert [r["step"] for r in kl] == [0, 1] and [r["kl"] for r in kl] == result["kl_per_dim"]
  tags = read_tensorboard_scalars(out)
  assert tags["eval/nll_iw"] == {60: pytest.approx(result["nll_iw"], rel=1e-6)}
  assert tags["eval/elbo"] == {60: pytest.approx(result["elbo"], rel=1e-6)}
  assert set(tags["kl_per_dim/kl"]) == {0, 1}
  assert not [t for t in tags if t.startswith("eval/") and t.split("/")[1] not in result]
  # A rerun in the same workdir starts the metrics afresh.
  evaluate.run(_eval_config(vae_run, max_examples=60), out)
  assert len(open(os.path.join(out, "metrics.jsonl")).readlines()) == len(records)


@pytest.mark.slow
def test_runner_logs_iwae_progress_with_rate_and_eta(tmp_path, vae_run):
  """Catches an IWAE evaluation that is silent while it runs, or whose line lacks the
  count, the rate or the ETA of the trainer's progress line."""
  out = str(tmp_path / "out")
  proc = run_main([f"--config={config_path('evaluate', 'tiny')}",
                   f"--config.checkpoint={vae_run}", f"--workdir={out}"])
  assert proc.returncode == 0, failure_report(proc)
  lines = re.findall(r"iwae (\d+)/297 examples \| ([\d.]+) examples/s, ETA (\d+:\d\d:\d\d)",
                     proc.stderr)
  assert 3 <= len(lines) <= 11, proc.stderr[-3000:]   # about every tenth, not every batch
  assert lines[-1][0] == "297" and all(float(rate) > 0 for _, rate, _ in lines)
  assert "nll_iw=" in proc.stdout
  for name in ("config.json", "summary.json", "metrics.jsonl", "evaluation.json"):
    assert os.path.getsize(os.path.join(out, name)) > 0, name
  assert os.listdir(os.path.join(out, "tensorboard"))


@pytest.mark.slow
def test_more_samples_tighten_the_bound(tmp_path, vae_run):
  nll = {k: evaluate.run(_eval_config(vae_run, iw_samples=k, chunk_size=7, max_examples=100),
                         str(tmp_path / str(k)))["nll_iw"] for k in (1, 10, 200)}
  assert nll[1] > nll[10] > nll[200]


@pytest.mark.slow
def test_train_split_and_active_units_helper(tmp_path, vae_run):
  result = evaluate.run(_eval_config(vae_run, split="train", max_examples=64), str(tmp_path))
  assert result["split"] == "train" and result["num_examples"] == 64
  means = np.array([[0.0, 1.0, 5.0], [0.0, -1.0, 5.0], [0.0, 1.0, 5.01]])
  np.testing.assert_array_equal(evaluation.active_units(means), [False, True, False])


@pytest.mark.parametrize("name,key", [("autoregressive", "eval_nll"),
                                      ("discrete_vae", "eval_exact_nll")])
@pytest.mark.slow
def test_exact_models_match_what_training_reported(tmp_path, name, key):
  run_dir = str(tmp_path / "run")
  module = {"autoregressive": autoregressive, "discrete_vae": discrete_vae}[name]
  config = get_config(name)
  config.train.num_steps = 30
  summary = module.run(config, run_dir)
  result = evaluate.run(_eval_config(run_dir), str(tmp_path / "out"))
  assert result["nll_method"] == "exact"
  assert result["nll"] == pytest.approx(summary[key], rel=1e-5)
  with pytest.raises(UserError, match="exact log-likelihood"):
    evaluate.run(_eval_config(run_dir, estimate="iwae"), str(tmp_path / "bad"))


@pytest.mark.parametrize("settings,match", [
    (dict(iw_samples=0), "config.iw_samples"),
    (dict(chunk_size=0), "config.chunk_size"),
    (dict(max_examples=-1), r"--config\.max_examples must be an integer >= 0 \(0: all\)"),
    (dict(split="test"), "config.split must be one of eval, train"),
    (dict(estimate="exact"), "no closed form"),
    (dict(checkpoint=""), "checkpoint is required"),
])
@pytest.mark.slow
def test_bad_settings(tmp_path, vae_run, settings, match):
  config = _eval_config(vae_run)
  config.update(settings)
  with pytest.raises(UserError, match=match):
    evaluate.run(config, str(tmp_path / "out"))


def test_a_directory_that_is_not_a_run(tmp_path):
  (tmp_path / "empty").mkdir()
  with pytest.raises(UserError, match="is not a training run"):
    evaluate.run(_eval_config(str(tmp_path / "empty")), str(tmp_path / "out"))


@pytest.mark.slow
def test_a_run_whose_data_cannot_be_found(tmp_path, vae_run):
  moved = str(tmp_path / "run")
  shutil.copytree(vae_run, moved)
  path = os.path.join(moved, "config.json")
  saved = json.load(open(path))
  saved["data"].update(dataset="mnist_idx", data_dir=str(tmp_path / "gone"))
  json.dump(saved, open(path, "w"))
  with pytest.raises(UserError, match="is not a directory"):
    evaluate.run(_eval_config(moved), str(tmp_path / "out"))
