"""The lecture's notebooks (``notebooks/*.py``, jupytext percent format).

Unit tier: the seven notebooks exist, parse, state their claim in Markdown,
end with a code cell that asserts it, and the README links each one.
Slow tier: every notebook runs top to bottom in a Jupyter kernel (nbclient),
in a temporary folder, so a raising cell or a failing ``assert`` fails the test.
"""

import glob
import os
import sys

import pytest

from tests.conftest import ROOT, require_slow

NOTEBOOKS_DIR = os.path.join(ROOT, "notebooks")
EXPECTED = ("01_autoregressive", "02_bayes", "03_gmm_em", "04_ppca", "05_estimators",
            "06_amortization", "07_vae")
KERNEL = "python3"


def _read(path):
  import jupytext  # pylint: disable=g-import-not-at-top
  return jupytext.read(path, fmt="py:percent")


def _notebook_paths():
  return sorted(glob.glob(os.path.join(NOTEBOOKS_DIR, "*.py")))


def test_every_part_of_the_lecture_has_a_notebook():
  present = {os.path.splitext(os.path.basename(p))[0] for p in _notebook_paths()}
  missing = [name for name in EXPECTED if name not in present]
  assert not missing, f"notebooks/ lacks {', '.join(f'{m}.py' for m in missing)}"
  assert not glob.glob(os.path.join(NOTEBOOKS_DIR, "*.ipynb")), (
      "notebooks are stored as jupytext .py files only (no .ipynb)")


@pytest.mark.parametrize("name", EXPECTED)
def test_notebook_states_its_claim_and_asserts_it(name):
  path = os.path.join(NOTEBOOKS_DIR, f"{name}.py")
  if not os.path.exists(path):
    pytest.fail(f"notebooks/{name}.py does not exist", pytrace=False)
  with open(path) as f:
    head = f.read(200)
  assert head.startswith("# ---\n# jupyter:\n#   jupytext:"), (
      f"{name}.py lacks the jupytext header (jupytext --to py:percent writes it)")
  nb = _read(path)
  kinds = [cell.cell_type for cell in nb.cells]
  assert "markdown" in kinds, f"{name}.py has no Markdown cell stating the claim"
  assert any("$" in c.source for c in nb.cells if c.cell_type == "markdown"), (
      f"{name}.py states no formula (LaTeX between $...$) in its Markdown")
  code = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
  assert code, f"{name}.py has no code cell"
  assert nb.cells[-1].cell_type == "code" and "assert" in nb.cells[-1].source, (
      f"{name}.py must end with a code cell that asserts the claim")
  assert any("vae_jax" in c.source for c in code), f"{name}.py does not use the library"
  assert not any(line.lstrip().startswith(("%", "!")) for c in code
                 for line in c.source.splitlines()), (
      f"{name}.py uses IPython magics: it must also run as a plain script")


@pytest.mark.parametrize("name", EXPECTED)
def test_readme_links_every_notebook(name):
  with open(os.path.join(ROOT, "README.md")) as f:
    readme = f.read()
  assert f"(notebooks/{name}.py)" in readme, (
      f"README.md does not link notebooks/{name}.py as [..](notebooks/{name}.py)")


def test_the_kernel_is_this_python():
  """The ``python3`` kernel runs the interpreter the tests run (the venv's, with
  vae_jax installed), not another Python on PATH."""
  from jupyter_client.manager import KernelManager  # pylint: disable=g-import-not-at-top
  cmd = KernelManager(kernel_name=KERNEL).format_kernel_cmd()
  assert os.path.realpath(cmd[0]) == os.path.realpath(sys.executable), cmd


@pytest.mark.slow
@pytest.mark.parametrize("path", _notebook_paths(), ids=os.path.basename)
def test_notebook_runs(path, tmp_path):
  """Executes every cell in a fresh kernel started in a temporary folder.

  No cell timeout (a busy machine must not fail a correct notebook); an
  exception or a failed ``assert`` in any cell raises CellExecutionError.
  """
  require_slow("starts a Jupyter kernel")
  import nbclient  # pylint: disable=g-import-not-at-top
  nb = _read(path)
  client = nbclient.NotebookClient(nb, timeout=None, startup_timeout=600,
                                   kernel_name=KERNEL,
                                   resources={"metadata": {"path": str(tmp_path)}})
  client.execute()
