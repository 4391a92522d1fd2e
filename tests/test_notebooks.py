"""The lecture's notebooks (``notebooks/*.py``, jupytext percent format).

Unit tier: the seven notebooks exist, parse, state their claim in Markdown,
end with a code cell that defines ``check_claims`` (every headline claim as an
``assert``) and calls it, and the README links each one.
Slow tier: every notebook runs top to bottom in a Jupyter kernel (nbclient),
in a temporary folder, so a raising cell or a failing ``assert`` fails the test.
Then, in the same kernel (the notebook runs once), each of its INJECTED_ERRORS
(a bug a real implementation could have: a wrong sign, a dropped term, one
family's results swapped for another's) corrupts the numbers the claims are
made from and calls ``check_claims`` again: it must raise AssertionError, so
that the claims are shown to be asserted strongly enough to catch the bug.
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

# Per notebook: (what the bug is, code run in the notebook's kernel after it has run).
# The code recomputes what the bug would change and calls the notebook's check_claims.
INJECTED_ERRORS = {
    "01_autoregressive": [
        ("ancestral sampling with the sign of the logit flipped",
         "flipped = {'params': {**params['params'], 'masked_dense_2': jax.tree_util.tree_map(\n"
         "    jnp.negative, params['params']['masked_dense_2'])}}\n"
         "check_claims(max_chain_error, log_total,\n"
         "             sampling_check(np.asarray(draw_tiny(KEY_CHECK, flipped))), eval_curve)"),
    ],
    "02_bayes": [
        ("the excess loss without its entropy term (a dropped term)",
         "check_claims(mc_summary({k: v + entropy if k != 'MLE' else v\n"
         "                         for k, v in losses.items()}), exact, exact_far, slopes)"),
        ("the MAP plug-in computed with the predictive's formula",
         "check_claims(mc_summary(dict(losses, MAP=losses['predictive'])), exact, exact_far,"
         " slopes)"),
        ("the Bayes factor against the MLE's likelihood instead of the evidence",
         "check_claims(mc, exact, exact_far, slopes, bf=bayes_factor_summary(simulate_log_bf(\n"
         "    lambda x: h1.log_likelihood(0.5, x) - h1.log_likelihood(h1.mle(x), x), KEY_FACTOR)))"),
    ],
    "03_gmm_em": [
        ("log p(x) without the mixture weights' log pi_k (a dropped term)",
         "check_claims(ll, elbo, parts, parts_post, cross_checks(\n"
         "    np.asarray(gmm.log_prob(params.replace(weights=jnp.ones(K)), x)), resp))"),
        ("BIC with a penalty of 2 log n per component more than it should have",
         "check_claims(ll, elbo, parts, parts_post, checks, selection_table(\n"
         "    lambda p, x: gmm.bic(p, x) + p.num_components * np.log(len(x))))"),
    ],
    "04_ppca": [
        ("sigma^2 averaged over D instead of the D - M discarded eigenvalues",
         "check_claims(closed_form_checks(closed.replace(sigma2=eigvals[M:].sum() / D)),\n"
         "             em_ll, em_elbo, em_sigma2, em_WWt, vae_elbo, vae_ll)"),
        ("the evidence without its Occam factor: the maximum likelihood alone",
         "check_claims(closed_checks, em_ll, em_elbo, em_sigma2, em_WWt, vae_elbo, vae_ll,\n"
         "             evidence_checks(ppca.max_log_likelihood))"),
    ],
    "05_estimators": [
        ("the S-sample estimate summed instead of averaged (a dropped 1/S)",
         "summed = {s: {n: v * s**2 for n, v in d.items()} for s, d in vae_var.items()}\n"
         "check_claims(toy, toy_slopes, summed, variance_slopes(summed), bern_ratio)"),
        ("the score estimator falling back to the reparametrized gradient",
         "swapped = {s: dict(d, score=d['reparam']) for s, d in vae_var.items()}\n"
         "check_claims(toy, toy_slopes, swapped, variance_slopes(swapped), bern_ratio)"),
    ],
    "06_amortization": [
        ("the planar q* under the Gaussian decoder swapped for the Gaussian q*",
         "check_claims(own, dict(same_gap, planar=same_gap['gaussian']), rows, grid_error)"),
        ("the amortization gap with its sign flipped",
         "check_claims({f: dict(r, amortization_gap=-r['amortization_gap'])\n"
         "              for f, r in own.items()}, same_gap, rows, grid_error)"),
    ],
    "07_vae": [
        ("the IWAE bound as the mean of the log-weights, not their log-mean-exp",
         "check_claims({K: bound[1] for K in bound}, elbo, stream_error, active, unit_kl,\n"
         "             prior_errors, prior_log_px)"),
        ("the mixture prior's log-density without its weights' log-softmax (a dropped term)",
         "mog = learned_priors['mog']\n"
         "dropped = prior_density_error(mog, jax.random.fold_in(k_priors, 1), lambda z:\n"
         "                              jax.nn.logsumexp(mog.component_log_probs(z), -1))\n"
         "check_claims(bound, elbo, stream_error, active, unit_kl,\n"
         "             dict(prior_errors, mog=dropped), prior_log_px)"),
    ],
}


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
  last = nb.cells[-1].source
  assert "def check_claims(" in last and "\ncheck_claims(" in last, (
      f"{name}.py's last cell must define check_claims(...) and call it (the injected-error "
      "tests call it again)")
  assert any("vae_jax" in c.source for c in code), f"{name}.py does not use the library"
  assert not any(line.lstrip().startswith(("%", "!")) for c in code
                 for line in c.source.splitlines()), (
      f"{name}.py uses IPython magics: it must also run as a plain script")


@pytest.mark.parametrize("name", EXPECTED)
def test_every_notebook_has_an_injected_error(name):
  errors = INJECTED_ERRORS.get(name, [])
  assert errors, f"INJECTED_ERRORS has no bug for {name}.py"
  for what, code in errors:
    assert "check_claims(" in code, (name, what)
    compile(code, f"<injected error in {name}: {what}>", "exec")


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
  """Executes every cell in a fresh kernel started in a temporary folder, then
  each of the notebook's INJECTED_ERRORS in the same kernel.

  No cell timeout (a busy machine must not fail a correct notebook); an
  exception or a failed ``assert`` in any cell raises CellExecutionError. An
  injected error must make ``check_claims`` raise AssertionError.
  """
  require_slow("starts a Jupyter kernel")
  import nbclient  # pylint: disable=g-import-not-at-top
  import nbformat  # pylint: disable=g-import-not-at-top
  from nbclient.exceptions import CellExecutionError  # pylint: disable=g-import-not-at-top
  name = os.path.splitext(os.path.basename(path))[0]
  nb = _read(path)
  client = nbclient.NotebookClient(nb, timeout=None, startup_timeout=600,
                                   kernel_name=KERNEL,
                                   resources={"metadata": {"path": str(tmp_path)}})
  survived = []
  with client.setup_kernel():
    for index, cell in enumerate(nb.cells):
      client.execute_cell(cell, index)
    for what, code in INJECTED_ERRORS.get(name, []):
      nb.cells.append(nbformat.v4.new_code_cell(code))
      try:
        client.execute_cell(nb.cells[-1], len(nb.cells) - 1)
      except CellExecutionError as e:
        if e.ename != "AssertionError":
          raise
      else:
        survived.append(what)
  assert not survived, f"{name}.py's claims still hold with these bugs injected: {survived}"
