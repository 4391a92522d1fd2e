"""experiments/bayes.py: outputs, posterior concentration, determinism, bad configs."""

import json
import os

from absl import flags
import jax
from ml_collections import config_flags
import numpy as np
import pytest

from experiments import bayes
from experiments.configs import bayes as bayes_config
from tests.test_workdir import read_tensorboard_scalars
from vae_jax.training import workdir as wd
from vae_jax.errors import UserError


@pytest.mark.slow
def test_tiny_writes_outputs_and_shows_concentration(tmp_path):
  config = bayes_config.get_config("tiny")
  config.bayes.sizes = (50, 5, 1, 10, 5)     # sorted and deduplicated by the run
  with jax.enable_x64(False):  # as the runner runs it
    summary = bayes.run(config, str(tmp_path))
  assert config.bayes.sizes == (50, 5, 1, 10, 5)  # the caller's config is not changed
  for name in ("config.json", "metrics.jsonl", "summary.json", "bayes.png", "bayes_factor.png"):
    assert os.path.getsize(tmp_path / name) > 0, name
  for name in ("bayes.png", "bayes_factor.png"):
    with open(tmp_path / name, "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  assert os.listdir(tmp_path / "tensorboard")
  saved_config = wd.read_json(str(tmp_path / "config.json"))
  assert saved_config == dict(experiment="bayes", seed=0, compilation_cache="default",
                              bayes=dict(sizes=[1, 5, 10, 50], trials=20, heldout=200,
                                         factor_truths=[0.5, 0.6], factor_prior=[1.0, 1.0]))
  assert wd.read_json(str(tmp_path / "summary.json")) == summary
  assert summary["sizes"] == [1, 5, 10, 50] and summary["trials"] == 20
  # The table's rows in the file are in the order of n, not of its text.
  assert list(wd.read_json(str(tmp_path / "summary.json"))["table"]["normal_normal"]) == [
      "1", "5", "10", "50"]
  records = wd.read_metrics(str(tmp_path))
  assert len(records) == 20 and {r["split"] for r in records} == {"bayes", "bayes_factor"}
  assert sorted((r["model"], r["step"]) for r in records if r["split"] == "bayes") == sorted(
      (m, n) for m in summary["table"] for n in (1, 5, 10, 50))
  assert sorted((r["truth"], r["step"]) for r in records if r["split"] == "bayes_factor") == [
      (t, n) for t in ("theta_0.5", "theta_0.6") for n in (1, 5, 10, 50)]
  # TensorBoard: one tag per model and metric, not three models in one series.
  tags = read_tensorboard_scalars(str(tmp_path))
  assert {t for t in tags if t.startswith("bayes/logloss_predictive")} == {
      f"bayes/logloss_predictive/{m}" for m in summary["table"]}
  assert tags["bayes/posterior_std/normal_normal"] == pytest.approx(
      {n: summary["table"]["normal_normal"][str(n)]["posterior_std"] for n in (1, 5, 10, 50)})

  table = summary["table"]
  assert set(table) == {"beta_bernoulli", "dirichlet_categorical", "normal_normal"}
  for name, rows in table.items():
    std = [rows[n]["posterior_std"] for n in ("1", "5", "50")]
    assert std[0] > std[1] > std[2] > 0, (name, std)
    # The truths are set so that at n = 1 the predictive beats the MAP plug-in
    # for every training point (discrete models; see default_settings).
    one = rows["1"]
    assert one["logloss_predictive"] < one["logloss_map"], (name, one)
    assert one["map_minus_predictive"] > 2 * one["map_minus_predictive_se"], (name, one)
  # N(0, 1) prior, unit noise: the posterior std is 1 / sqrt(1 + n) whatever the data.
  for n in (1, 5, 50):
    assert table["normal_normal"][str(n)]["posterior_std"] == pytest.approx(
        1 / np.sqrt(1 + n), rel=1e-5)
  for name in ("beta_bernoulli", "dirichlet_categorical"):  # one point cannot show every outcome
    assert table[name]["1"]["logloss_mle"] == "inf"
    assert table[name]["1"]["mle_inf_fraction"] == 1.0
  assert table["normal_normal"]["50"]["mle_inf_fraction"] == 0.0
  assert summary["models"]["normal_normal"]["entropy"] == pytest.approx(
      0.5 * np.log(2 * np.pi * np.e), rel=1e-6)
  # The fair coin against Beta(1, 1)-Bernoulli: every trial's log BF_01 is SciPy's closed
  # form, the first trial's is the quadrature of p(X | theta) p(theta), and the mean over
  # trials is within 4 s.e. of the exact expectation (a binomial sum) at every n.
  factor = summary["bayes_factor"]
  assert factor["prior"] == {"a": 1.0, "b": 1.0} and factor["null_theta"] == 0.5
  assert factor["quadrature_checks"] == 8 and factor["quadrature_max_abs_diff"] < 1e-9
  for truth, entry in factor["truths"].items():
    t = float(truth)
    assert entry["kl_to_null"] == pytest.approx(t * np.log(2 * t) + (1 - t) * np.log(2 - 2 * t))
    for n, row in entry["rows"].items():
      assert row["max_abs_diff_vs_scipy"] < 1e-10, (truth, n)
      assert row["q10_log_bf"] <= row["median_log_bf"] <= row["q90_log_bf"]
      if int(n) > 1:
        assert abs(row["mean_log_bf"] - row["exact_expected_log_bf"]) < 4 * row["se_log_bf"]
      else:   # one flip: p(x | 1/2) = 1/2 = p(x | H1) under Beta(1, 1), so BF_01 = 1 exactly
        assert row["mean_log_bf"] == pytest.approx(0.0, abs=1e-12)
        assert row["exact_expected_log_bf"] == pytest.approx(0.0, abs=1e-12)
  assert factor["truths"]["0.5"]["rows"]["50"]["exact_expected_log_bf"] > 1.0   # ~ log(50)/2
  assert factor["truths"]["0.6"]["rows"]["50"]["exact_expected_log_bf"] < (
      factor["truths"]["0.5"]["rows"]["50"]["exact_expected_log_bf"])
  # Deterministic given the seed (a second run in another workdir).
  with jax.enable_x64(False):
    again = bayes.run(config, str(tmp_path / "again"))
  assert again == summary
  json.dumps(summary)  # plain JSON


@pytest.mark.parametrize("flag,sizes", [("(1, 10, 100)", (1, 10, 100)), ("1,10", (1, 10)),
                                        ("5", (5,))])
def test_sizes_from_the_command_line_are_a_tuple(flag, sizes):
  argv = ["main", f"--config={bayes_config.__file__}", f"--config.bayes.sizes={flag}"]
  flag_values = flags.FlagValues()
  config_flags.DEFINE_config_file("config", flag_values=flag_values, sys_argv=argv)
  flag_values(argv)
  assert flag_values.config.bayes.sizes == sizes


def test_default_config_keeps_the_old_defaults():
  config = bayes_config.get_config()
  assert config.experiment == "bayes" and config.seed == 0
  assert config.bayes.to_dict() == dict(sizes=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
                                        trials=200, heldout=1000, factor_truths=(0.5, 0.6),
                                        factor_prior=(1.0, 1.0))
  with pytest.raises(ValueError, match="unknown config variant"):
    bayes_config.get_config("small")


@pytest.mark.parametrize("key,value,match", [
    ("sizes", (0, 5), r"--config\.bayes\.sizes must be a non-empty tuple of positive integers"),
    ("sizes", (), r"--config\.bayes\.sizes"),
    ("sizes", (1.5, 3), r"--config\.bayes\.sizes"),
    ("sizes", (True,), r"--config\.bayes\.sizes"),
    ("trials", 0, r"config\.bayes\.trials must be a positive integer"),
    ("heldout", -3, r"config\.bayes\.heldout must be a positive integer"),
    ("seed", None, r"--config\.seed must be an integer"),
    ("factor_truths", (0.5, 1.0), r"--config\.bayes\.factor_truths must be a tuple of coin "
                                  r"biases in \(0, 1\)"),
    ("factor_truths", ("fair",), r"--config\.bayes\.factor_truths"),
    ("factor_prior", (1.0,), r"--config\.bayes\.factor_prior must be a pair \(a, b\)"),
    ("factor_prior", (1.0, 0.0), r"--config\.bayes\.factor_prior must be a positive finite"),
], ids=["sizes_zero", "sizes_empty", "sizes_float", "sizes_bool", "trials", "heldout", "seed",
        "truth_one", "truth_text", "prior_one_value", "prior_zero"])
def test_bad_config_is_a_user_error_naming_the_key(tmp_path, key, value, match):
  config = bayes_config.get_config("tiny")
  (config if key == "seed" else config.bayes)[key] = value
  with pytest.raises(UserError, match=match):
    bayes.run(config, str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()     # validated before anything is written
