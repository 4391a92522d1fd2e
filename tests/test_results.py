"""The README's result tables are generated from results/*.json (scripts/results.py)."""

import importlib
import os
import sys

import pytest

from tests.conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "scripts"))
results = importlib.import_module("results")
machine = importlib.import_module("machine")


def _readme() -> str:
  with open(os.path.join(ROOT, "README.md")) as f:
    return f.read()


def test_readme_tables_are_what_the_results_render():
  """A hand-edited number, or a result re-recorded without `render`, fails here."""
  text = _readme()
  assert results.render(text, results.load_results()) == text, (
      "README.md's generated tables differ from results/*.json: run "
      "`python scripts/results.py render`")


def test_every_table_is_in_the_readme_and_every_block_has_a_table():
  names = results.blocks(_readme())
  assert sorted(names) == sorted(results.TABLES)
  assert len(names) == len(set(names))


def test_every_result_says_where_and_how_it_was_made():
  recorded = results.load_results()
  assert recorded, "results/ is empty"
  for name, r in recorded.items():
    assert r["name"] == name
    assert r["command"] and r["commit"] and r["recorded"], name
    m = r["machine"]
    assert m["cores"] >= 1 and m["cpu"] and m["jax"], name


def test_speeds_are_shown_only_with_the_machines_matmul_rate():
  """The default-runs table shows steps/s: its runs were timed with the machine."""
  recorded = results.load_results()
  table = results.TABLES["default_runs"](recorded)
  for name, r in recorded.items():
    if f"`{name}`:" in table and "steps_per_s" in r["summary"]:
      assert r["machine"]["matmul_gflops"] > 0, name
      assert "GFLOP/s" in table.split(f"`{name}`:")[1].split("\n")[0], name


def test_recipes_name_existing_configs():
  for name, command in results.RECIPES.items():
    for arg in command:
      if arg.startswith("--config="):
        path = arg.split("=", 1)[1].split(":")[0]
        assert os.path.exists(os.path.join(ROOT, path)), (name, path)
      elif arg.endswith(".py"):
        assert os.path.exists(os.path.join(ROOT, arg)), (name, arg)


def _amortization_record(gap):
  fam = {"amortized_elbo": -30.0, "optimized_elbo": -30.0 + gap, "log_likelihood_iw": -29.0,
         "amortization_gap": gap, "amortization_gap_stderr": 0.05,
         "approximation_gap": 1.0 - gap, "approximation_gap_stderr": 0.07, "flow_steps": None}
  return {"name": "amortization", "command": "python -m experiments.main", "commit": "abc",
          "recorded": "2026-12-01", "machine": {"cores": 2, "cpu": "CPU", "jax": "0.10.2"},
          "summary": {"families": {"planar": {**fam, "flow_steps": 2}, "gaussian": fam}}}


def test_render_fills_a_block_from_the_numbers():
  text = "intro\n<!-- results:amortization -->\nold table\n<!-- /results:amortization -->\nend\n"
  out = results.render(text, {"amortization": _amortization_record(0.25)})
  assert "old table" not in out and out.startswith("intro\n") and out.endswith("end\n")
  assert "| `gaussian` | −30.00 | −29.75 | −29.00 | 0.25 ± 0.05 | 0.75 ± 0.07 |" in out
  # The configs' order, not summary.json's sorted keys.
  assert out.index("`gaussian`") < out.index("`planar` (2 flow steps)")
  # A changed number changes the table: render is not the identity on stale text.
  assert results.render(out, {"amortization": _amortization_record(0.30)}) != out
  assert results.render(out, {"amortization": _amortization_record(0.25)}) == out


def test_render_refuses_a_block_without_a_table():
  with pytest.raises(KeyError, match="no_such_table"):
    results.render("<!-- results:no_such_table -->\n<!-- /results:no_such_table -->", {})


def test_machine_label_carries_the_matmul_rate():
  info = {"backend": "cpu", "cores": 2, "cpu": "AMD EPYC", "matmul_gflops": 241.6}
  assert machine.label(info) == "2 cores (AMD EPYC), matmul 242 GFLOP/s"
  assert machine.label({**info, "backend": "gpu", "device_count": 1,
                        "device_kind": "NVIDIA H200"}).startswith("1 x NVIDIA H200")
