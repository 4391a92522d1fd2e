"""The documents' result tables are generated from the recorded JSON (scripts/results.py):
results/*.json for the recipes, scripts/benchmarks/results/*.json for the benchmarks."""

import importlib
import json
import os
import sys

import pytest

from tests.conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "scripts"))
results = importlib.import_module("results")   # puts scripts/benchmarks/ on sys.path
machine = importlib.import_module("machine")


def _documents() -> dict[str, str]:
  out = {}
  for path in results.documents():
    with open(path) as f:
      out[os.path.relpath(path, ROOT)] = f.read()
  return out


def test_the_documents_are_readme_docs_and_the_benchmarks_readme():
  names = set(_documents())
  assert {"README.md", "docs/testing.md", "scripts/benchmarks/README.md"} <= names


@pytest.mark.parametrize("name", sorted(_documents()))
def test_tables_are_what_the_results_render(name):
  """A hand-edited number, or a result re-recorded without `render`, fails here."""
  text = _documents()[name]
  assert results.render(text, results.load_results()) == text, (
      f"{name}'s generated tables differ from the recorded results: run "
      "`python scripts/results.py render`")


def test_every_table_is_in_one_document_and_every_block_has_a_table():
  names = [n for text in _documents().values() for n in results.blocks(text)]
  assert set(names) <= set(results.TABLES)
  assert len(names) == len(set(names)), "a table is rendered in two places"
  # A table waits outside the documents only while its recipe's result is not recorded.
  recorded = results.load_results()
  for name in set(results.TABLES) - set(names):
    assert name in results.RECIPES and name not in recorded, name


def test_benchmark_records_live_beside_the_benchmarks():
  recorded = results.load_results()
  assert set(results.BENCHMARKS) <= set(recorded)
  assert not set(results.BENCHMARKS) & {f[:-5] for f in os.listdir(results.RESULTS)}, (
      "results/ holds the recipes' records; a benchmark's goes to scripts/benchmarks/results/")
  for name, command in results.BENCHMARKS.items():
    assert os.path.exists(os.path.join(ROOT, command[1])), (name, command)


def test_check_fails_on_a_stale_table_and_passes_on_the_rendered_one(tmp_path, monkeypatch):
  """`check` reads every document: a number edited by hand in any of them fails it."""
  doc = tmp_path / "doc.md"
  rendered = results.render("<!-- results:bench_gmm -->\n<!-- /results:bench_gmm -->\n",
                            results.load_results())
  doc.write_text(rendered)
  monkeypatch.setattr(results, "documents", lambda: [str(doc)])
  results.main(["results.py", "check"])                 # passes: returns
  doc.write_text(rendered.replace("| 1x |", "| 2x |"))
  with pytest.raises(SystemExit) as e:
    results.main(["results.py", "check"])
  assert e.value.code == 1
  results.main(["results.py", "render"])
  assert doc.read_text() == rendered


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


def _levers_record() -> dict:
  def lever(median, lo, hi, verdict, nbytes, identical):
    return {"description": "what it changes", "ms_per_step": 4.7 + median,
            "paired_ms": {"median": median, "interval": [lo, hi], "level": 0.9,
                          "verdict": verdict},
            "cost_vs_baseline": {"bytes_accessed": nbytes, "flops": 1.0},
            "same_numbers": {"bit_identical": identical, "max_rel_param_diff": 0.0 if identical
                             else 2.2e-4, "loss_sum": 1.0, "baseline_loss_sum": 1.0}}
  return {"name": "bench_step_levers", "command": "python scripts/benchmarks/bench_step_levers.py",
          "commit": "abc1234", "recorded": "2026-12-01", "machine_measured": "by the benchmark",
          "machine": {"cores": 2, "cpu": "AMD EPYC", "jax": "0.10.2", "matmul_gflops": 100.0,
                      "load_average": [1.5, 1.0, 1.0]},
          "summary": {"flags": {"rounds": 30, "dispatches": 4, "steps": 40},
                      "baseline": {"ms_per_step": 4.7, "reference": "baseline_mean"},
                      "levers": {"baseline_again": lever(0.01, -0.05, 0.06, "no change measured",
                                                         1.0, True),
                                 "sgd": lever(-0.3, -0.4, -0.2, "faster", 0.766, False),
                                 "xla_option": {**lever(0.02, -0.1, 0.1, "no change measured",
                                                        1.0, True), "same_hlo": True}}}}


