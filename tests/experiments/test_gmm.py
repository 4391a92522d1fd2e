"""experiments/gmm.py: EM invariants, references, outputs, variants and bad configs."""

import os

import jax
from absl import flags
import numpy as np
import pytest
from ml_collections import config_flags
from scipy import stats
from sklearn.mixture import GaussianMixture

from experiments import gmm
from experiments.configs import gmm as gmm_config
from vae_jax import keys
from vae_jax.classical import gmm as gmm_lib
from vae_jax.training import workdir as wd
from vae_jax.errors import UserError

PNG = b"\x89PNG\r\n\x1a\n"


def _em_rows(workdir):
  return [r for r in wd.read_metrics(workdir) if r["split"] == "em"]


def _assert_png(path):
  with open(path, "rb") as f:
    assert f.read(8) == PNG, path


def _assert_em_invariants(workdir, summary):
  """EM never decreases log p(x); log p(x|θ_t) <= ELBO(q_t, θ_{t+1}) <= log p(x|θ_{t+1})."""
  rows = _em_rows(workdir)
  ll = np.array([r["log_likelihood"] for r in rows])
  elbo = np.array([r["elbo"] for r in rows if "elbo" in r])
  assert len(ll) == summary["num_iters"] + 1 and len(elbo) == summary["num_iters"]
  assert [r["step"] for r in rows] == list(range(len(ll)))
  assert np.all(np.diff(ll) >= -1e-10)
  assert np.all(ll[:-1] <= elbo + 1e-10) and np.all(elbo <= ll[1:] + 1e-10)
  assert ll[-1] == pytest.approx(summary["train_log_likelihood"], abs=1e-12)
  assert summary["max_elbo_gap_at_posterior"] < 1e-10       # the E-step closes the gap


@pytest.mark.slow
def test_tiny_toy2d_recovers_the_mixture_and_keeps_em_invariants(tmp_path):
  config = gmm_config.get_config("tiny")
  summary = gmm.run(config, str(tmp_path))
  for name in ("config.json", "metrics.jsonl", "summary.json", "em_bounds.png",
               "gmm_components.png"):
    assert os.path.getsize(tmp_path / name) > 0, name
  for name in ("em_bounds.png", "gmm_components.png", "gmm_selection.png"):
    _assert_png(tmp_path / name)
  assert not (tmp_path / "gmm_means.png").exists()
  assert os.listdir(tmp_path / "tensorboard")
  assert wd.read_json(str(tmp_path / "config.json")) == wd.to_jsonable(config.to_dict())
  assert wd.read_json(str(tmp_path / "summary.json")) == wd.to_jsonable(summary)
  _assert_em_invariants(str(tmp_path), summary)
  assert summary["num_points"] == 600 and summary["dim"] == 2
  # Five well-separated generating components: recovered, and the fitted
  # likelihood is at least the generating mixture's (it is the MLE).
  assert summary["adjusted_rand_index"] > 0.9
  assert summary["train_log_likelihood"] >= summary["true_params_log_likelihood"] - 1e-9

  # Independent references on the same points (the simulate stream of the seed):
  # SciPy's density of the generating mixture, and scikit-learn's EM optimum.
  with jax.enable_x64(True):
    x, _, true = gmm.make_toy2d(keys.stream(keys.root(config.seed), "simulate"), 600)
  x = np.asarray(x)
  dens = sum(float(w) * stats.multivariate_normal(np.asarray(m), np.asarray(c)).pdf(x)
             for w, m, c in zip(true.weights, true.means, true.covariances))
  assert summary["true_params_log_likelihood"] == pytest.approx(
      np.mean(np.log(dens)), abs=1e-10)
  sk = GaussianMixture(5, covariance_type="full", tol=1e-10, max_iter=500, n_init=4,
                       reg_covar=1e-6, random_state=0).fit(x)
  assert summary["train_log_likelihood"] == pytest.approx(sk.score(x), abs=1e-3)
  assert sorted(summary["weights"]) == pytest.approx(sorted(sk.weights_), abs=1e-3)

  # Choosing K among 4, 5, 6: BIC and the held-out log-likelihood of our EM and of
  # scikit-learn's pick the generating K, and the two BICs agree on the same parameters.
  sel = summary["selection"]
  assert sel["num_components"] == [4, 5, 6] and sel["true_num_components"] == 5
  assert (sel["bic_choice"] == sel["eval_choice"] == sel["sklearn_bic_choice"]
          == sel["sklearn_eval_choice"] == 5)
  assert sel["bic_max_rel_diff_our_fits"] < 1e-6 and sel["bic_max_rel_diff_sklearn_fits"] < 1e-6
  assert sel["num_parameters"] == [k * 3 + k * 2 + k - 1 for k in (4, 5, 6)]   # full, D = 2
  assert sel["bic"][1] == pytest.approx(                      # K = 5: -2 N mean log p + P log N
      -2 * 600 * sel["train_log_likelihood"][1] + 29 * np.log(600), rel=1e-12)
  with jax.enable_x64(True):                  # the held-out points: the same mixture, another key
    x_eval, _ = gmm_lib.sample(jax.random.fold_in(
        keys.stream(keys.root(config.seed), "simulate"), 1), true, 600)
  assert summary["eval_log_likelihood"] < summary["train_log_likelihood"]
  assert sel["sklearn_eval_log_likelihood"][1] == pytest.approx(
      GaussianMixture(5, covariance_type="full", n_init=2, random_state=0).fit(x).score(
          np.asarray(x_eval)), abs=1e-3)


