"""experiments/autoregressive.py: MADE's outputs, exact NLL, determinism, bad input."""

import json
import math
import os

import pytest

from experiments import autoregressive
from tests.conftest import get_config
from vae_jax import data
from vae_jax.errors import UserError


@pytest.mark.slow
def test_run_writes_its_outputs_and_is_deterministic(tmp_path):
  a = autoregressive.run(get_config("autoregressive"), str(tmp_path / "a"))
  b = autoregressive.run(get_config("autoregressive"), str(tmp_path / "b"))
  for name in ("config.json", "data_spec.json", "metrics.jsonl", "summary.json",
               "samples.png", "training_curves.png"):
    assert os.path.getsize(tmp_path / "a" / name) > 0, name
  with open(tmp_path / "a" / "summary.json") as f:
    summary = json.load(f)
  assert summary["step"] == 60 and summary["eval_examples"] == 297
  assert summary["eval_data_binary"] is True
  for k in ("eval_nll", "eval_bits_per_dim", "steps_per_s", "num_parameters"):
    assert math.isfinite(summary[k]) and summary[k] > 0, k
  assert summary["eval_bits_per_dim"] == pytest.approx(summary["eval_nll"] / (64 * math.log(2)))
  # 64 * (64 + 64) weights + 64 + 64 biases; about half the weights are masked.
  assert summary["num_parameters"] == 2 * 64 * 64 + 128
  assert summary["num_free_parameters"] < 0.6 * summary["num_parameters"]
  assert summary["eval_nll"] < 64 * math.log(2)        # better than a fair coin
  with open(tmp_path / "a" / "metrics.jsonl") as f:
    records = [json.loads(line) for line in f]
  assert [r["step"] for r in records if r["split"] == "eval"] == [30, 60]
  assert len([r for r in records if r["split"] == "train"]) == 6
  assert a["eval_nll"] == b["eval_nll"]
  assert a == {**b, "steps_per_s": a["steps_per_s"], "examples_per_s": a["examples_per_s"]}


def test_bad_input_raises_user_errors(tmp_path):
  config = get_config("autoregressive")
  config.model.hidden_dims = (64, -1)
  with pytest.raises(UserError, match="config.model.hidden_dims"):
    autoregressive.run(config, str(tmp_path))
  config = get_config("autoregressive")
  config.train.learning_rate = 0.0
  with pytest.raises(UserError, match="config.train.learning_rate"):
    autoregressive.run(config, str(tmp_path / "lr"))
  ds = data.load_arrays("digits", binarize="none")
  bad = data.Dataset(name="scaled", train_x=ds.train_x * 16, train_y=ds.train_y,
                     eval_x=ds.eval_x, eval_y=ds.eval_y, image_shape=ds.image_shape)
  with pytest.raises(UserError, match=r"\[0, 1\]"):
    autoregressive.check_binary(bad, "MADE")
