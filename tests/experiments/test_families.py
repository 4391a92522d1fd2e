"""Variational families through the real entry point, `python -m experiments.main`.

Every posterior x prior the registries find (vae_jax.families) trains
on tiny data, with the estimators each supports; the evaluate experiment on a
flow run; every bad family setting as one error line that leaves an existing
run alone; bit-exact resume with a learned prior; a checkpoint written before
the families existed loads, evaluates and resumes to the old code's numbers;
bfloat16 and two devices.
"""

import itertools
import json
import math
import os
import shutil

import jax
import numpy as np
import pytest

from tests.conftest import (ROOT, config_path, failure_report, get_config, overrides,
                            run_main)
from vae_jax import tasks
from vae_jax.families.posteriors import REGISTRY as POSTERIOR_REGISTRY
from vae_jax.families.priors import REGISTRY as PRIOR_REGISTRY

# Every part the registries find must run below: a new family fails
# test_every_posterior_and_prior_is_run_below until FAMILY_RUNS trains it.
POSTERIORS = POSTERIOR_REGISTRY.names()
PRIORS = PRIOR_REGISTRY.names()
LEGACY = os.path.join(ROOT, "tests", "data", "legacy_vae_tiny")
TWO_DEVICES = "--xla_force_host_platform_device_count=2"
SHORT = {"train.num_steps": 20}


def _vae(variants=""):
  """--config for vae.py:tiny plus the comma-separated family ``variants``."""
  return [f"--config={config_path('vae', f'tiny,{variants}' if variants else 'tiny')}"]


def _json(workdir, name="summary.json"):
  with open(os.path.join(workdir, name)) as f:
    return json.load(f)


def _ok(args, **kwargs):
  proc = run_main(args, **kwargs)
  assert proc.returncode == 0, failure_report(proc)
  return proc


def _one_error_line(proc, *messages):
  assert proc.returncode == 2, failure_report(proc)
  assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
  error_lines = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
  assert len(error_lines) == 1, proc.stderr[-3000:]
  for message in messages:
    assert message in error_lines[0], error_lines[0]


def _listing(workdir):
  """{path: (size, mtime_ns)} of every file and folder under ``workdir``."""
  found = {}
  for root, dirs, files in os.walk(workdir):
    for name in dirs + files:
      path = os.path.join(root, name)
      stat = os.stat(path)
      found[os.path.relpath(path, workdir)] = (stat.st_size, stat.st_mtime_ns)
  return found


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """trained(variants, settings) -> the workdir of that tiny run, trained once per
  module (the runs are shared by the tests below; none of them writes into one)."""
  runs = {}

  def train(variants="", settings=None):
    settings = dict(SHORT, **(settings or {}))
    key = (variants, tuple(sorted(settings.items())))
    if key not in runs:
      workdir = str(tmp_path_factory.mktemp("run"))
      _ok(_vae(variants) + overrides(settings) + [f"--workdir={workdir}"])
      runs[key] = workdir
    return runs[key]

  return train


# ----------------------------------------------------------------------------
# Every posterior x prior trains, with the estimators each family supports.
# ----------------------------------------------------------------------------

# (variants, settings): the gaussian posterior with a learned prior (mog, vamp:
# a Monte-Carlo KL) covers the estimators that need log q(z|x) at a given z; the
# flows without a density (planar, iaf) get the two they support (reparam, iwae);
# the coupling flow, which has one, trains with each estimator in tests/test_coupling.py.
FAMILY_RUNS = [
    ("", {}),
    ("mog", {"objective.estimator": "score_loo", "objective.num_samples": 2}),
    ("mog", {"objective.estimator": "vimco", "objective.num_samples": 2}),
    ("mog", {"objective.estimator": "dreg", "objective.num_samples": 2}),
    ("mog", {"objective.estimator": "iwae", "objective.num_samples": 2}),
    ("vamp", {"objective.estimator": "stl"}),
    ("planar", {}),
    ("planar,mog", {}),
    ("planar,vamp", {"objective.estimator": "iwae", "objective.num_samples": 2}),
    ("iaf", {}),
    ("iaf,mog", {"objective.kl_warmup_steps": 10}),
    ("iaf,vamp", {}),
    ("coupling", {}),
    ("coupling,mog", {"objective.estimator": "iwae", "objective.num_samples": 2}),
    ("coupling,vamp", {"objective.kl_warmup_steps": 10}),
]


