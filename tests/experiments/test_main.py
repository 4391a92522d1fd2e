"""The real entry point, `python -m experiments.main`, in subprocesses.

Every config file and each of its variants, every VAE model kind x likelihood x
estimator family, kill -9 and resume for every trained model, and every user
error as one line with exit status 2.
"""

import importlib
import itertools
import json
import os
import pkgutil
import re
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

import experiments
from tests.conftest import (CONFIGS, ROOT, config_path, failure_report, overrides,
                            run_main)
from vae_jax import tasks

VAE_OUTPUTS = ("config.json", "data_spec.json", "metrics.jsonl", "summary.json", "samples.png",
               "reconstructions.png", "training_curves.png")
TINY_VAE = [f"--config={config_path('vae', 'tiny')}"]
# Two fake CPU devices. They once hung or aborted under load (XLA:CPU's all-reduce
# rendezvous never met while a later program was dispatched); the trainer now keeps
# one program in flight on several CPU devices (vae_jax.sharding.wait).
TWO_DEVICES = "--xla_force_host_platform_device_count=2"


def _params_equal(workdir_a, workdir_b):
  _, a, _ = tasks.load_checkpoint(workdir_a)
  _, b, _ = tasks.load_checkpoint(workdir_b)
  assert int(a.step) == int(b.step)
  for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _json(workdir, name="summary.json"):
  with open(os.path.join(workdir, name)) as f:
    return json.load(f)


def _metrics(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f if line.strip()]


def _ok(args, **kwargs):
  proc = run_main(args, **kwargs)
  assert proc.returncode == 0, failure_report(proc)
  return proc


@pytest.mark.slow
def test_default_command_runs_the_default_vae(tmp_path):
  """`python -m experiments.main` with no --config is the VAE of configs/vae.py, run
  as a user would (JAX_PLATFORMS unset)."""
  proc = run_main(overrides({"train.num_steps": 2, "train.log_every": 1,
                             "eval.iw_samples": 2, "data.dataset": "digits"})
                  + [f"--workdir={tmp_path}"], platforms=None)
  assert proc.returncode == 0, failure_report(proc)
  # JAX's INFO line for each platform it cannot open (libtpu.so) is not logged.
  assert "Unable to initialize backend" not in proc.stderr, proc.stderr[:2000]
  config = _json(str(tmp_path), "config.json")
  default = importlib.import_module("experiments.configs.vae").get_config()
  assert config["model"]["hidden_dims"] == list(default.model.hidden_dims) == [200, 200]
  assert config["model"]["latent_dim"] == 50 and config["experiment"] == "vae"


