"""What a newcomer hit on a fresh clone, through the real entry points.

--help exits 0; resuming into a read-only workdir is one error line and exit
2; a config refused before training leaves nothing behind.
"""

import os
import shutil
import stat
import subprocess
import sys

import pytest

from tests.conftest import ROOT, config_path, failure_report, run_main

LEGACY = os.path.join(ROOT, "tests", "data", "legacy_vae_tiny")


def _one_error_line(proc, *messages):
  assert proc.returncode == 2, failure_report(proc)
  assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
  errors = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
  assert len(errors) == 1, proc.stderr[-3000:]
  for message in messages:
    assert message in errors[0], errors[0]
  return errors[0]


def _listing(workdir):
  """{path: (size, mtime_ns)} of everything under ``workdir``."""
  return {os.path.relpath(os.path.join(root, name), workdir):
          (os.stat(os.path.join(root, name)).st_size,
           os.stat(os.path.join(root, name)).st_mtime_ns)
          for root, dirs, files in os.walk(workdir) for name in dirs + files}


@pytest.mark.slow
@pytest.mark.parametrize("flag", ["--help", "--helpfull"])
def test_help_exits_0(flag):
  proc = run_main([flag])
  assert proc.returncode == 0, failure_report(proc)
  assert "--workdir" in proc.stdout and "Traceback" not in proc.stderr
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  script = subprocess.run([sys.executable, os.path.join("scripts", "reproduce.py"), flag],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
  assert script.returncode == 0, failure_report(script)
  assert "--iw_samples" in script.stdout


def _read_only_run(workdir: str, args: list[str]) -> subprocess.CompletedProcess:
  """The runner with ``workdir`` read-only: by chmod, or (as root, whom chmod does
  not stop) on a read-only bind mount in a namespace of its own; skips if neither."""
  cmd = [sys.executable, "-m", "experiments.main", *args]
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  if os.geteuid() != 0:
    for root, dirs, files in os.walk(workdir):
      for name in dirs + files + ["."]:
        path = os.path.join(root, name)
        os.chmod(path, os.stat(path).st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
      return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    finally:
      for root, dirs, files in os.walk(workdir):
        for name in dirs + files + ["."]:
          os.chmod(os.path.join(root, name), 0o755)
  unshare = shutil.which("unshare")
  probe = unshare and subprocess.run(
      [unshare, "-rm", "sh", "-c", 'mount -o bind,ro "$0" "$0" && ! touch "$0/.probe"',
       workdir], capture_output=True)
  if not probe or probe.returncode != 0:
    pytest.skip("running as root (chmod does not stop root) without a read-only bind mount")
  return subprocess.run(
      [unshare, "-rm", "sh", "-c", 'mount -o bind,ro "$0" "$0" && shift && exec "$@"',
       workdir, "_", *cmd], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_resuming_into_a_read_only_workdir_is_one_line(tmp_path):
  workdir = str(tmp_path / "run")
  shutil.copytree(LEGACY, workdir, ignore=shutil.ignore_patterns("expected.json"))
  before = _listing(workdir)
  proc = _read_only_run(workdir, [f"--config={config_path('vae', 'tiny')}",
                                  "--config.model.scale_head=log_scale",
                                  f"--workdir={workdir}"])
  line = _one_error_line(proc, f"cannot write into --workdir={workdir}")
  assert "Read-only file system" in line or "Permission denied" in line, line
  assert _listing(workdir) == before


@pytest.mark.slow
def test_a_config_refused_before_training_leaves_nothing(tmp_path):
  workdir = str(tmp_path / "run")
  proc = run_main(["--config.train.batch_size=5000", "--config.train.num_steps=1",
                   f"--workdir={workdir}"])
  _one_error_line(proc, "--config.train.batch_size=5000 is larger than the training set")
  assert not os.path.exists(workdir), _listing(workdir)