def _family(variants, settings=None):
  """(posterior, prior) of vae.py:tiny with the ``variants`` and ``settings``."""
  model = get_config("vae", f"tiny,{variants}" if variants else "tiny").model
  settings = {k.split(".", 1)[1]: v for k, v in (settings or {}).items()
              if k.startswith("model.")}
  return (settings.get("posterior", model.posterior), settings.get("prior", model.prior))


@pytest.mark.slow
def test_every_posterior_and_prior_is_run_below():
  assert {_family(v, s) for v, s in FAMILY_RUNS} == set(itertools.product(POSTERIORS, PRIORS))


def _run_id(variants, settings):
  """"planar,vamp-iwae", "iaf,mog-kl_warmup_steps", "gaussian"."""
  return "-".join([variants or "gaussian"] + [
      str(v) if k == "objective.estimator" else k.split(".")[-1]
      for k, v in settings.items() if k != "objective.num_samples"])


@pytest.mark.slow
@pytest.mark.parametrize("variants,settings", FAMILY_RUNS,
                         ids=[_run_id(v, s) for v, s in FAMILY_RUNS])
def test_family_trains_and_bounds_are_finite(trained, variants, settings):
  workdir = trained(variants, settings)
  summary = _json(workdir)
  assert summary["step"] == 20
  assert summary["estimator"] == settings.get("objective.estimator", "reparam")
  elbo, iw = summary["eval_neg_elbo"], summary["eval_neg_log_likelihood_iw"]
  assert math.isfinite(elbo) and math.isfinite(iw), summary
  assert iw <= elbo + 1, summary      # IWAE-K is tighter than the ELBO, up to noise
  posterior, prior = _family(variants)
  model = _json(workdir, "config.json")["model"]
  assert (model["posterior"], model["prior"]) == (posterior, prior)
  assert (model["flow_steps"] is None) == (posterior == "gaussian")
  assert (model["prior_components"] is None) == (prior == "standard")


# ----------------------------------------------------------------------------
# The evaluate experiment on a family run.
# ----------------------------------------------------------------------------


@pytest.mark.slow
def test_evaluate_a_flow_run(tmp_path, trained):
  """An IAF posterior with the VampPrior. (The Gaussian posterior with N(0, I), which
  has a KL per dimension, is evaluated below: the run written before the families.)"""
  run = trained("iaf,vamp")
  out = str(tmp_path / "out")
  _ok([f"--config={config_path('evaluate', 'tiny')}", f"--config.checkpoint={run}",
       "--config.max_examples=60", f"--workdir={out}"])
  result = _json(out, "evaluation.json")
  assert result["nll_method"] == "iwae" and result["num_examples"] == 60
  assert math.isfinite(result["nll"]) and math.isfinite(result["elbo"]), result
  assert math.isfinite(result["kl"]), result       # Monte-Carlo
  assert result["nll"] <= -result["elbo"] + 3 * result["nll_iw_stderr"] + 1, result
  assert result["kl_per_dim"] is None              # no closed form for a flow


