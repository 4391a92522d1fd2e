"""The README's result tables are generated from results/*.json (scripts/results.py)."""

import importlib
import json
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
  assert set(names) <= set(results.TABLES)
  assert len(names) == len(set(names))
  # A table waits outside the README only while its recipe's result is not recorded.
  recorded = results.load_results()
  for name in set(results.TABLES) - set(names):
    assert name in results.RECIPES and name not in recorded, name


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


def _vs_commit_record(expm1_differs: bool) -> dict:
  def cost(ratio):
    return {"old": 1.0, "new": ratio, "ratio_new_over_old": ratio, "within_5_percent": True}
  differ = {"exponential-minus-one": {"old": 0, "new": 1}} if expm1_differs else {}
  program = {"cost": {"flops": cost(1.000089), "transcendentals": cost(1.019592),
                      "bytes accessed": cost(0.99869)}, "hlo_op_counts_that_differ": differ}
  return {"name": "bench_vs_commit", "command": "python scripts/bench_vs_commit.py --ref=6644f40",
          "commit": "abc1234", "recorded": "2026-12-01", "machine_measured": "by the benchmark",
          "machine": {"cores": 2, "cpu": "CPU", "jax": "0.10.2", "load_average": [1.0, 1.0, 1.0]},
          "summary": {"settings": {"iwae_num_samples": 5000},
                      "xla_cost": {"iwae_chunk": program, "train_grad": program},
                      "ref": {"old": {"commit": "6644f40" + "0" * 33, "given": "6644f40"},
                              "new": {"commit": "abc1234" + "0" * 33, "given": "HEAD"}}}}


def test_vs_commit_table_digits_and_notes_only_where_the_programs_differ():
  table = results.table_bench_vs_commit({"bench_vs_commit": _vs_commit_record(True)})
  # As many digits as it takes to show a ratio is not 1, at least three.
  assert ("| training loss and gradient (batch 100) | 1.0001 | 1.020 (distrax's KL uses one "
          "`expm1` per latent) | 0.999 |") in table
  assert "| IWAE-5000 chunk (batch 20) | 1.0001 | 1.020 | 0.999 |" in table
  assert "new: abc1234; old: 6644f40." in table
  # A run whose programs no longer differ in expm1 does not carry the old explanation.
  assert "expm1" not in results.table_bench_vs_commit(
      {"bench_vs_commit": _vs_commit_record(False)})


def _bench_distrax_record() -> dict:
  """The shape of a full `python scripts/bench_distrax.py` run (the keys the table reads)."""
  def ratio(paired_median):
    return {"paired_median": paired_median, "paired_quartiles": [0.9, 1.2], "median": 1.0,
            "min": 1.0}

  def counts(flops, transcendentals, bytes_accessed):
    return {"flops": flops, "transcendentals": transcendentals, "bytes_accessed": bytes_accessed}

  def perspective(extra_pct):
    return {"unit": "train step (batch 100, 1 sample)", "extra_pct_of_reference": extra_pct}

  return {
      "name": "bench_distrax", "command": "python scripts/bench_distrax.py", "commit": "abc1234",
      "recorded": "2026-12-02", "machine_measured": "by the benchmark",
      "machine": {"cores": 2, "cpu": "AMD EPYC", "jax": "0.10.2", "backend": "cpu",
                  "load_average": [1.2, 1.0, 1.0], "matmul_gflops": 113.2},
      "summary": {
          "benchmark": "distrax_vs_jnp",
          "flags": {"quick": False, "only": None, "train_rounds": 16, "iwae_rounds": 6,
                    "num_samples": 5000, "mixture_rounds": 10},
          "train_step_ratio_vs_jnp": {"distrax_mvn": ratio(1.0968),
                                      "distrax_independent": ratio(1.094),
                                      "distrax_q_and_prior_only": ratio(1.0307)},
          "iwae5000_ratio_vs_jnp": {"distrax_q_and_prior_only": ratio(1.0444),
                                    "distrax_independent_q_and_prior_only": ratio(0.965),
                                    "distrax_mvn_all": ratio(1.3543)},
          "xla_cost_ratio_vs_jnp": {
              "train_loop": {"distrax_mvn": counts(1.0099, 1.529, 1.017),
                             "distrax_independent": counts(1.0099, 1.529, 1.019),
                             "distrax_q_and_prior_only": counts(1.0001088, 1.0083045, 0.99926)},
              "iwae5000": {"distrax_q_and_prior_only": counts(1.0, 1.0, 1.0),
                           "distrax_independent_q_and_prior_only": counts(1.0, 1.0, 1.0),
                           "distrax_mvn_all": counts(1.0275, 1.939, 5.1039)}},
          "mixture": {
              "components": [500, 10],
              "ratio_distrax_vs_ours": {"K500/train_n100_grad": ratio(42.764),
                                        "K500/iwae_chunk_n2000": ratio(17.68),
                                        "K10/train_n100_grad": ratio(2.8198),
                                        "K10/iwae_chunk_n2000": ratio(1.84)},
              "perspective": {"K500/train_n100_grad": perspective(1305.5),
                              "K10/train_n100_grad": perspective(2.566)}},
      }}


def test_bench_distrax_table_from_a_full_run():
  table = results.table_bench_distrax({"bench_distrax": _bench_distrax_record()})
  rows = table.split("\n\n")[0].split("\n")
  assert rows[:2] == ["| what | distrax / plain jnp | decision |", "| --- | --- | --- |"]
  assert rows[2:] == [
      "| default training step, q and N(0, I) from distrax | 1.03 (XLA flops 1.0001, exp/log "
      "1.008) | distrax (`distrax.Normal` in `DiagNormal`) for densities; draws: distrax's "
      "arithmetic on `vae_jax.prng.normal` eps (the same numbers); the closed-form KL stays ours "
      "(distrax's adds an `expm1` per latent) |",
      "| IWAE-5000 evaluation, q and N(0, I) from distrax | 1.04 (identical XLA counts) | "
      "distrax |",
      "| the same with distrax's Bernoulli p(x\\|z) too | 1.10 (step), 1.35 (IWAE: 5.1x memory "
      "traffic) | our fused `x·l − softplus(l)` |",
      "| mixture prior log p(z), K = 500, batch 100 with gradient | 42.8 (distrax builds "
      "[N, K, L]; ours two [N, L]x[L, K] products) | ours (`DiagNormalMixture`) |",
      "| the same, K = 10 | 2.8 (distrax's extra time 2.6% of a step) | ours |",
  ]
  assert table.endswith("- `bench_distrax`: `python scripts/bench_distrax.py` at abc1234 on "
                        "2026-12-02, 2 cores (AMD EPYC), matmul 113 GFLOP/s (measured by the "
                        "benchmark), load average 1.2 at its start")
  # The README keeps its hand-written table until a full run is recorded.
  if "bench_distrax" not in results.load_results():
    assert "bench_distrax" not in results.blocks(_readme())


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
  return {"name": "bench_step_levers", "command": "python scripts/bench_step_levers.py",
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
  r = {"name": "profile_step", "command": "python scripts/profile_step.py", "commit": "abc1234",
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