@pytest.mark.slow
def test_end_to_end_writes_every_output(tmp_path):
  workdir = str(tmp_path / "run")
  proc = _ok(TINY_VAE + [f"--workdir={workdir}"])
  for name in VAE_OUTPUTS:
    assert os.path.getsize(os.path.join(workdir, name)) > 0, name
  with open(os.path.join(workdir, "samples.png"), "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  assert os.listdir(os.path.join(workdir, "tensorboard"))
  summary = _json(workdir)
  assert summary["step"] == 60
  assert 0 < summary["eval_neg_elbo"] < 64 * np.log(2) * 1.5  # below ~1.5 bits/pixel
  # The IWAE bound is tighter than the ELBO.
  assert summary["eval_neg_log_likelihood_iw"] < summary["eval_neg_elbo"]
  assert summary["eval_bits_per_dim"] == pytest.approx(
      summary["eval_neg_elbo"] / (64 * np.log(2)), rel=1e-6)
  # config.json is the resolved ConfigDict, sections and all.
  config = _json(workdir, "config.json")
  assert config["model"]["latent_dim"] == 4 and config["data"]["dataset"] == "digits"
  assert set(config) >= {"experiment", "seed", "data", "model", "objective", "train", "eval"}
  records = _metrics(workdir)
  train_rec = [r for r in records if r["split"] == "train"]
  assert [r["step"] for r in train_rec] == list(range(10, 61, 10))
  assert [r["step"] for r in records if r["split"] == "eval"] == [30, 60]
  for r in train_rec:
    for key in ("loss", "elbo", "recon", "kl", "grad_norm", "param_norm", "steps_per_s",
                "elbo_full_data"):
      assert key in r
  assert os.path.isdir(os.path.join(workdir, "checkpoints", "60"))
  # Progress is visible while it runs; the headline at the end.
  assert "steps/s" in proc.stderr and "ETA" in proc.stderr
  assert "eval_neg_elbo=" in proc.stdout


@pytest.mark.slow
def test_overrides_reach_the_run_and_config_json(tmp_path):
  _ok(TINY_VAE + overrides({"model.latent_dim": 3, "model.hidden_dims": "(16, 8)",
                            "model.activation": "tanh", "train.num_steps": 20})
      + [f"--workdir={tmp_path}"])
  config = _json(str(tmp_path), "config.json")
  assert config["model"]["latent_dim"] == 3 and config["model"]["hidden_dims"] == [16, 8]
  model, state, _ = tasks.load_checkpoint(str(tmp_path))
  enc = state.params["params"]["encoder"]
  assert enc["hidden_0"]["kernel"].shape == (64, 16) and enc["mean"]["kernel"].shape == (8, 3)
  assert model.encoder.activation == "tanh" and int(state.step) == 20


@pytest.mark.slow
def test_rerun_is_bit_identical_and_resume_is_a_no_op(tmp_path):
  a, b = str(tmp_path / "a"), str(tmp_path / "b")
  for w in (a, b):
    _ok(TINY_VAE + [f"--workdir={w}"])
  _params_equal(a, b)
  assert _json(a)["eval_neg_elbo"] == _json(b)["eval_neg_elbo"]
  # Running a finished workdir again trains nothing and keeps the numbers.
  proc = _ok(TINY_VAE + [f"--workdir={a}"])
  assert "Resumed from checkpoint at step 60" in proc.stderr
  assert _json(a)["eval_neg_elbo"] == _json(b)["eval_neg_elbo"]
  # No second final evaluation logged; the same numbers (throughput aside).
  strip = lambda rows: [{k: v for k, v in r.items() if k != "steps_per_s"} for r in rows]
  assert strip(_metrics(a)) == strip(_metrics(b))


@pytest.mark.slow
def test_killed_run_resumes_bit_exactly(tmp_path, name="vae"):
  """SIGKILL mid-run, re-run the same command: same state as an uninterrupted run.

  One model: killing and resuming is the one trainer's, whatever it trains; that
  each model's state resumes bit-exactly is tests/test_trainer.py's
  test_resume_and_extension_are_bit_exact, in process.
  """
  args = [f"--config={config_path(name, 'tiny')}"] + overrides({
      "train.num_steps": 400, "train.checkpoint_every": 10, "train.eval_every": 200,
      "data.binarize": "dynamic"})
  killed, clean = str(tmp_path / "killed"), str(tmp_path / "clean")
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  proc = subprocess.Popen([sys.executable, "-m", "experiments.main", *args,
                           f"--workdir={killed}"], cwd=ROOT, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  ckpt = os.path.join(killed, "checkpoints", "30")
  deadline = time.time() + 240
  while not os.path.isdir(ckpt) and time.time() < deadline and proc.poll() is None:
    time.sleep(0.01)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  steps = [int(s) for s in os.listdir(os.path.join(killed, "checkpoints")) if s.isdigit()]
  assert steps and max(steps) < 400, f"the run was not interrupted: {steps}"
  resumed = _ok(args + [f"--workdir={killed}"])
  assert "Resumed from checkpoint" in resumed.stderr
  _ok(args + [f"--workdir={clean}"])
  _params_equal(killed, clean)
  # metrics.jsonl of the resumed run has no duplicated or missing train steps, and
  # the summary is the uninterrupted run's (the discrete VAE's step-0 evaluation too).
  assert ([r["step"] for r in _metrics(killed) if r["split"] == "train"] ==
          [r["step"] for r in _metrics(clean) if r["split"] == "train"])
  timing = ("steps_per_s", "examples_per_s", "timings_s", "compilation_cache")
  assert ({k: v for k, v in _json(killed).items() if k not in timing} ==
          {k: v for k, v in _json(clean).items() if k not in timing})


@pytest.mark.slow
def test_corrupt_latest_checkpoint_falls_back_and_keeps_files(tmp_path):
  workdir = str(tmp_path / "run")
  _ok(TINY_VAE + [f"--workdir={workdir}"])
  latest = os.path.join(workdir, "checkpoints", "60")
  damaged = 0
  for root, _, files in os.walk(os.path.join(latest, "state")):
    for name in files:
      path = os.path.join(root, name)
      if os.path.getsize(path) > 0:
        with open(path, "r+b") as f:
          f.truncate(os.path.getsize(path) // 3)
        damaged += 1
  assert damaged
  proc = _ok(TINY_VAE + overrides({"train.num_steps": 90}) + [f"--workdir={workdir}"])
  assert "newest intact checkpoint" in proc.stderr
  assert os.path.isdir(os.path.join(workdir, "corrupt_checkpoints", "60"))
  assert _json(workdir)["step"] == 90


@pytest.mark.slow
def test_all_checkpoints_corrupt_is_one_clear_error(tmp_path):
  workdir = str(tmp_path / "run")
  _ok(TINY_VAE + overrides({"train.num_steps": 30}) + [f"--workdir={workdir}"])
  for root, _, files in os.walk(os.path.join(workdir, "checkpoints")):
    for name in files:
      if "state" in root:
        open(os.path.join(root, name), "wb").close()
  proc = run_main(TINY_VAE + [f"--workdir={workdir}"])
  assert proc.returncode == 2
  assert "no intact checkpoint" in proc.stderr and "Traceback" not in proc.stderr
  assert os.path.isdir(os.path.join(workdir, "checkpoints", "30"))


def _one_error_line(proc, message):
  assert proc.returncode == 2, failure_report(proc)
  assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
  error_lines = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
  assert len(error_lines) == 1, proc.stderr[-3000:]
  assert message in error_lines[0], error_lines[0]


@pytest.mark.parametrize("args,message", [
    (overrides({"model.latnt_dim": 3}),
     "--config.model.latnt_dim: no such setting in the config; did you mean 'latent_dim'?"),
    ([f"--config={config_path('gmm')}"] + overrides({"gmm.num_componentz": 3}),
     "--config.gmm.num_componentz: no such setting"),
    ([f"--config={config_path('vae', 'nope')}"], "unknown config variant 'nope'"),
    (["--config=experiments/configs/nothere.py"], "No such file or directory"),
    (overrides({"model.latent_dim": "abc"}), "--config.model.latent_dim=abc"),
    (overrides({"data.dataset": "imagenet"}), "--config.data.dataset must be one of"),
    (overrides({"data.dataset": "mnist_idx", "data.data_dir": "/nonexistent"}),
     "is not a directory"),
    (overrides({"train.learning_rate": 0.0}), "--config.train.learning_rate must be a positive"),
    (overrides({"train.learning_rate": "nan"}), "--config.train.learning_rate must be a"),
    (overrides({"train.batch_size": 0}), "--config.train.batch_size must be a positive integer"),
    (overrides({"model.latent_dim": -3}), "--config.model.latent_dim must be a positive"),
    (overrides({"model.hidden_dims": "(10, -1)"}), "--config.model.hidden_dims must be"),
    (overrides({"model.kind": "transformer"}), "--config.model.kind must be one of mlp, conv"),
    (overrides({"objective.estimator": "vimco"}), "num_samples >= 2"),
    (overrides({"train.batch_size": 5000}), "is larger than the training set"),
    (["extra_positional"], "unexpected arguments: extra_positional"),
    ([f"--config={config_path('evaluate')}", "--config.checkpoint=/nonexistent"],
     "--config.checkpoint=/nonexistent is not a directory"),
    ([f"--config={config_path('evaluate')}", "--config.checkpoint=/tmp",
      "--config.iw_samples=0"], "--config.iw_samples must be a positive integer"),
])
@pytest.mark.slow
def test_bad_input_gives_one_clear_line(tmp_path, args, message):
  base = TINY_VAE if not any(a.startswith("--config=") for a in args) else []
  _one_error_line(run_main(base + args + [f"--workdir={tmp_path / 'w'}"], timeout=120),
                  message)


BROKEN_CONFIG = """
def get_config(arg=None):
  raise RuntimeError("this config is broken: 'x'")
"""


@pytest.mark.parametrize("args,line", [
    # A config's own error says it all; the exception class is noise.
    ([f"--config={config_path('gmm', 'tnyi')}"],
     "error: unknown config variant 'tnyi'; this config has: mnist_pca, tiny."),
    # absl's message, closing quote included.
    (overrides({"train.batch_size": "abc"}),
     "error: flag --config.train.batch_size=abc: invalid literal for int() with base 10: 'abc'"),
    # An unexpected error in a config file keeps its class.
    (["--config={broken}"], "error: RuntimeError: this config is broken: 'x'"),
])
@pytest.mark.slow
def test_error_lines_read_exactly(tmp_path, args, line):
  broken = tmp_path / "broken.py"
  broken.write_text(BROKEN_CONFIG)
  args = [a.format(broken=broken) for a in args]
  base = TINY_VAE if not any(a.startswith("--config=") for a in args) else []
  proc = run_main(base + args + [f"--workdir={tmp_path / 'w'}"], timeout=120)
  _one_error_line(proc, line)
  assert [l for l in proc.stderr.splitlines() if l.startswith("error:")] == [line]


@pytest.mark.slow
def test_workdir_that_is_a_file_is_refused(tmp_path):
  (tmp_path / "file").write_text("not a directory")
  _one_error_line(run_main(TINY_VAE + [f"--workdir={tmp_path / 'file'}"]),
                  "exists and is not a directory")


@pytest.mark.slow
def test_conflicting_workdir_is_refused(tmp_path):
  workdir = str(tmp_path / "run")
  _ok(TINY_VAE + overrides({"train.num_steps": 10}) + [f"--workdir={workdir}"])
  proc = run_main(TINY_VAE + overrides({"model.hidden_dims": "(16,)"})
                  + [f"--workdir={workdir}"])
  _one_error_line(proc, "model.hidden_dims: saved [32], now [16]")
  # Without its config.json the checkpoints themselves say it is another model,
  # and the workdir is left as it was (no config.json of the refused run).
  os.remove(os.path.join(workdir, "config.json"))
  proc = run_main(TINY_VAE + overrides({"model.latent_dim": 3}) + [f"--workdir={workdir}"])
  _one_error_line(proc, "holds a different model (params/params/decoder/mlp/dense_0/kernel: "
                  "checkpoint ((4, 32), 'float32'), this run ((3, 32), 'float32')")
  assert not os.path.exists(os.path.join(workdir, "config.json"))


@pytest.mark.slow
def test_helpfull_documents_the_runner():
  proc = run_main(["--helpfull"], timeout=120)
  text = proc.stdout + proc.stderr
  for word in ("--config", "--workdir", "experiments/configs/", "--config.<section>.<key>",
               "evaluate.py", "burda2015.py", "iwae_k50", "mnist_pca"):
    assert word in text, word


def test_an_unmarked_test_may_not_start_the_runner():
  """The unit tier (pytest -m "not slow") starts no process: run_main says so."""
  with pytest.raises(pytest.fail.Exception, match="mark it @pytest.mark.slow"):
    run_main(["--helpfull"])


def test_help_lists_every_config_with_its_experiment_and_variants():
  """--help's catalog is read from experiments/configs/ as it is: every config file,
  the experiment it runs and each of its variants; every experiment has a config."""
  rows = experiments.catalog().splitlines()
  run_by_configs = set()
  for name in _config_modules():
    at = [i for i, row in enumerate(rows) if row.split()[:1] == [f"{name}.py"]]
    assert at, f"{name}.py is not listed by --help"
    config_module = importlib.import_module(f"experiments.configs.{name}")
    experiment = config_module.get_config(None).experiment
    assert rows[at[0]].split() == [f"{name}.py", "experiment", experiment]
    run_by_configs.add(experiment)
    listed = " ".join(itertools.takewhile(lambda row: row.startswith("    "), rows[at[0] + 1:]))
    for variant in config_module.VARIANTS:
      assert re.search(rf"\b{variant}\b", listed), (name, variant)
  assert run_by_configs == set(experiments.names())
  assert set(experiments.multi_process()) == {"vae", "discrete_vae", "autoregressive"}
  with pytest.raises(LookupError, match="'main' is not an experiment; choose one of "
                                        "amortization, autoregressive, bayes"):
    experiments.module("main")


@pytest.mark.slow
def test_data_parallel_over_two_devices_matches_one(tmp_path, name="vae"):
  """Two (fake CPU) devices: batch sharded, state replicated, same numbers.

  The discrete VAE and MADE train on two devices in tests/experiments/
  test_distributed.py (two processes, one device each, against one process).
  """
  args = [f"--config={config_path(name, 'tiny')}"] + overrides({"train.num_steps": 30})
  one, two = str(tmp_path / "one"), str(tmp_path / "two")
  _ok(args + [f"--workdir={one}"])
  env = dict(os.environ, XLA_FLAGS=TWO_DEVICES)
  _ok(args + [f"--workdir={two}"], env=env)
  s1, s2 = _json(one), _json(two)
  assert s1["device_count"] == 1 and s2["device_count"] == 2
  key = {"vae": "eval_neg_elbo", "discrete_vae": "eval_exact_nll",
         "autoregressive": "eval_nll"}[name]
  assert s2[key] == pytest.approx(s1[key], rel=1e-4)
  if name == "vae":
    bad = run_main(args + overrides({"train.batch_size": 51})
                   + [f"--workdir={tmp_path / 'bad'}"], env=env)
    _one_error_line(bad, "--config.train.batch_size=51 is not divisible by the 2 devices")


# ----------------------------------------------------------------------------
# Every config file, every variant, every VAE kind x likelihood x estimator family.
# ----------------------------------------------------------------------------

# (config, variants, overrides that keep it to seconds): each declared variant
# runs end to end through the runner on tiny data.
VARIANT_RUNS = [
    ("vae", "tiny", {}),
    ("vae", "conv,tiny", {}),
    ("vae", "gaussian,tiny", {}),
    ("vae", "vem,tiny", {}),
    ("vae", "mnist_idx,tiny", {"train.num_steps": 20, "eval.iw_samples": 2}),
    ("vae", "tiny,planar", {"train.num_steps": 20}),
    ("vae", "tiny,iaf,mog", {"train.num_steps": 20}),
    ("vae", "tiny,coupling", {"train.num_steps": 20}),
    ("vae", "tiny,vamp", {"train.num_steps": 20}),
    ("vae", "tiny,savae", {"train.num_steps": 20}),
    ("discrete_vae", "tiny", {}),
    ("autoregressive", "tiny", {}),
    ("estimator_variance", "tiny", {}),
    ("estimator_variance", "digits", {"variance.steps": "(0, 10)", "variance.draws": 4,
                                      "variance.num_samples": "(2, 4)",
                                      "variance.estimators": '("reparam", "score_loo")'}),
    ("amortization", "tiny,l2", {"amortization.posteriors": '("gaussian", "iaf")',
                                 "train.num_steps": 30}),
    ("priors", "tiny,cpu", {"train.num_steps": 20, "train.eval_every": 20,
                            "train.checkpoint_every": 20, "train.log_every": 10,
                            "priors.priors": '("standard", "vamp")', "priors.iw_samples": 10,
                            "priors.eval_examples": 20}),
    ("gmm", "tiny", {}),
    ("gmm", "mnist_pca,tiny", {"gmm.em_iters": 20}),
    ("ppca", "tiny", {}),
    ("bayes", "tiny", {}),
    ("evaluate", "tiny", {}),
] + [("burda2015", f"{name},cpu", {"train.num_steps": 20, "train.eval_every": 20,
                                   "train.checkpoint_every": 20, "train.log_every": 10})
     for name in ("vae_k1", "vae_k5", "vae_k50", "iwae_k1", "iwae_k5", "iwae_k50",
                  "vae2_k1", "vae2_k5", "vae2_k50", "iwae2_k1", "iwae2_k5", "iwae2_k50")]
SUMMARY_KEY = {"vae": "eval_neg_elbo", "discrete_vae": "eval_exact_nll",
               "autoregressive": "eval_nll", "estimator_variance": "variance",
               "amortization": "amortization_gap", "gmm": "train_log_likelihood",
               "ppca": "closed_form_log_likelihood", "bayes": "table",
               "evaluate": "nll_iw", "burda2015": "eval_neg_elbo", "priors": "table"}


def _config_modules():
  return [m.name for m in pkgutil.iter_modules([CONFIGS]) if m.name != "common"]


def test_every_variant_of_every_config_is_run_below():
  declared = {(name, v) for name in _config_modules()
              for v in importlib.import_module(f"experiments.configs.{name}").VARIANTS}
  covered = {(name, v) for name, variants, _ in VARIANT_RUNS for v in variants.split(",")}
  assert declared <= covered, declared - covered
  assert {name for name, _, _ in VARIANT_RUNS} == set(_config_modules())


@pytest.mark.parametrize("name,variants,settings", VARIANT_RUNS,
                         ids=[f"{n}:{v}" for n, v, _ in VARIANT_RUNS])
@pytest.mark.slow
def test_config_variant_runs_end_to_end(tmp_path, shared_mnist_or_none, name, variants,
                                        settings):
  settings = dict(settings)
  if name == "evaluate":             # evaluates a run: train a tiny VAE first
    settings["checkpoint"] = str(tmp_path / "trained")
    _ok(TINY_VAE + [f"--workdir={tmp_path / 'trained'}"])
  if "cpu" in variants and shared_mnist_or_none is None:
    pytest.skip("shared MNIST test images not present (../shared/data/mnist)")
  if "mnist_idx" in variants:
    if shared_mnist_or_none is None:
      pytest.skip("shared MNIST test images not present (../shared/data/mnist)")
    idx = tmp_path / "idx"   # the t10k files serve as both splits
    idx.mkdir()
    for split in ("train", "t10k"):
      for kind in ("images-idx3", "labels-idx1"):
        os.symlink(os.path.join(shared_mnist_or_none, f"t10k-{kind}-ubyte.gz"),
                   idx / f"{split}-{kind}-ubyte.gz")
    settings["data.data_dir"] = str(idx)
  workdir = str(tmp_path / "run")
  _ok([f"--config={config_path(name, variants)}"] + overrides(settings)
      + [f"--workdir={workdir}"])
  summary = _json(workdir, "evaluation.json" if name == "evaluate" else "summary.json")
  assert SUMMARY_KEY[name] in summary, sorted(summary)
  pngs = [f for f in os.listdir(workdir) if f.endswith(".png")]
  assert pngs and all(os.path.getsize(os.path.join(workdir, f)) > 0 for f in pngs)
  # burda2015's recipes are VAE configs.
  assert _json(workdir, "config.json")["experiment"] == {"burda2015": "vae"}.get(name, name)


@pytest.fixture
def shared_mnist_or_none():
  from tests.conftest import SHARED_MNIST  # pylint: disable=g-import-not-at-top
  path = os.path.abspath(SHARED_MNIST)
  return path if os.path.exists(os.path.join(path, "t10k-images-idx3-ubyte.gz")) else None


FAMILIES = {"elbo": "reparam", "score": "score_loo", "iwae": "vimco"}
# Every pair of (kind, likelihood, estimator family) values runs together at least
# once (a pairwise design: 6 runs instead of the 12 of the full product).
KIND_LIKELIHOOD_FAMILY = [("mlp", "bernoulli", "elbo"), ("conv", "gaussian", "elbo"),
                          ("mlp", "gaussian", "score"), ("conv", "bernoulli", "score"),
                          ("mlp", "gaussian", "iwae"), ("conv", "bernoulli", "iwae")]


def test_the_runs_below_cover_every_pair():
  for i, j in itertools.combinations(range(3), 2):
    values = [sorted({run[i] for run in KIND_LIKELIHOOD_FAMILY}),
              sorted({run[j] for run in KIND_LIKELIHOOD_FAMILY})]
    assert ({(run[i], run[j]) for run in KIND_LIKELIHOOD_FAMILY}
            == set(itertools.product(*values)))
  assert {run[2] for run in KIND_LIKELIHOOD_FAMILY} == set(FAMILIES)


@pytest.mark.parametrize("kind,likelihood,family", KIND_LIKELIHOOD_FAMILY)
@pytest.mark.slow
def test_vae_kind_likelihood_and_estimator_family(tmp_path, kind, likelihood, family):
  variants = ",".join(["conv"] * (kind == "conv") + ["gaussian"] * (likelihood == "gaussian")
                      + ["tiny"])
  workdir = str(tmp_path / "run")
  _ok([f"--config={config_path('vae', variants)}"]
      + overrides({"objective.estimator": FAMILIES[family], "objective.num_samples": 2,
                   "train.num_steps": 20, "train.eval_every": 20,
                   "train.checkpoint_every": 20})
      + [f"--workdir={workdir}"])
  config = _json(workdir, "config.json")
  assert (config["model"]["kind"], config["model"]["likelihood"],
          config["objective"]["estimator"]) == (kind, likelihood, FAMILIES[family])
  summary = _json(workdir)
  assert summary["step"] == 20 and np.isfinite(summary["eval_neg_elbo"])
  assert summary["eval_neg_log_likelihood_iw"] <= summary["eval_neg_elbo"] + 1.0


@pytest.mark.slow
def test_checkpoints_move_between_device_counts(tmp_path):
  """Checkpointed on 8 (fake CPU) devices, resumed on 1 and on 2: the same numbers as
  an uninterrupted run; and 8 devices train like 1."""
  args = TINY_VAE + overrides({"train.batch_size": 40, "train.checkpoint_every": 15,
                               "train.eval_every": 60, "eval.batch_size": 128})
  devices = lambda n: dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={n}")
  first = str(tmp_path / "eight")
  _ok(args + overrides({"train.num_steps": 30}) + [f"--workdir={first}"], env=devices(8))
  assert _json(first)["device_count"] == 8
  for n in (1, 2):
    moved = str(tmp_path / f"moved_to_{n}")
    shutil.copytree(first, moved)
    proc = _ok(args + [f"--workdir={moved}"], env=devices(n))
    assert "Resumed from checkpoint at step 30" in proc.stderr
  one, eight = str(tmp_path / "one"), str(tmp_path / "eight_full")
  _ok(args + [f"--workdir={one}"], env=devices(1))
  _ok(args + [f"--workdir={eight}"], env=devices(8))
  reference = _json(one)["eval_neg_elbo"]
  for n in (1, 2):
    got = _json(str(tmp_path / f"moved_to_{n}"))
    assert got["step"] == 60 and got["device_count"] == n
    assert got["eval_neg_elbo"] == pytest.approx(reference, rel=1e-5)
  assert _json(eight)["eval_neg_elbo"] == pytest.approx(reference, rel=1e-4)