# ----------------------------------------------------------------------------
# Bad family settings: one error line naming the key; an existing run untouched.
# ----------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("variants,settings,messages", [
    ("", {"model.posterior": "realnvp"},
     [f"--config.model.posterior must be one of {', '.join(POSTERIORS)}",
      "'realnvp'"]),
    ("", {"model.prior": "flow"}, ["--config.model.prior must be one of", "'flow'"]),
    ("planar", {"model.flow_steps": 0}, ["--config.model.flow_steps must be a positive integer"]),
    ("", {"model.flow_steps": 2}, ["--config.model.flow_steps=2", "Leave it unset"]),
    ("mog", {"model.prior_components": 0},
     ["--config.model.prior_components must be a positive integer"]),
    ("", {"model.prior_components": 3}, ["--config.model.prior_components=3", "Leave it unset"]),
    ("planar", {"objective.free_bits": 0.1},
     ["--config.objective.free_bits", "posterior=planar"]),
    ("vamp", {"objective.free_bits": 0.1}, ["--config.objective.free_bits", "prior=vamp"]),
    ("iaf", {"objective.estimator": "score"},
     ["--config.objective.estimator=score", "reparam, iwae"]),
    ("planar", {"objective.estimator": "stl"},
     ["--config.objective.estimator=stl", "reparam, iwae"]),
    # A workdir that holds a gaussian run refuses a planar one.
    ("planar", {}, ["model.posterior: saved 'gaussian', now 'planar'"]),
], ids=["posterior", "prior", "flow_steps=0", "flow_steps_gaussian", "prior_components=0",
        "prior_components_standard", "free_bits_flow", "free_bits_vamp", "score_iaf",
        "stl_planar", "other_family_workdir"])
def test_bad_family_gives_one_line_and_leaves_the_run_alone(trained, variants, settings,
                                                            messages):
  workdir = trained()     # vae.py:tiny, 20 steps
  before = _listing(workdir)
  proc = run_main(_vae(variants) + overrides(dict(SHORT, **settings))
                  + [f"--workdir={workdir}"], timeout=120)
  _one_error_line(proc, *messages)
  assert _listing(workdir) == before


# ----------------------------------------------------------------------------
# Resume with a learned prior is bit-exact.
# ----------------------------------------------------------------------------


@pytest.mark.slow
def test_resume_with_a_learned_prior_is_bit_exact(tmp_path):
  args = _vae("planar,mog")
  clean, resumed = str(tmp_path / "clean"), str(tmp_path / "resumed")
  _ok(args + overrides({"train.num_steps": 60}) + [f"--workdir={clean}"])
  _ok(args + overrides({"train.num_steps": 30}) + [f"--workdir={resumed}"])
  proc = _ok(args + overrides({"train.num_steps": 60}) + [f"--workdir={resumed}"])
  assert "Resumed from checkpoint at step 30" in proc.stderr
  _, a, _ = tasks.load_checkpoint(clean)
  _, b, _ = tasks.load_checkpoint(resumed)
  assert int(a.step) == int(b.step) == 60
  assert "prior" in a.params["params"]          # the learned mixture is compared too
  flat_a = jax.tree_util.tree_leaves_with_path(a.params)
  flat_b = jax.tree_util.tree_leaves_with_path(b.params)
  assert [p for p, _ in flat_a] == [p for p, _ in flat_b]
  for (path, x), (_, y) in zip(flat_a, flat_b):
    assert np.array_equal(np.asarray(x), np.asarray(y)), jax.tree_util.keystr(path)
  assert _json(clean)["eval_neg_elbo"] == _json(resumed)["eval_neg_elbo"]


# ----------------------------------------------------------------------------
# A run written before the families: loads, evaluates, resumes to the old numbers.
# ----------------------------------------------------------------------------


@pytest.fixture
def legacy_run(tmp_path):
  workdir = str(tmp_path / "legacy")
  shutil.copytree(LEGACY, workdir, ignore=shutil.ignore_patterns("expected.json"))
  # Runs saved from 2026-12-02 until the key was removed also hold
  # train.xla_cpu_tree_reduction: the copy carries it, so the old-run tests cover it.
  config = _json(workdir, "config.json")
  config["train"]["xla_cpu_tree_reduction"] = True
  with open(os.path.join(workdir, "config.json"), "w") as f:
    json.dump(config, f)
  return workdir


@pytest.fixture(scope="module")
def legacy_expected():
  with open(os.path.join(LEGACY, "expected.json")) as f:
    return json.load(f)


@pytest.mark.slow
def test_legacy_config_has_no_family_keys():
  model = _json(LEGACY, "config.json")["model"]
  assert not {"posterior", "flow_steps", "prior", "prior_components"} & set(model)


