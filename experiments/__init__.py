"""The experiments, found by name: a config's ``experiment`` key names the module
``experiments/<name>.py`` whose ``run(config, workdir)`` runs it; its config files
live in ``experiments/configs/``. Nothing lists them.

``module(name)`` imports one experiment (the runner's only import of one);
``catalog()`` is the runner's --help: every config file with its variants and
the experiment it runs; ``multi_process()`` the experiments that train across
several processes (those that set ``MULTI_PROCESS = True``).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pkgutil
import textwrap
from types import ModuleType

CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")
_NOT_EXPERIMENTS = ("main", "configs")


def names() -> tuple[str, ...]:
  """Every experiment: the modules of this package that define ``run`` (imports them)."""
  candidates = [m.name for m in pkgutil.iter_modules(__path__)
                if m.name not in _NOT_EXPERIMENTS and not m.name.startswith("_")]
  return tuple(n for n in sorted(candidates)
               if hasattr(importlib.import_module(f"{__name__}.{n}"), "run"))


def module(name) -> ModuleType:
  """``experiments.<name>``; LookupError naming the experiments if there is none."""
  if (isinstance(name, str) and name.isidentifier() and name not in _NOT_EXPERIMENTS
      and importlib.util.find_spec(f"{__name__}.{name}") is not None):
    found = importlib.import_module(f"{__name__}.{name}")
    if hasattr(found, "run"):
      return found
  raise LookupError(f"config.experiment={name!r} is not an experiment; choose one of "
                    f"{', '.join(names())}.")


def multi_process() -> tuple[str, ...]:
  """The experiments that several processes can train (``config.distributed``)."""
  return tuple(n for n in names() if getattr(module(n), "MULTI_PROCESS", False))


def config_files() -> tuple[str, ...]:
  """The config files' names (experiments/configs/<name>.py), ``common`` aside."""
  return tuple(sorted(m.name for m in pkgutil.iter_modules([CONFIGS])
                      if m.name != "common" and not m.name.startswith("_")))


def catalog() -> str:
  """Every config file, the experiment it runs and its variants (for --help)."""
  rows = ["Config files (experiments/configs/) and their variants; each documents its keys:"]
  for name in config_files():
    config_module = importlib.import_module(f"{__name__}.configs.{name}")
    experiment = config_module.get_config(None).experiment
    rows.append(f"  {name + '.py':22s} experiment {experiment}")
    variants = ", ".join(getattr(config_module, "VARIANTS", {}))
    if variants:
      rows.append(textwrap.fill(variants, 88, initial_indent="    variants: ",
                                subsequent_indent="      "))
  return "\n".join(rows)
