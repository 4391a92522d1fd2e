"""The package's shape: a library that defines no flags, draws no figures on
import, never imports the experiments, and keeps modules readable."""

import ast
import glob
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

LIBRARY = sorted(glob.glob(os.path.join(ROOT, "vae_jax", "**", "*.py"), recursive=True))


def _module(path):
  """vae_jax/training/trainer.py -> vae_jax.training.trainer (a package's __init__: the package)."""
  rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
  return rel[:-len(".__init__")] if rel.endswith(".__init__") else rel


def _id(path):
  return os.path.relpath(path, ROOT)


def _imports(path):
  tree = ast.parse(open(path).read())
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      yield from (a.name for a in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module:
      yield node.module


_CHECK_EACH = """
import importlib, json, sys
from absl import flags
found = {}
for module in sys.argv[1:]:
  importlib.import_module(module)
  bad = []
  if any(m.split(".")[0] == "matplotlib" for m in sys.modules):
    bad.append("matplotlib")
  owners = [m for m in flags.FLAGS.flags_by_module_dict() if "vae_jax" in m]
  if owners:
    bad.append(f"flags {owners}")
  if "experiments" in sys.modules:
    bad.append("experiments")
  if bad:
    found[module] = bad
    break
print(json.dumps(found))
"""


@pytest.mark.slow
def test_library_imports_neither_matplotlib_nor_defines_flags():
  """No library module (but plots.py) imports matplotlib or experiments, or defines a
  flag. absl.flags itself is loaded by flax/optax/chex (absl.logging imports it), so
  the check is that no library module defines a flag.

  One process imports the modules one after another and checks after each: the
  first module after which a forbidden import appears is the one that pulls it in
  (itself or through what it imports), as a process of its own would find.
  """
  modules = [_module(p) for p in LIBRARY if os.path.basename(p) != "plots.py"]
  assert len(modules) > 30
  proc = subprocess.run([sys.executable, "-c", _CHECK_EACH, *modules], cwd=ROOT,
                        capture_output=True, text=True,
                        env=dict(os.environ, JAX_PLATFORMS="cpu"), timeout=300)
  assert proc.returncode == 0, proc.stderr[-1500:]
  assert json.loads(proc.stdout.strip().splitlines()[-1]) == {}


@pytest.mark.slow
def test_imports_in_the_folder_that_holds_a_clone_named_vae_jax(tmp_path):
  """A notebook started in the folder above a clone named ``vae_jax/``: the clone
  (no ``__init__.py``) is a namespace-package candidate on sys.path[0]. The
  installed package must still win, as it does when the install puts the
  project root on sys.path (setup.cfg's package_dir)."""
  (tmp_path / "vae_jax").symlink_to(ROOT, target_is_directory=True)
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  code = "import vae_jax\nfrom vae_jax import load_arrays\nprint(vae_jax.__file__)"
  proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                        text=True, env=dict(env, JAX_PLATFORMS="cpu"), timeout=120)
  assert proc.returncode == 0, (
      f"{proc.stderr[-1500:]}\nAn editable install made before setup.cfg set package_dir "
      "uses an import finder that loses to the current directory: re-run pip install -e .")
  assert proc.stdout.strip() == os.path.join(ROOT, "vae_jax", "__init__.py")


@pytest.mark.parametrize("path", LIBRARY, ids=_id)
def test_library_modules_do_not_import_flags_matplotlib_or_experiments(path):
  banned = ("absl.flags", "ml_collections.config_flags", "experiments")
  imported = set(_imports(path))
  assert not [m for m in imported if m.startswith(banned)]
  if not path.endswith("plots.py"):
    assert not [m for m in imported if m.startswith("matplotlib")]


@pytest.mark.parametrize("path", LIBRARY + sorted(
    glob.glob(os.path.join(ROOT, "experiments", "*.py"))), ids=_id)
def test_no_module_is_over_500_lines(path):
  assert sum(1 for _ in open(path)) <= 550, "split it: one job per module"


def _library_imports(pattern):
  """{module: the vae_jax modules it imports} of the library files under ``pattern``,
  lazy imports too; ``from vae_jax.training import trainer`` counts as
  ``vae_jax.training.trainer``."""
  out = {}
  for path in sorted(glob.glob(os.path.join(ROOT, "vae_jax", pattern), recursive=True)):
    found = set()
    for node in ast.walk(ast.parse(open(path).read())):
      if isinstance(node, ast.Import):
        found |= {a.name for a in node.names}
      elif isinstance(node, ast.ImportFrom) and node.module:
        found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    out[_module(path)] = {m for m in found if m.startswith("vae_jax")}
  return out


def test_the_layers_point_one_way():
  """The models and families hand the loop a Task; they never import the loop.
  task.py imports nothing from the loop; no module of families/ climbs into models/
  (MADE's masks live in vae_jax/masks.py, which both reach)."""
  loop = ("vae_jax.training.trainer", "vae_jax.training.step")
  below = {**_library_imports("models/*.py"), **_library_imports("families/**/*.py"),
           **_library_imports("inference/*.py")}
  assert {m: i & set(loop) for m, i in below.items() if i & set(loop)} == {}
  task = _library_imports("training/task.py")["vae_jax.training.task"]
  assert not [m for m in task if m.startswith("vae_jax.training")], task
  families = _library_imports("families/**/*.py")
  assert {m: [i for i in imp if i.startswith("vae_jax.models")]
          for m, imp in families.items() if any(i.startswith("vae_jax.models") for i in imp)} == {}
