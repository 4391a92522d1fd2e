"""JAX's persistent compilation cache: a re-run loads its programs instead of compiling them.

Every compiled program (the train step, the evaluation, the figures' decoder)
is written to a folder on disk and read back by the next process that
compiles the same program with the same JAX, jaxlib, device and options; the
executable read back is the one that was compiled, so the numbers are the
same to the last bit.

Where the folder is, first match wins:

* a run's ``config.compilation_cache`` (the runner): ``"default"``, a folder,
  or ``"off"``;
* the environment variable ``VAE_JAX_COMPILATION_CACHE``: a folder, or
  ``off``;
* ``JAX_COMPILATION_CACHE_DIR`` (JAX's own setting), left as the user set it;
* ``$XDG_CACHE_HOME/vae_jax/xla``, by default ``~/.cache/vae_jax/xla``.

``import vae_jax`` calls ``enable_default()``, so notebooks and scripts use
the cache too. Every program is cached, however quickly it compiled (JAX's
default skips those under a second, which is every program here on a CPU).
Several processes (test workers, several runs at once) share one folder: an
entry is written once, by whichever process compiled it first, and never
changes after; an entry that cannot be read (corrupt, truncated, half-written
by another process at that moment, from another build) is reported by JAX as
a warning and compiled again, never fatal. The folder is not bounded (JAX's
bound re-reads every entry's access time at every write, seconds per run in
a folder of thousands): delete it to reclaim the space, nothing else is lost.
"""

from __future__ import annotations

import os
import threading

ENV = "VAE_JAX_COMPILATION_CACHE"
OFF = ("off", "none", "false", "0")
DEFAULT = "default"

_lock = threading.Lock()
_counts = {"hits": 0, "misses": 0, "programs": 0, "compile_s": 0.0}
_listening = False
# JAX's durations of making a program: tracing, lowering, and compiling it or
# reading it from the cache (the last one is counted once per program).
_DURATIONS = ("/jax/core/compile/jaxpr_trace_duration",
              "/jax/core/compile/jaxpr_to_mlir_module_duration",
              "/jax/core/compile/backend_compile_duration")


def user_cache_dir(kind: str) -> str:
  """``$XDG_CACHE_HOME/vae_jax/<kind>`` (``~/.cache/vae_jax/<kind>`` when unset):
  where vae_jax keeps what it can rebuild (``xla`` programs, converted ``data``)."""
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(base, "vae_jax", kind)


def default_dir() -> str:
  """``$XDG_CACHE_HOME/vae_jax/xla`` (``~/.cache/vae_jax/xla`` when unset)."""
  return user_cache_dir("xla")


def resolve(setting: str | None = DEFAULT) -> str | None:
  """The cache folder for a setting (``"default"``, a folder or ``"off"``); None: off.

  ``"default"`` means the environment's choice (``VAE_JAX_COMPILATION_CACHE``,
  else ``JAX_COMPILATION_CACHE_DIR``, else ``default_dir()``).
  """
  setting = DEFAULT if setting is None else str(setting).strip()
  if setting == DEFAULT:
    setting = (os.environ.get(ENV) or os.environ.get("JAX_COMPILATION_CACHE_DIR")
               or default_dir()).strip()
  if setting.lower() in OFF or not setting:
    return None
  return os.path.abspath(os.path.expanduser(setting))


def _writable(path: str) -> bool:
  """Whether ``path`` is, or could be made, a folder this process can write to."""
  probe = path
  while not os.path.exists(probe):
    probe = os.path.dirname(probe)
  return os.path.isdir(probe) and os.access(probe, os.W_OK | os.X_OK)


def _count(event: str, **_) -> None:
  if event == "/jax/compilation_cache/cache_hits":
    with _lock:
      _counts["hits"] += 1
  elif event == "/jax/compilation_cache/cache_misses":
    with _lock:
      _counts["misses"] += 1


def _time(event: str, duration_secs: float, **_) -> None:
  if event in _DURATIONS:
    with _lock:
      _counts["compile_s"] += duration_secs
      _counts["programs"] += event == _DURATIONS[-1]


def enable(setting: str | None = DEFAULT) -> str | None:
  """Points JAX's persistent cache at ``resolve(setting)`` (or turns it off).

  Takes effect for the programs compiled after it. Returns the folder, or None
  when the cache is off (also when the folder cannot be created).
  """
  global _listening
  import jax  # pylint: disable=g-import-not-at-top
  from jax._src import compilation_cache as jax_cache  # pylint: disable=g-import-not-at-top
  if not _listening:
    jax.monitoring.register_event_listener(_count)
    jax.monitoring.register_event_duration_secs_listener(_time)
    _listening = True
  path = resolve(setting)
  if path is not None:   # JAX makes the folder when it first writes to it
    if not _writable(path):
      path = None          # an unwritable place: compile as if there were no cache
  changed = (path != jax.config.jax_compilation_cache_dir
             or (path is not None) != jax.config.jax_enable_compilation_cache)
  jax.config.update("jax_enable_compilation_cache", path is not None)
  if path is not None:
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  if changed and getattr(jax_cache, "_cache_initialized", True):
    jax_cache.reset_cache()   # a cache opened earlier in this process is let go
  return path


def enable_default() -> str | None:
  """``enable()`` with the environment's choice: what ``import vae_jax`` does."""
  return enable(DEFAULT)


def stats() -> dict:
  """What this process compiled so far, as ``summary.json`` records it.

  Returns:
    ``dir``: the cache folder (None: off); ``hits`` and ``misses``: programs
    read from it and compiled (and written to it); ``programs``: programs
    made in all; ``compile_s``: seconds spent tracing, lowering and
    compiling them or reading them back.
  """
  import jax  # pylint: disable=g-import-not-at-top
  on = bool(jax.config.jax_enable_compilation_cache and jax.config.jax_compilation_cache_dir)
  with _lock:
    return {"dir": jax.config.jax_compilation_cache_dir if on else None, **_counts,
            "compile_s": round(_counts["compile_s"], 3)}