def test_bench_step_levers_table_reads_each_lever_against_the_noise_floor():
  table = results.table_bench_step_levers({"bench_step_levers": _levers_record()})
  rows = table.split("\n\n")[0].split("\n")
  assert rows[2] == ("| `baseline_again`: what it changes | +0.01 (−0.05 to +0.06) | "
                     "no change measured | 1.00 | bit-identical |")
  assert rows[3] == ("| `sgd`: what it changes | −0.30 (−0.40 to −0.20) | faster | 0.77 | "
                     "differ (params 2.2e-4 rel.) |")
  assert rows[4] == ("| `xla_option`: what it changes | +0.02 (−0.10 to +0.10) | "
                     "no change measured | 1.00 | bit-identical; the same optimized HLO |")
  assert "4.70 ms per step" in table and "30 rounds" in table
  assert "mean of the baseline's two copies" in table
  assert table.endswith("load average 1.5 at its start")


def test_bench_vae_step_table_says_the_paired_fractions_round_by_round():
  r = json.loads(json.dumps(results.load_results()["bench_vae_step"]))
  runner = next(iter(r["summary"]["results"].values()))["vae_jax_runner"]["k"]
  k = next(iter(runner))
  runner[k]["paired_fraction_of_independent_limit"] = {
      m: {"median": 0.6, "rounds": [0.55, 0.6, 0.65]} for m in ("trainer", "loop", "wall")}
  next(iter(r["summary"]["results"].values()))["vae_jax_runner"][
      "chained_fraction_of_independent_limit"] = {"median": 0.7, "rounds": [0.65, 0.7, 0.75]}
  table = results.table_bench_vae_step({"bench_vae_step": r})
  assert (f"k = {k}: each runner call against the independent limit timed just before it, "
          "median of 3 rounds): steady state 60.0% (rounds 55.0%, 60.0%, 65.0%)") in table
  assert ("paired the same way: 70.0% of the independent limit (rounds 65.0%, 70.0%, "
          "75.0%)") in table


def test_profile_step_table_lists_the_parts_and_the_products_alone():
  parts = {"matrix products": (3.0, 0.6), "optimizer (Adam)": (0.5, 0.1),
           "between operations": (1.5, 0.3)}
  r = {"name": "profile_step", "command": "python scripts/benchmarks/profile_step.py", "commit": "abc1234",
       "recorded": "2026-12-01", "machine_measured": "by the benchmark",
       "machine": {"cores": 2, "cpu": "AMD EPYC", "jax": "0.10.2", "matmul_gflops": 100.0,
                   "load_average": [1.5, 1.0, 1.0]},
       "summary": {"flags": {"steps": 40, "dispatches": 5},
                   "ms_per_step": {"untraced": 4.0, "traced": 5.0, "trace_window": 5.0},
                   "parts": [{"part": k, "ms_per_step": ms, "share": share}
                             for k, (ms, share) in parts.items()],
                   "products": {"count": 20, "alone_count": 20, "in_step_shared_ms": 3.0,
                                "in_step_own_ms": 3.4, "alone_ms": 2.5}}}
  table = results.table_profile_step({"profile_step": r})
  rows = table.split("\n\n")[0].split("\n")
  assert rows[2:] == ["| matrix products | 3.00 | 60% |", "| optimizer (Adam) | 0.50 | 10% |",
                      "| between operations | 1.50 | 30% |"]
  assert "traced: 5.00 ms per step, against 4.00 ms for the same dispatches untraced" in table
  assert "cost: 25%" in table and "took 3.00 ms of the step (3.40 ms" in table
  assert "took 2.50 ms in the same run" in table
