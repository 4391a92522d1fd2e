"""Several processes through the real runner: two CPU processes on 127.0.0.1.

Each process is `python -m experiments.main` with its own
``--config.distributed.process_id``, one CPU device each, collectives over
gloo. They must train like one process of the same global batch, write each
file once (process 0), and resume together after both are killed.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from tests.conftest import (ROOT, config_path, failure_report, overrides, require_slow,
                            run_main)
from vae_jax import tasks

TIMEOUT = 300
ARGS = [f"--config={config_path('vae', 'tiny')}"] + overrides({
    "data.binarize": "dynamic", "train.num_steps": 120, "train.checkpoint_every": 10,
    "train.eval_every": 60})


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _distributed(port: int, pid: int, num: int = 2) -> list[str]:
  return overrides({"distributed.coordinator_address": f"127.0.0.1:{port}",
                    "distributed.num_processes": num, "distributed.process_id": pid,
                    "distributed.timeout_s": 60})


def _start(args: list[str], workdir: str, port: int) -> list[subprocess.Popen]:
  require_slow("starts two processes")
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONFAULTHANDLER="1")
  env.pop("XLA_FLAGS", None)   # one CPU device per process
  return [subprocess.Popen([sys.executable, "-m", "experiments.main", *args,
                            f"--workdir={workdir}", *_distributed(port, pid)],
                           cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE) for pid in (0, 1)]


def _finish(procs: list[subprocess.Popen]) -> list[subprocess.CompletedProcess]:
  """Waits for every process; SIGABRTs all of them (stacks in the report) on timeout."""
  deadline, done = time.time() + TIMEOUT, []
  for p in procs:
    try:
      out, err = p.communicate(timeout=max(1.0, deadline - time.time()))
    except subprocess.TimeoutExpired:
      for q in procs:
        if q.poll() is None:
          q.send_signal(signal.SIGABRT)
      out, err = p.communicate()
      pytest.fail(f"a process timed out:\n{err[-5000:]}")
    done.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
  for proc in done:
    assert proc.returncode == 0, failure_report(proc)
  return done


def _summary(workdir):
  with open(os.path.join(workdir, "summary.json")) as f:
    return json.load(f)


def _rows(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f if line.strip()]


def _state(workdir):
  return tasks.load_checkpoint(workdir)[1]


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("two") / "run")
  procs = _finish(_start(ARGS, workdir, _free_port()))
  return workdir, procs


@pytest.mark.slow
def test_two_processes_train_like_one(tmp_path, two_process_run):
  two, procs = two_process_run
  one = str(tmp_path / "one")
  proc = run_main(ARGS + [f"--workdir={one}"], timeout=TIMEOUT)
  assert proc.returncode == 0, failure_report(proc)
  s1, s2 = _summary(one), _summary(two)
  assert s2["device_count"] == 2 and s1["device_count"] == 1
  assert s2["eval_neg_elbo"] == pytest.approx(s1["eval_neg_elbo"], rel=1e-4)
  assert s2["eval_neg_log_likelihood_iw"] == pytest.approx(s1["eval_neg_log_likelihood_iw"],
                                                           rel=1e-4)
  a, b = _state(one), _state(two)
  for x, y in zip(jax.tree_util.tree_leaves(a.params), jax.tree_util.tree_leaves(b.params)):
    np.testing.assert_allclose(np.asarray(y), np.asarray(x), rtol=1e-3, atol=1e-5)
  # Both processes trained on the global mesh; process 0 alone wrote the files:
  # each (step, split) once, one TensorBoard event file, and the same logged steps.
  assert all("process %d of 2, 2 devices in all" % i in p.stderr for i, p in enumerate(procs))
  keys = [(r["step"], r["split"]) for r in _rows(two)]
  assert len(keys) == len(set(keys)) and keys == [(r["step"], r["split"]) for r in _rows(one)]
  assert len(os.listdir(os.path.join(two, "tensorboard"))) == 1
  for name in ("samples.png", "reconstructions.png", "training_curves.png", "config.json"):
    assert os.path.exists(os.path.join(two, name)), name


@pytest.mark.parametrize("name, headline", [("discrete_vae", "eval_exact_nll"),
                                            ("autoregressive", "eval_nll")])
@pytest.mark.slow
def test_the_other_trained_models_run_on_two_processes(tmp_path, name, headline):
  args = [f"--config={config_path(name, 'tiny')}"] + overrides({
      "data.binarize": "dynamic", "train.num_steps": 40, "train.eval_every": 20})
  two, one = str(tmp_path / "two"), str(tmp_path / "one")
  _finish(_start(args, two, _free_port()))
  proc = run_main(args + [f"--workdir={one}"], timeout=TIMEOUT)
  assert proc.returncode == 0, failure_report(proc)
  assert _summary(two)["device_count"] == 2
  assert _summary(two)[headline] == pytest.approx(_summary(one)[headline], rel=1e-4)


# Every family goes through the same trainer code; these two cover the learned
# prior's own parameter group, a flow's bijector parameters and the second
# stochastic layer's networks under the cross-process all-reduce.
@pytest.mark.parametrize("family", [
    {"model.posterior": "iaf", "model.flow_steps": 2, "model.prior": "vamp",
     "model.prior_components": 4},
    {"model.top_latent_dim": 2, "model.top_hidden_dims": "(8,)",
     "objective.estimator": "iwae", "objective.num_samples": 2},
], ids=["iaf_vamp", "two_layers_iwae"])
@pytest.mark.slow
def test_the_families_run_on_two_processes(tmp_path, family):
  args = [f"--config={config_path('vae', 'tiny')}"] + overrides({
      "data.binarize": "dynamic", "train.num_steps": 40, "train.eval_every": 20, **family})
  two, one = str(tmp_path / "two"), str(tmp_path / "one")
  _finish(_start(args, two, _free_port()))
  proc = run_main(args + [f"--workdir={one}"], timeout=TIMEOUT)
  assert proc.returncode == 0, failure_report(proc)
  s1, s2 = _summary(one), _summary(two)
  assert s2["device_count"] == 2 and s1["device_count"] == 1
  for key in ("eval_neg_elbo", "eval_neg_log_likelihood_iw"):
    assert s2[key] == pytest.approx(s1[key], rel=1e-4), key
  a, b = _state(one), _state(two)
  assert set(a.params["params"]) == set(b.params["params"])
  if "model.prior" in family:
    assert "prior" in b.params["params"]          # the learned prior trained on both
  for x, y in zip(jax.tree_util.tree_leaves(a.params), jax.tree_util.tree_leaves(b.params)):
    np.testing.assert_allclose(np.asarray(y), np.asarray(x), rtol=1e-3, atol=1e-5)


@pytest.mark.slow
def test_the_host_feed_uploads_each_process_slice_to_the_same_run(tmp_path, two_process_run):
  # Each process gathers only its half of every batch on the host
  # (make_array_from_process_local_data), 7 steps per upload: the run is the device feed's.
  device, _ = two_process_run
  host = str(tmp_path / "host")
  procs = _finish(_start(ARGS + overrides({"train.feed": "host", "train.steps_per_jit": 7}),
                         host, _free_port()))
  assert all("host feed, up to 7 steps per dispatch" in p.stderr for p in procs)
  a, b = _state(device), _state(host)
  for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
    np.testing.assert_allclose(np.asarray(y), np.asarray(x), rtol=1e-6, atol=1e-7)
  assert _summary(host)["eval_neg_elbo"] == pytest.approx(_summary(device)["eval_neg_elbo"],
                                                          rel=1e-6)


@pytest.mark.slow
def test_both_processes_killed_after_a_checkpoint_resume_to_the_same_numbers(
    tmp_path, two_process_run):
  clean, _ = two_process_run
  killed = str(tmp_path / "killed")
  port = _free_port()
  procs = _start(ARGS, killed, port)
  ckpt = os.path.join(killed, "checkpoints", "20")
  deadline = time.time() + TIMEOUT
  while not os.path.isdir(ckpt) and time.time() < deadline and all(
      p.poll() is None for p in procs):
    time.sleep(0.01)
  for p in procs:
    p.send_signal(signal.SIGKILL)
  for p in procs:
    p.communicate()
  steps = [int(s) for s in os.listdir(os.path.join(killed, "checkpoints")) if s.isdigit()]
  assert steps and max(steps) < 120, f"the run was not interrupted: {steps}"
  resumed = _finish(_start(ARGS, killed, _free_port()))
  assert all("Resumed from checkpoint" in p.stderr for p in resumed)
  a, b = _state(clean), _state(killed)
  assert int(a.step) == int(b.step) == 120
  for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  timing = ("steps_per_s", "examples_per_s", "timings_s", "compilation_cache")
  assert ({k: v for k, v in _summary(killed).items() if k not in timing} ==
          {k: v for k, v in _summary(clean).items() if k not in timing})


def _run_pair(args, workdir, port):
  """Both processes to completion (any exit status), SIGABRT on timeout."""
  procs = _start(args, workdir, port)
  out = []
  for p in procs:
    try:
      o, e = p.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
      for q in procs:
        q.send_signal(signal.SIGABRT)
      pytest.fail("a process hung on bad input")
    out.append(subprocess.CompletedProcess(p.args, p.returncode, o, e))
  return out


def _error_line(proc) -> str:
  lines = [l for l in proc.stderr.splitlines() if l.startswith("error: ")]
  assert proc.returncode == 2 and len(lines) == 1, failure_report(proc)
  return lines[0]


@pytest.mark.parametrize("settings, message", [
    ({"distributed.process_id": 2}, "process_id=2 is outside the range of num_processes=2"),
    ({"distributed.process_id": -1}, "outside the range"),
    ({"distributed.num_processes": 0}, "num_processes must be a positive integer"),
    ({"distributed.coordinator_address": "127.0.0.1"}, "is not host:port"),
    ({"distributed.coordinator_address": "no-such-host.invalid:1234"}, "cannot resolve host"),
    # process 0 listens at the address: TEST-NET-1 is no machine's own.
    ({"distributed.coordinator_address": "192.0.2.1:1234", "distributed.process_id": 0},
     "is not an address of this machine"),
    ({"distributed.coordinator_address": "", "distributed.num_processes": 2},
     "needs --config.distributed.coordinator_address"),
])
@pytest.mark.slow
def test_bad_distributed_settings_are_one_line_at_once(tmp_path, settings, message):
  args = ARGS + _distributed(_free_port(), 1) + overrides(settings)
  proc = run_main(args + [f"--workdir={tmp_path}"], timeout=TIMEOUT)
  assert message in _error_line(proc)


@pytest.mark.parametrize("pid, message", [
    (1, "process 1 could not join the coordinator at 127.0.0.1:"),
    (0, "only part of the 2 processes met at 127.0.0.1:"),
])
@pytest.mark.slow
def test_a_missing_peer_times_out_with_one_line(tmp_path, pid, message):
  # Process 1 with nobody at the coordinator's port; process 0 whose peer never comes.
  args = ARGS + _distributed(_free_port(), pid) + overrides({"distributed.timeout_s": 3})
  proc = run_main(args + [f"--workdir={tmp_path}"], timeout=TIMEOUT)
  # Exit status 2 and our line: JAX alone would abort (SIGABRT) after its own timeout.
  line = _error_line(proc)
  assert message in line and "timeout_s" in line


@pytest.mark.slow
def test_a_batch_that_does_not_divide_over_the_processes_stops_both(tmp_path):
  procs = _run_pair(ARGS + overrides({"train.batch_size": 25}), str(tmp_path),
                    _free_port())
  for proc in procs:
    assert "batch_size=25 is not divisible by the 2 devices of 2 processes" in (
        _error_line(proc))
  assert not os.path.exists(tmp_path / "metrics.jsonl")


def test_validate_reads_the_section():
  from vae_jax.training import distributed
  assert distributed.validate({"coordinator_address": "", "num_processes": 1,
                               "process_id": 0}) == ("", 1, 0, 120.0)
  assert distributed.validate({"coordinator_address": "[::1]:99", "num_processes": 4,
                               "process_id": 3, "timeout_s": 5})[1:] == (4, 3, 5.0)
  for bad in ({"coordinator_address": "h:0", "num_processes": 2, "process_id": 0},
              {"coordinator_address": "h:70000", "num_processes": 2, "process_id": 0},
              {"coordinator_address": "h:1", "num_processes": 2, "process_id": 0,
               "timeout_s": 0}):
    with pytest.raises(distributed.UserError):
      distributed.validate(bad)