@pytest.mark.slow
def test_rerun_in_the_same_workdir_is_deterministic_and_restarts_the_metrics(tmp_path):
  config = gmm_config.get_config("tiny")
  first = gmm.run(config, str(tmp_path))
  rows = _em_rows(str(tmp_path))
  second = gmm.run(config, str(tmp_path))
  assert _em_rows(str(tmp_path)) == rows                    # replaced, not appended
  first.pop("fit_seconds"), second.pop("fit_seconds")
  assert first == second
  config.seed = 1                                            # another root key: other data
  assert gmm.run(config, str(tmp_path / "seed1"))["train_log_likelihood"] != pytest.approx(
      first["train_log_likelihood"])


@pytest.mark.parametrize("dataset,pca_dim,covariance_type", [
    ("mnist_5k", 10, "full"),   # the mnist_pca recipe, fewer iterations and restarts
    ("digits", 5, "diag"),
])
@pytest.mark.slow
def test_mnist_pca_variant_fits_projected_images(tmp_path, dataset, pca_dim,
                                                 covariance_type):
  config = gmm_config.get_config("mnist_pca")
  assert config.gmm.data == "dataset" and config.gmm.num_components == 10
  config.data.dataset = dataset
  config.gmm.update(pca_dim=pca_dim, covariance_type=covariance_type, em_iters=25,
                    num_restarts=1, selection_components=(2, 3))
  summary = gmm.run(config, str(tmp_path))
  for name in ("em_bounds.png", "gmm_components.png", "gmm_means.png"):
    _assert_png(tmp_path / name)
  _assert_em_invariants(str(tmp_path), summary)
  assert summary["dim"] == pca_dim and summary["covariance_type"] == covariance_type
  assert summary["data"].startswith(dataset)
  assert np.isfinite(summary["eval_log_likelihood"])
  assert summary["eval_log_likelihood"] < summary["train_log_likelihood"] + 1.0
  assert "true_params_log_likelihood" not in summary
  sel = summary["selection"]                    # scored on the eval split's projection
  assert sel["num_components"] == [2, 3] and "true_num_components" not in sel
  assert max(sel["bic_max_rel_diff_our_fits"], sel["bic_max_rel_diff_sklearn_fits"]) < 1e-6
  _assert_png(tmp_path / "gmm_selection.png")


def test_config_file_takes_variants_and_command_line_overrides():
  """As experiments/main.py reads it: --config=FILE:VARIANTS plus --config.KEY=VALUE."""
  argv = ["main", f"--config={gmm_config.__file__}:mnist_pca,tiny",
          "--config.data.data_dir=/data", "--config.gmm.num_components=3",
          "--config.gmm.em_tol=0"]
  flag_values = flags.FlagValues()
  config_flags.DEFINE_config_file("config", flag_values=flag_values, sys_argv=argv)
  flag_values(argv)
  config = flag_values.config
  assert config.data.data_dir == "/data"              # the placeholder takes a string
  assert config.gmm.data == "dataset" and config.gmm.pca_dim == 10     # mnist_pca,
  assert config.gmm.num_restarts == 2 and config.gmm.em_iters == 100  # then tiny,
  assert config.gmm.num_components == 3 and config.gmm.em_tol == 0.0  # then the flags


