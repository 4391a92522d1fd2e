"""JAX's persistent compilation cache (vae_jax.compilation_cache) and the runner's use of it.

Unit tier: where the folder is (config, environment, JAX's own setting, the
default under the home directory) and how it is turned off. Slow tier: the
runner in subprocesses, a second run reading every program from the cache
with the same numbers, compiling each program once, a corrupt cache, two runs
sharing one folder at once, and the switch that turns it off.
"""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT, config_path, failure_report, require_slow, run_main
from vae_jax import compilation_cache

TINY = [f"--config={config_path('vae', 'tiny')}", "--config.train.num_steps=5",
        "--config.train.log_every=5"]


def test_the_default_folder_is_per_user_under_the_home_directory(monkeypatch):
  for var in (compilation_cache.ENV, "JAX_COMPILATION_CACHE_DIR", "XDG_CACHE_HOME"):
    monkeypatch.delenv(var, raising=False)
  monkeypatch.setenv("HOME", "/home/someone")
  assert compilation_cache.resolve() == "/home/someone/.cache/vae_jax/xla"
  monkeypatch.setenv("XDG_CACHE_HOME", "/xdg")
  assert compilation_cache.resolve("default") == "/xdg/vae_jax/xla"


def test_the_environment_and_the_config_move_it_or_turn_it_off(monkeypatch, tmp_path):
  monkeypatch.delenv(compilation_cache.ENV, raising=False)
  monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "jax"))
  assert compilation_cache.resolve() == str(tmp_path / "jax")   # JAX's own setting is kept
  monkeypatch.setenv(compilation_cache.ENV, str(tmp_path / "mine"))
  assert compilation_cache.resolve() == str(tmp_path / "mine")   # ours comes first
  monkeypatch.setenv(compilation_cache.ENV, "off")
  assert compilation_cache.resolve() is None
  # An explicit setting (a run's config.compilation_cache) wins over both.
  assert compilation_cache.resolve(str(tmp_path / "run")) == str(tmp_path / "run")
  for off in ("off", "OFF", "none", "false", "0"):
    assert compilation_cache.resolve(off) is None
  monkeypatch.setenv("HOME", str(tmp_path))
  assert compilation_cache.resolve("~/c") == str(tmp_path / "c")


def _run(workdir, cache, *extra, env=None):
  proc = run_main(TINY + [f"--workdir={workdir}", *extra],
                  env=dict(env or os.environ, **{compilation_cache.ENV: str(cache)}))
  assert proc.returncode == 0, failure_report(proc)
  with open(os.path.join(workdir, "summary.json")) as f:
    return json.load(f), proc


def _numbers(summary):
  return {k: v for k, v in summary.items() if k.startswith("eval_")}


@pytest.mark.slow
def test_each_program_is_compiled_once(tmp_path):
  """A one-step run of the tiny VAE makes each of its programs once: the
  parameters' initialization, the train step, its norm, the evaluation, the
  figures' decode and the key derivations; a second compilation of any of them
  (or a return of op-by-op dispatch) fails here."""
  require_slow("runs experiments.main in a subprocess")
  code = (
      "import collections, sys, jax\n"
      "from jax._src import monitoring\n"
      "names = collections.Counter()\n"
      "def seen(event, duration, **kw):\n"
      "  if event == '/jax/core/compile/backend_compile_duration': names[kw['fun_name']] += 1\n"
      "monitoring.register_event_duration_secs_listener(seen)\n"
      "import atexit, json\n"
      "atexit.register(lambda: print('PROGRAMS=' + json.dumps(names)))\n"
      "sys.argv = ['experiments.main'] + sys.argv[1:]\n"
      "import runpy; runpy.run_module('experiments.main', run_name='__main__')\n")
  env = dict(os.environ, JAX_PLATFORMS="cpu", **{compilation_cache.ENV: "off"})
  proc = subprocess.run([sys.executable, "-c", code, *TINY, "--config.train.num_steps=1",
                         f"--workdir={tmp_path / 'w'}"], cwd=ROOT, env=env, text=True,
                        capture_output=True, check=False)
  assert proc.returncode == 0, failure_report(proc)
  line = [l for l in proc.stdout.splitlines() if l.startswith("PROGRAMS=")][-1]
  programs = json.loads(line[len("PROGRAMS="):])
  for name in ("jit(init)", "jit(train_steps)", "jit(global_norm)", "jit(eval_step)",
               "jit(decode)", "jit(_seed_bits)"):
    assert programs.get(name) == 1, f"{name} compiled {programs.get(name, 0)} times: {programs}"
  assert sum(programs.values()) <= 14, f"{sum(programs.values())} programs: {programs}"


@pytest.mark.slow
def test_runs_share_the_cache_a_rerun_compiles_nothing_and_corrupt_entries_recompile(tmp_path):
  """Two runs at once fill one empty folder; a third reads every program back
  with the same numbers; garbage in every entry costs a compilation, never the
  run; ``--config.compilation_cache=off`` reads and writes nothing."""
  require_slow("runs experiments.main in subprocesses")
  cache = tmp_path / "xla"
  env = dict(os.environ, JAX_PLATFORMS="cpu", **{compilation_cache.ENV: str(cache)})
  procs = [subprocess.Popen([sys.executable, "-m", "experiments.main", *TINY,
                             f"--workdir={tmp_path / name}"], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
           for name in ("a", "b")]
  outs = [p.communicate(timeout=300) for p in procs]
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
    assert "Error writing persistent compilation cache" not in err, err[-3000:]
  first, second = (json.load(open(tmp_path / n / "summary.json")) for n in ("a", "b"))
  assert _numbers(first) == _numbers(second)
  stats = first["compilation_cache"]
  assert stats["dir"] == str(cache) and stats["programs"] > 0
  assert stats["hits"] + stats["misses"] == stats["programs"]

  again, _ = _run(tmp_path / "c", cache)
  cached = again["compilation_cache"]
  assert cached["misses"] == 0 and cached["hits"] == cached["programs"] == stats["programs"]
  assert _numbers(again) == _numbers(first)
  for phase in ("imports", "data", "setup", "first_step", "final_eval", "figures", "total"):
    assert again["timings_s"][phase] >= 0

  entries = [p for p in cache.iterdir() if p.name.endswith("-cache")]
  assert len(entries) >= stats["programs"]
  for i, path in enumerate(entries):   # garbage, a truncated entry, an empty one
    data = path.read_bytes()
    path.write_bytes([b"garbage" * 10, data[:len(data) // 2], b""][i % 3])
  corrupt, proc = _run(tmp_path / "d", cache)
  assert _numbers(corrupt) == _numbers(first)
  assert corrupt["compilation_cache"]["misses"] > 0
  assert "Traceback" not in proc.stderr

  off, _ = _run(tmp_path / "e", tmp_path / "unused", "--config.compilation_cache=off")
  assert off["compilation_cache"]["dir"] is None and off["compilation_cache"]["hits"] == 0
  assert not (tmp_path / "unused").exists()
  assert _numbers(off) == _numbers(first)
