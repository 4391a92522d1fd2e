"""scripts/benchmarks/profile_step.py: the step's time by part, from a jax.profiler trace."""

import importlib
import os
import sys

import jax
import jax.numpy as jnp
import pytest

from tests.conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "scripts", "benchmarks"))
profile_step = importlib.import_module("profile_step")


def test_attribute_shares_overlaps_equally_and_adds_up_to_the_union():
  out = profile_step.attribute([(0, 10, "a"), (5, 15, "b"), (20, 30, "a"), (22, 24, "a"),
                                (40, 40, "empty")])
  # [0,5) a; [5,10) a and b; [10,15) b; [20,30) a (the nested a adds nothing new).
  assert out == pytest.approx({"a": 5 + 2.5 + 10, "b": 2.5 + 5})
  assert sum(out.values()) == pytest.approx(25)   # the union: 0-15 and 20-30


def test_ops_are_sorted_into_the_steps_parts_by_opcode_and_named_scope():
  def f(w, x, g):
    h = jnp.tanh(x @ w)
    with jax.named_scope("optimizer"):
      w = w - 0.1 * jnp.exp(g) * w
    with jax.named_scope("binarize"):
      b = (x > 0.5).astype(jnp.float32)
    return h, w, b

  args = [jnp.ones((16, 16))] * 3
  ops = profile_step.hlo_ops(jax.jit(f).lower(*args).compile().as_text())
  parts = {name: profile_step.part_of(op) for name, op in ops.items()}
  found = set(parts.values())
  assert {profile_step.PRODUCTS, "optimizer (Adam)", "binarization"} <= found, parts
  # Parameters and the output tuple are not operations of their own.
  assert all(parts[n] is None for n, op in ops.items() if op.opcode in ("parameter", "tuple"))
  assert sum(p == profile_step.PRODUCTS for p in parts.values()) == 1, parts


def test_a_fusion_without_a_name_of_its_own_takes_the_scope_inside_it():
  hlo = """
%fused_computation.2 (param_0.3: f32[], param_1.3: f32[200,784]) -> f32[7,25] {
  %param_1.3 = f32[200,784]{1,0} parameter(1)
  %square.90 = f32[200,784]{1,0} multiply(%param_1.3, %param_1.3), metadata={op_name="jit(f)/while/body/grad_norm/square"}
  %param_0.3 = f32[] parameter(0)
  ROOT %reduce-window.102 = f32[7,25]{1,0} reduce-window(%square.90, %param_0.3), window={size=32x32 stride=32x32 pad=12_12x8_8}, to_apply=%region_31.40
}

ENTRY %main.1 (g: f32[200,784]) -> f32[7,25] {
  %g = f32[200,784]{1,0} parameter(0)
  %constant.690 = f32[] constant(0)
  ROOT %ynn_fusion.2 = f32[7,25]{1,0} fusion(%constant.690, %g), kind=kCustom, calls=%fused_computation.2, backend_config={"fusion_config":{"kind":"__ynn_fusion"}}
}
"""
  ops = profile_step.hlo_ops(hlo)
  assert set(ops) == {"g", "constant.690", "ynn_fusion.2"}   # not the fusion's insides
  assert profile_step.part_of(ops["ynn_fusion.2"]) == "gradient norm"
  assert ops["ynn_fusion.2"].root_opcode == "reduce-window"
  # A fusion with a name of its own keeps it, whatever it recomputes inside.
  named = ops["ynn_fusion.2"]._replace(op_name="jit(f)/while/body/jvp()/sub")
  assert profile_step.part_of(named) == profile_step.ELEMENTWISE


@pytest.mark.slow
def test_profile_attributes_the_trainers_loop_to_every_part():
  """Traces 2 dispatches of 4 steps of the runner's program (about 30 s of CPU):
  every named part of the step shows up, the parts add up to the traced window,
  and all 20 products are found in the step and alone."""
  out = profile_step.profile(steps=4, dispatches=2, limit_repeats=1)
  parts = {p["part"]: p["ms_per_step"] for p in out["parts"]}
  assert list(parts) == list(profile_step.PARTS)
  for part in ("matrix products", "loss and gradient, element-wise", "batch gather",
               "binarization", "gradient norm", "optimizer (Adam)"):
    assert parts[part] > 0, (part, parts)
  assert sum(parts.values()) == pytest.approx(out["ms_per_step"]["trace_window"], rel=1e-9)
  assert sum(p["share"] for p in out["parts"]) == pytest.approx(1.0)
  assert out["products"]["count"] == out["products"]["alone_count"] == 20
  assert out["products"]["in_step_own_ms"] >= out["products"]["in_step_shared_ms"] > 0
  assert out["top_operations"][0]["part"] == "matrix products"
