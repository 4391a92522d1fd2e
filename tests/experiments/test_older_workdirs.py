"""A workdir saved before a config key existed resumes and evaluates, through the runner.

The legacy fixture's config.json, less two keys that the config file has
(``model.activation``, read to build the network, and ``objective.free_bits``,
an identity key of the resume check), stands for a run written before those
keys were added: no entry in ``workdir.upgrade_config`` names them. The keys
the user changes are still refused.
"""

import json
import math
import os
import shutil

import pytest

from tests.conftest import ROOT, config_path, failure_report, run_main

LEGACY = os.path.join(ROOT, "tests", "data", "legacy_vae_tiny")
# The legacy run's q head output log sigma (workdir.PRE_SCALE_HEAD_MODEL_KEYS).
RESUME = [f"--config={config_path('vae', 'tiny')}", "--config.model.scale_head=log_scale"]


def _json(workdir, name):
  with open(os.path.join(workdir, name)) as f:
    return json.load(f)


@pytest.fixture
def older_run(tmp_path):
  workdir = str(tmp_path / "older")
  shutil.copytree(LEGACY, workdir, ignore=shutil.ignore_patterns("expected.json"))
  saved = _json(workdir, "config.json")
  del saved["model"]["activation"], saved["objective"]["free_bits"]
  with open(os.path.join(workdir, "config.json"), "w") as f:
    json.dump(saved, f)
  return workdir


def _refused(proc, message):
  assert proc.returncode == 2, failure_report(proc)
  errors = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
  assert len(errors) == 1 and message in errors[0], proc.stderr[-3000:]


@pytest.mark.slow
def test_a_run_saved_before_a_key_existed_evaluates_and_resumes(older_run, tmp_path):
  # Changes are refused, whether the saved run has the key or predates it.
  _refused(run_main(RESUME + ["--config.model.latent_dim=8", f"--workdir={older_run}"]),
           "model.latent_dim: saved 4, now 8")
  _refused(run_main(RESUME + ["--config.objective.free_bits=0.5", f"--workdir={older_run}"]),
           "objective.free_bits: saved 0.0 (its default: the run predates the key), now 0.5")
  _refused(run_main(RESUME + ["--config.model.activation=tanh", f"--workdir={older_run}"]),
           "model.activation: saved 'relu' (its default: the run predates the key), now 'tanh'")
  # Evaluating it builds the network from the config file's defaults.
  out = str(tmp_path / "eval")
  proc = run_main([f"--config={config_path('evaluate', 'tiny')}",
                   f"--config.checkpoint={older_run}", f"--workdir={out}"])
  assert proc.returncode == 0, failure_report(proc)
  assert _json(out, "evaluation.json")["step"] == 30
  assert math.isfinite(_json(out, "evaluation.json")["nll"])
  # Resuming it trains on to the legacy run's own numbers (as test_families checks
  # for the unedited fixture), and its config.json gains the keys.
  proc = run_main(RESUME + [f"--workdir={older_run}"])
  assert proc.returncode == 0, failure_report(proc)
  assert "Resumed from checkpoint at step 30" in proc.stderr
  expected = _json(LEGACY, "expected.json")["resumed_to_60"]
  summary = _json(older_run, "summary.json")
  assert summary["step"] == 60
  for key in ("eval_neg_elbo", "eval_kl", "eval_recon"):
    assert summary[key] == pytest.approx(expected[key], rel=1e-4), key
  saved = _json(older_run, "config.json")
  assert saved["model"]["activation"] == "relu" and saved["objective"]["free_bits"] == 0.0
