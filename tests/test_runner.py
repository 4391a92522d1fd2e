"""The real entry point, `python -m experiments.main`, in subprocesses."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from conftest import ROOT, TINY_VAE, failure_report, flag_args, run_main
from vae_jax import train

OUTPUTS = ("config.json", "metrics.jsonl", "summary.json", "samples.png",
           "reconstructions.png", "training_curves.png")


def _params_equal(workdir_a, workdir_b):
  _, a, _ = train.load_checkpoint(workdir_a)
  _, b, _ = train.load_checkpoint(workdir_b)
  assert int(a.step) == int(b.step)
  for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _metrics(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f if line.strip()]


def test_end_to_end_writes_every_output(tmp_path):
  workdir = str(tmp_path / "run")
  proc = run_main(flag_args(TINY_VAE) + [f"--workdir={workdir}"])
  assert proc.returncode == 0, failure_report(proc)
  for name in OUTPUTS:
    path = os.path.join(workdir, name)
    assert os.path.getsize(path) > 0, name
  with open(os.path.join(workdir, "samples.png"), "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  summary = json.load(open(os.path.join(workdir, "summary.json")))
  for key in ("eval_neg_elbo", "eval_bits_per_dim", "steps_per_s", "step",
              "eval_neg_log_likelihood_iw"):
    assert key in summary
  assert summary["step"] == TINY_VAE["num_steps"]
  assert 0 < summary["eval_neg_elbo"] < 64 * np.log(2) * 1.5  # below ~1.5 bits/pixel
  # The IWAE bound is tighter than the ELBO.
  assert summary["eval_neg_log_likelihood_iw"] < summary["eval_neg_elbo"]
  assert summary["eval_bits_per_dim"] == pytest.approx(
      summary["eval_neg_elbo"] / (64 * np.log(2)), rel=1e-6)
  config = json.load(open(os.path.join(workdir, "config.json")))
  assert config["latent_dim"] == 4 and config["dataset"] == "digits"
  records = _metrics(workdir)
  train_rec = [r for r in records if r["split"] == "train"]
  eval_rec = [r for r in records if r["split"] == "eval"]
  assert [r["step"] for r in train_rec] == list(range(10, 61, 10))
  assert [r["step"] for r in eval_rec] == [30, 60]
  for r in train_rec:
    for key in ("loss", "elbo", "recon", "kl", "grad_norm", "param_norm", "steps_per_s"):
      assert key in r
  assert os.path.isdir(os.path.join(workdir, "checkpoints", "60"))
  # Progress is visible while it runs.
  assert "steps/s" in proc.stderr and "ETA" in proc.stderr
  assert "eval_neg_elbo=" in proc.stdout


def test_rerun_is_bit_identical_and_resume_is_a_no_op(tmp_path):
  a, b = str(tmp_path / "a"), str(tmp_path / "b")
  for w in (a, b):
    assert run_main(flag_args(TINY_VAE) + [f"--workdir={w}"]).returncode == 0
  _params_equal(a, b)
  sa = json.load(open(os.path.join(a, "summary.json")))
  sb = json.load(open(os.path.join(b, "summary.json")))
  assert sa["eval_neg_elbo"] == sb["eval_neg_elbo"]
  # Running a finished workdir again trains nothing and keeps the numbers.
  proc = run_main(flag_args(TINY_VAE) + [f"--workdir={a}"])
  assert proc.returncode == 0 and "Resumed from checkpoint at step 60" in proc.stderr
  assert json.load(open(os.path.join(a, "summary.json")))["eval_neg_elbo"] == sa["eval_neg_elbo"]


def test_killed_run_resumes_bit_exactly(tmp_path):
  """SIGKILL mid-run, re-run the same command: same params as an uninterrupted run."""
  config = dict(TINY_VAE, num_steps=400, checkpoint_every=10, eval_every=200, log_every=10,
                binarize="dynamic")
  killed, clean = str(tmp_path / "killed"), str(tmp_path / "clean")
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  proc = subprocess.Popen([sys.executable, "-m", "experiments.main", *flag_args(config),
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
  resumed = run_main(flag_args(config) + [f"--workdir={killed}"])
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert "Resumed from checkpoint" in resumed.stderr
  assert run_main(flag_args(config) + [f"--workdir={clean}"]).returncode == 0
  _params_equal(killed, clean)
  # metrics.jsonl of the resumed run has no duplicated or missing train steps.
  assert ([r["step"] for r in _metrics(killed) if r["split"] == "train"] ==
          [r["step"] for r in _metrics(clean) if r["split"] == "train"])


def test_corrupt_latest_checkpoint_falls_back_and_keeps_files(tmp_path):
  workdir = str(tmp_path / "run")
  assert run_main(flag_args(TINY_VAE) + [f"--workdir={workdir}"]).returncode == 0
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
  proc = run_main(flag_args(dict(TINY_VAE, num_steps=90)) + [f"--workdir={workdir}"])
  assert proc.returncode == 0, failure_report(proc)
  assert "newest intact checkpoint" in proc.stderr
  assert os.path.isdir(os.path.join(workdir, "corrupt_checkpoints", "60"))
  assert json.load(open(os.path.join(workdir, "summary.json")))["step"] == 90


def test_all_checkpoints_corrupt_is_one_clear_error(tmp_path):
  workdir = str(tmp_path / "run")
  assert run_main(flag_args(dict(TINY_VAE, num_steps=30)) + [f"--workdir={workdir}"]
                  ).returncode == 0
  for root, _, files in os.walk(os.path.join(workdir, "checkpoints")):
    for name in files:
      if "state" in root:
        open(os.path.join(root, name), "wb").close()
  proc = run_main(flag_args(TINY_VAE) + [f"--workdir={workdir}"])
  assert proc.returncode == 2
  assert "no intact checkpoint" in proc.stderr and "Traceback" not in proc.stderr
  assert os.path.isdir(os.path.join(workdir, "checkpoints", "30"))


@pytest.mark.parametrize("extra,message", [
    (["--dataset=imagenet"], "unknown dataset 'imagenet'"),
    (["--dataset=mnist_idx", "--data_dir=/nonexistent"], "is not a directory"),
    (["--learning_rate=0"], "learning_rate must be a positive"),
    (["--learning_rate=-0.1"], "learning_rate must be a positive"),
    (["--learning_rate=nan"], "learning_rate must be a positive"),
    (["--batch_size=0"], "batch_size must be a positive integer"),
    (["--latent_dim=-3"], "latent_dim must be a positive integer"),
    (["--hidden_dims=10,x"], "hidden_dims must be comma-separated integers"),
])
def test_bad_flags_give_one_clear_line(tmp_path, extra, message):
  proc = run_main(flag_args(TINY_VAE) + [f"--workdir={tmp_path}"] + extra, timeout=120)
  assert proc.returncode != 0
  assert message in proc.stderr, proc.stderr[-2000:]
  assert "Traceback" not in proc.stderr
  error_lines = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
  assert len(error_lines) == 1


def test_conflicting_workdir_flags_are_refused(tmp_path):
  workdir = str(tmp_path / "run")
  assert run_main(flag_args(dict(TINY_VAE, num_steps=10)) + [f"--workdir={workdir}"]
                  ).returncode == 0
  proc = run_main(flag_args(dict(TINY_VAE, hidden_dims="16")) + [f"--workdir={workdir}"])
  assert proc.returncode == 2
  assert "different model or data" in proc.stderr and "hidden_dims" in proc.stderr
  assert "Traceback" not in proc.stderr


def test_flagfile_and_helpfull_document_every_flag(tmp_path):
  proc = run_main(["--helpfull"], timeout=120)  # absl exits 1 after printing help
  for name in ("experiment", "dataset", "data_dir", "binarize", "model", "likelihood",
               "latent_dim", "hidden_dims", "batch_size", "num_steps", "learning_rate", "seed",
               "eval_every", "checkpoint_every", "workdir", "estimator", "e_steps", "m_steps"):
    assert f"--{name}" in proc.stdout, name
  flagfile = tmp_path / "recipe.flags"
  flagfile.write_text("\n".join(flag_args(dict(TINY_VAE, num_steps=20))) + "\n")
  workdir = str(tmp_path / "run")
  proc = run_main([f"--flagfile={flagfile}", f"--workdir={workdir}"])
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert json.load(open(os.path.join(workdir, "summary.json")))["step"] == 20


def test_data_parallel_over_two_devices_matches_one(tmp_path):
  """Two (fake CPU) devices: batch sharded, state replicated, same numbers."""
  one, two = str(tmp_path / "one"), str(tmp_path / "two")
  assert run_main(flag_args(TINY_VAE) + [f"--workdir={one}"]).returncode == 0
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
  proc = run_main(flag_args(TINY_VAE) + [f"--workdir={two}"], env=env)
  assert proc.returncode == 0, failure_report(proc)
  s1 = json.load(open(os.path.join(one, "summary.json")))
  s2 = json.load(open(os.path.join(two, "summary.json")))
  assert s1["device_count"] == 1 and s2["device_count"] == 2
  assert s2["eval_neg_elbo"] == pytest.approx(s1["eval_neg_elbo"], rel=1e-4)
  bad = run_main(flag_args(dict(TINY_VAE, batch_size=51)) + [f"--workdir={tmp_path / 'bad'}"],
                 env=env)
  assert bad.returncode == 2 and "not divisible by the 2 devices" in bad.stderr


@pytest.mark.parametrize("recipe", sorted(os.listdir(os.path.join(ROOT, "experiments",
                                                                    "configs"))))
def test_every_recipe_parses(recipe):
  proc = run_main([f"--flagfile=experiments/configs/{recipe}", "--only_check_args"])
  assert proc.returncode == 0, failure_report(proc)