def test_default_config_keeps_the_old_defaults():
  config = gmm_config.get_config()
  assert config.experiment == "gmm" and config.seed == 0
  assert config.data.to_dict() == dict(dataset="mnist_5k", data_dir=None)
  assert config.gmm.to_dict() == dict(
      data="toy2d", num_components=5, covariance_type="full", em_iters=200, em_tol=1e-8,
      num_restarts=4, init_method="random", reg_covar=1e-6, pca_dim=10,
      toy_num_points=1500, toy_num_eval_points=1500,
      selection_components=(1, 2, 3, 4, 5, 6, 7, 8, 9, 10))
  config.data.data_dir = "/some/dir"          # a placeholder: None, and settable to a str
  with pytest.raises(ValueError, match="unknown config variant 'nope'"):
    gmm_config.get_config("nope")


BAD_CONFIGS = {  # id: (settings on the tiny config, the message expected)
    "num_components=0": (dict(gmm__num_components=0),
                         r"config\.gmm\.num_components must be a positive integer"),
    "em_iters=0": (dict(gmm__em_iters=0), r"config\.gmm\.em_iters"),
    "num_restarts<0": (dict(gmm__num_restarts=-1), r"config\.gmm\.num_restarts"),
    "em_tol<0": (dict(gmm__em_tol=-1.0), r"--config\.gmm\.em_tol must be a finite number >= 0"),
    "reg_covar=0": (dict(gmm__reg_covar=0.0), r"config\.gmm\.reg_covar"),
    "data": (dict(gmm__data="nope"), r"--config\.gmm\.data must be one of toy2d, dataset"),
    "covariance_type": (dict(gmm__covariance_type="tied"), r"--config\.gmm\.covariance_type"),
    "init_method": (dict(gmm__init_method="kmeans"), r"--config\.gmm\.init_method"),
    "toy_num_points=0": (dict(gmm__toy_num_points=0), r"config\.gmm\.toy_num_points"),
    "seed": (dict(seed=None), r"--config\.seed must be an integer"),
    "dataset": (dict(gmm__data="dataset", data__dataset="nope"), r"--config\.data\.dataset"),
    "pca_dim=0": (dict(gmm__data="dataset", gmm__pca_dim=0), r"config\.gmm\.pca_dim"),
    "pca_dim>D": (dict(gmm__data="dataset", data__dataset="digits", gmm__pca_dim=1000),
                  r"--config\.gmm\.pca_dim must be in \[1, 64\]"),
    "K>N": (dict(gmm__num_components=601),
            r"--config\.gmm\.num_components=601 exceeds the number of points 600"),
    "selection K=0": (dict(gmm__selection_components=(0, 2)),
                      r"--config\.gmm\.selection_components must be a tuple of distinct positive"),
    "selection twice": (dict(gmm__selection_components=(2, 2)),
                        r"--config\.gmm\.selection_components"),
    "selection float": (dict(gmm__selection_components=(2.0, 3)),
                        r"--config\.gmm\.selection_components"),
    "selection K>N": (dict(gmm__selection_components=(3, 601)),
                      r"--config\.gmm\.selection_components has K = 601 above the number of "
                      r"points 600"),
    "toy_num_eval_points=0": (dict(gmm__toy_num_eval_points=0),
                              r"config\.gmm\.toy_num_eval_points"),
}


@pytest.mark.parametrize("settings,match", BAD_CONFIGS.values(), ids=BAD_CONFIGS.keys())
def test_bad_config_is_a_user_error_naming_the_key(tmp_path, settings, match):
  config = gmm_config.get_config("tiny")
  for dotted, value in settings.items():
    section, _, key = dotted.rpartition("__")
    (config[section] if section else config)[key] = value
  with pytest.raises(UserError, match=match):
    gmm.run(config, str(tmp_path / "w"))
  assert not (tmp_path / "w" / "config.json").exists()   # nothing written for a bad config


def test_workdir_that_is_a_file_is_a_user_error(tmp_path):
  (tmp_path / "file").write_text("")
  with pytest.raises(UserError, match="not a directory"):
    gmm.run(gmm_config.get_config("tiny"), str(tmp_path / "file" / "w"))


@pytest.mark.slow
def test_no_selection_components_skips_the_choice(tmp_path):
  config = gmm_config.get_config("tiny")
  config.gmm.update(selection_components=(), em_iters=5)
  summary = gmm.run(config, str(tmp_path))
  assert "selection" not in summary and not (tmp_path / "gmm_selection.png").exists()
