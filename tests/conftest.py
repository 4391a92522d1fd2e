"""Shared fixtures and helpers: tiny configs, the shared MNIST test images, the runner."""

import os
import signal
import subprocess
import sys
import tempfile
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_MNIST = os.path.join(ROOT, "..", "shared", "data", "mnist")
CONFIGS = os.path.join(ROOT, "experiments", "configs")
# JAX's persistent compilation cache (vae_jax.compilation_cache), shared by the
# test workers and the runs and kernels they start, in a folder of its own (the
# user's cache keeps only their programs): the many tiny runs compile the same
# programs, and a cached executable is the same code, so numbers (and the
# bit-exactness tests) are unchanged. VAE_JAX_COMPILATION_CACHE set by the
# caller wins (``off`` to run the suite without it).
os.environ.setdefault("VAE_JAX_COMPILATION_CACHE", os.path.join(
    tempfile.gettempdir(), f"vae_jax_tests_xla_cache_{os.getuid()}"))


# Test tiers. `pytest` runs every test (the README's command, what CI runs);
# `pytest -m "not slow"` is the unit tier, a loop of about 30 s on 2 cores. A
# test is marked @pytest.mark.slow where it starts a process (the runner
# through run_main, several processes) or takes more than about half a second
# here (it trains, or compiles many programs). Two checks keep the unit tier
# honest: run_main fails a test that is not marked, and the end of a run lists
# the unmarked tests that used more than SLOW_SECONDS of CPU (a report, not a
# failure; CPU time, not wall time, so that a busy machine does not inflate it;
# the threshold leaves room for a loaded machine).
SLOW_SECONDS = 1.5
_running: list[pytest.Item] = []
_slow_unmarked: list[tuple[float, str]] = []


@pytest.fixture(autouse=True)
def _current_test(request):
  """Remembers the running test, for ``require_slow``."""
  _running.append(request.node)
  yield
  _running.pop()


def require_slow(what: str) -> None:
  """Fails the running test unless it is marked slow; ``what`` says why it must be."""
  node = _running[-1] if _running else None   # None: in a module-scoped fixture
  if node is not None and node.get_closest_marker("slow") is None:
    pytest.fail(f"{node.nodeid} {what}: mark it @pytest.mark.slow (the unit tier, "
                f'pytest -m "not slow", starts no process)', pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
  """Records the test's CPU seconds (every thread of this process) in its report."""
  start = time.process_time()
  yield
  item.user_properties.append(("cpu_seconds", time.process_time() - start))


def pytest_runtest_logreport(report):
  cpu = dict(report.user_properties).get("cpu_seconds", 0.0)
  if report.when == "call" and cpu > SLOW_SECONDS and "slow" not in report.keywords:
    _slow_unmarked.append((cpu, report.nodeid))


def pytest_terminal_summary(terminalreporter):
  if _slow_unmarked:
    terminalreporter.write_sep(
        "-", f"unmarked tests that used more than {SLOW_SECONDS:g} s of CPU: "
             "mark them @pytest.mark.slow")
    for seconds, nodeid in sorted(_slow_unmarked, reverse=True):
      terminalreporter.write_line(f"{seconds:6.1f} s  {nodeid}")


def code_lines_matching(pattern) -> list[str]:
  """``path:line: text`` of every line of the library and the experiments (their
  config files aside, which may name parts) that ``pattern`` (a compiled regex) finds."""
  found = []
  for folder in ("vae_jax", "experiments"):
    for root, _, files in os.walk(os.path.join(ROOT, folder)):
      for f in sorted(files):
        if f.endswith(".py") and "configs" not in root:
          path = os.path.join(root, f)
          for i, line in enumerate(open(path), 1):
            if pattern.search(line):
              found.append(f"{os.path.relpath(path, ROOT)}:{i}: {line.strip()}")
  return found


def config_path(name: str, variants: str = "") -> str:
  """``experiments/configs/<name>.py[:variants]`` for --config."""
  path = os.path.join("experiments", "configs", f"{name}.py")
  return f"{path}:{variants}" if variants else path


def get_config(name: str, variants: str = "tiny"):
  """The ConfigDict of experiments/configs/<name>.py with ``variants``."""
  import importlib  # pylint: disable=g-import-not-at-top
  return importlib.import_module(f"experiments.configs.{name}").get_config(variants)


@pytest.fixture
def tiny_vae():
  """The tiny VAE config (seconds on the 8x8 digits)."""
  return get_config("vae", "tiny")


@pytest.fixture
def shared_mnist_dir():
  path = os.path.abspath(SHARED_MNIST)
  if not os.path.exists(os.path.join(path, "t10k-images-idx3-ubyte.gz")):
    pytest.skip("shared MNIST test images not present (../shared/data/mnist)")
  return path


def failure_report(proc: subprocess.CompletedProcess) -> str:
  """The informative part of a failed subprocess's stderr (a fatal error's head, or the tail)."""
  err = proc.stderr or ""
  at = err.find("Fatal Python error")
  head = err[max(0, at - 2500):at + 1500] if at >= 0 else ""
  return f"rc={proc.returncode}\n{head}\n...\n{err[-2500:]}"


def overrides(settings: dict) -> list[str]:
  """{"train.num_steps": 20} -> ["--config.train.num_steps=20"]."""
  return [f"--config.{k}={v}" for k, v in settings.items()]


def run_main(args: list[str], timeout: float = 300, env=None,
             platforms: str | None = "cpu") -> subprocess.CompletedProcess:
  """Runs `python -m experiments.main ARGS` in a subprocess from the repo root.

  ``platforms`` is JAX_PLATFORMS; None leaves it unset, as in a user's shell
  (JAX then probes every platform it knows). A run still going after
  ``timeout`` seconds gets SIGABRT, so that Python's faulthandler prints every
  thread's stack into the failure report. Only a test marked slow may call it.
  """
  require_slow("runs experiments.main in a subprocess")
  env = dict(env or os.environ, PYTHONFAULTHANDLER="1")
  env.pop("JAX_PLATFORMS", None)
  env.update({"JAX_PLATFORMS": platforms} if platforms else {})
  cmd = [sys.executable, "-m", "experiments.main", *args]
  with subprocess.Popen(cmd, cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE) as proc:
    try:
      out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
      proc.send_signal(signal.SIGABRT)
      out, err = proc.communicate()
      pytest.fail(f"timed out after {timeout} s: {' '.join(args)}\n{err[-6000:]}")
  return subprocess.CompletedProcess(cmd, proc.returncode, out, err)
