"""scripts/benchmarks/bench_step_levers.py and its paired statistics (paired.py there)."""

import importlib
import os
import sys

import numpy as np
import pytest

from tests.conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "scripts", "benchmarks"))
paired = importlib.import_module("paired")


def test_paired_differences_call_a_real_shift_and_not_noise():
  rng = np.random.default_rng(0)
  base = 5.0 + rng.normal(0, 0.3, size=40)
  drift = np.linspace(0, 1, 40)            # the machine slows during the run: both see it
  values = {"baseline": list(base + drift),
            "faster": list(base + drift - 0.2 + rng.normal(0, 0.02, size=40)),
            "same": list(base + drift + rng.normal(0, 0.02, size=40)),
            "slower": list(base + drift + 0.1 + rng.normal(0, 0.02, size=40))}
  out = paired.paired_differences(values, "baseline")
  assert out["faster"]["verdict"] == "faster"
  assert out["slower"]["verdict"] == "slower"
  assert out["same"]["verdict"] == "no change measured"
  lo, hi = out["faster"]["interval"]
  assert lo <= out["faster"]["median"] <= hi and -0.23 < lo < hi < -0.17
  # Unpaired, the drift (1.0) and the noise (0.3) would swamp a 0.1 shift.
  assert np.std(values["baseline"]) > 0.25


def test_median_interval_covers_the_median_at_its_level():
  rng = np.random.default_rng(1)
  covered = 0
  for _ in range(200):
    lo, hi = paired.median_interval(rng.normal(size=31), level=0.9, resamples=500)
    covered += lo <= 0.0 <= hi
  assert 0.8 <= covered / 200 <= 0.99


def test_interleaved_rotates_the_order():
  order = []
  fns = {n: (lambda n=n: order.append(n) or 0.0) for n in "abc"}
  secs = paired.interleaved(fns, 3)
  assert order == list("abcbcacab") and {n: len(v) for n, v in secs.items()} == dict.fromkeys(
      "abc", 3)


def test_interleaved_shuffles_each_round_when_seeded():
  order = []
  fns = {n: (lambda n=n: order.append(n) or 0.0) for n in "abcdef"}
  paired.interleaved(fns, 8, shuffle_seed=0)
  rounds = [order[i:i + 6] for i in range(0, 48, 6)]
  assert all(sorted(r) == list("abcdef") for r in rounds)
  # Not a rotation: some variant follows different predecessors from round to round.
  before_b = {r[r.index("b") - 1] for r in rounds if r.index("b") > 0}
  assert len(before_b) > 1


def test_a_difference_within_the_noise_floor_is_no_change():
  rng = np.random.default_rng(2)
  base = 5.0 + rng.normal(0, 0.3, size=30)
  values = {"baseline": list(base), "lever": list(base - 0.05 + rng.normal(0, 0.005, size=30))}
  assert paired.paired_differences(values, "baseline", floor=0.01)["lever"]["verdict"] == "faster"
  assert paired.paired_differences(values, "baseline", floor=0.1)["lever"]["verdict"] == (
      "no change measured")


@pytest.mark.slow
def test_levers_build_the_trainers_program_and_report_their_numbers():
  """Compiles the baseline and four levers (about 15 s of CPU): the bit-identical
  ones must be, SGD must not be, and XLA's cost analysis must see Adam's passes."""
  levers = importlib.import_module("bench_step_levers")
  out = levers.bench(["jax_random_draws", "binarize_bitcast", "data_uint8", "no_grad_norm",
                      "xla_tree_reduction", "sgd"], rounds=2, dispatches=1, steps=2)
  got = out["levers"]
  for name in ("jax_random_draws", "binarize_bitcast", "data_uint8", "no_grad_norm"):
    assert got[name]["same_numbers"]["bit_identical"], (name, got[name]["same_numbers"])
  for name in ("jax_random_draws", "binarize_bitcast", "data_uint8", "no_grad_norm",
               "xla_tree_reduction"):
    assert not got[name]["same_hlo"], name    # each changed the program
  # The rewrite changes the order of the step's sums: with the log sigma^2 head the
  # loss sum moves in its last bits (the parameters, after two steps, do not).
  tree = got["xla_tree_reduction"]["same_numbers"]
  assert tree["max_rel_param_diff"] <= 1e-6, tree
  assert tree["loss_sum"] == pytest.approx(tree["baseline_loss_sum"], rel=1e-6), tree
  # The rewrite (off in the trainer on CPU) brings back the gradient norm's windows
  # and their partial sums.
  assert got["xla_tree_reduction"]["cost_vs_baseline"]["bytes_accessed"] > 1.0
  sgd = got["sgd"]
  assert not sgd["same_numbers"]["bit_identical"]
  assert sgd["same_numbers"]["max_rel_param_diff"] > 1e-6
  # Adam reads and writes two moments per parameter; SGD does not.
  assert sgd["cost_vs_baseline"]["bytes_accessed"] < 0.95
  assert got["binarize_bitcast"]["cost_vs_baseline"]["flops"] > 0
  # The uint8 split is gathered: a quarter of the bytes of the rows the step reads.
  assert got["data_uint8"]["cost_vs_baseline"]["bytes_accessed"] < 0.9
  for r in got.values():
    lo, hi = r["paired_ms"]["interval"]
    assert lo <= r["paired_ms"]["median"] <= hi
    assert r["ms_per_step"] > 0
  with pytest.raises(ValueError, match="unknown lever"):
    levers.bench(["not_a_lever"], rounds=1, dispatches=1, steps=1)


@pytest.mark.slow
def test_a_lever_whose_patch_the_step_never_calls_stops_the_run(monkeypatch):
  """The trainer computes its gradient norm per group (optax.tree_utils.tree_norm):
  a lever patching optax.global_norm instead compiles to the baseline's program."""
  levers = importlib.import_module("bench_step_levers")
  monkeypatch.setitem(levers.LEVERS, "global_norm_zero", levers.Lever(
      "patches a function the step does not call",
      lambda: levers._patched(levers.optax, "global_norm", lambda tree: 0.0)))
  with pytest.raises(RuntimeError, match=r"\['global_norm_zero'\] compiled to the baseline"):
    levers.bench(["global_norm_zero"], rounds=1, dispatches=1, steps=1)