@pytest.mark.slow
def test_legacy_checkpoint_loads(legacy_run):
  _, state, config = tasks.load_checkpoint(legacy_run)
  assert int(state.step) == 30
  assert (config.model.posterior, config.model.prior) == ("gaussian", "standard")
  assert config.model.flow_steps is None and config.model.prior_components is None
  assert set(state.params["params"]) == {"encoder", "decoder"}


@pytest.mark.slow
def test_legacy_checkpoint_evaluates(tmp_path, legacy_run, legacy_expected):
  out = str(tmp_path / "out")
  _ok([f"--config={config_path('evaluate', 'tiny')}", f"--config.checkpoint={legacy_run}",
       f"--workdir={out}"])
  result = _json(out, "evaluation.json")
  assert result["step"] == 30 and math.isfinite(result["nll"]), result
  assert isinstance(result["kl_per_dim"], list) and len(result["kl_per_dim"]) == 4
  assert sum(result["kl_per_dim"]) == pytest.approx(result["kl"], rel=1e-4)
  # The old code's weights: the analytic KL is the one it reported at step 30, the
  # -ELBO that up to Monte-Carlo noise, and K = 50 beats its K = 8 bound.
  old = legacy_expected["at_step_30"]
  assert result["kl"] == pytest.approx(old["eval_kl"], rel=1e-4)
  assert -result["elbo"] == pytest.approx(old["eval_neg_elbo"], abs=0.5)
  assert result["nll"] < old["eval_neg_log_likelihood_iw"] + 0.2


@pytest.mark.slow
def test_legacy_checkpoint_resumes_to_the_old_numbers(legacy_run, legacy_expected):
  assert _json(legacy_run, "config.json")["train"]["num_steps"] == 30
  assert get_config("vae", "tiny").train.num_steps == 60
  # Its q head output log sigma (the configs' default is now log sigma^2).
  proc = _ok(_vae() + ["--config.model.scale_head=log_scale", f"--workdir={legacy_run}"])
  assert "Resumed from checkpoint at step 30" in proc.stderr
  summary, expected = _json(legacy_run), legacy_expected["resumed_to_60"]
  assert summary["step"] == 60
  for key in ("eval_neg_elbo", "eval_kl", "eval_recon"):
    assert summary[key] == pytest.approx(expected[key], rel=1e-4), key
  # The IWAE log-weights are now computed from eps: another rounding.
  assert summary["eval_neg_log_likelihood_iw"] == pytest.approx(
      expected["eval_neg_log_likelihood_iw"], rel=1e-3)


# ----------------------------------------------------------------------------
# bfloat16 and two devices.
# ----------------------------------------------------------------------------


@pytest.mark.slow
def test_family_in_bfloat16_ends_finite(tmp_path):
  workdir = str(tmp_path / "bf16")
  _ok(_vae("iaf,mog") + overrides(dict(SHORT, **{"train.compute_dtype": "bfloat16"}))
      + [f"--workdir={workdir}"])
  summary = _json(workdir)
  assert summary["step"] == 20
  assert math.isfinite(summary["eval_neg_elbo"]), summary
  assert math.isfinite(summary["eval_neg_log_likelihood_iw"]), summary


@pytest.mark.slow
def test_family_over_two_devices_matches_one(tmp_path, trained):
  settings = {"objective.estimator": "iwae", "objective.num_samples": 2}
  one = trained("planar,vamp", settings)      # also a row of FAMILY_RUNS
  two = str(tmp_path / "two")
  _ok(_vae("planar,vamp") + overrides(dict(SHORT, **settings)) + [f"--workdir={two}"],
      env=dict(os.environ, XLA_FLAGS=TWO_DEVICES))
  s1, s2 = _json(one), _json(two)
  assert s1["device_count"] == 1 and s2["device_count"] == 2
  assert s2["eval_neg_elbo"] == pytest.approx(s1["eval_neg_elbo"], rel=1e-4)
