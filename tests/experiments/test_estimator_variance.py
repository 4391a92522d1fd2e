"""experiments/estimator_variance.py: the lecture's variance claims, and its outputs."""

import json
import os

import numpy as np
import pytest

from experiments import estimator_variance
from tests.conftest import get_config
from tests.test_workdir import read_tensorboard_scalars
from vae_jax import plots
from vae_jax.training import workdir as wd
from vae_jax.errors import UserError


@pytest.mark.slow
def test_estimator_variance(tmp_path):
  names = ("reparam", "score", "score_loo", "vimco")
  config = get_config("estimator_variance")
  config.variance.update(estimators=names, num_samples=(2, 8), steps=(0, 30), draws=32,
                         posteriors=())
  estimator_variance.run(config, str(tmp_path))
  on_disk = json.load(open(tmp_path / "summary.json"))
  assert set(on_disk["variance"]) == set(names)
  assert all(v > 0 and np.isfinite(v) for v in on_disk["variance"].values())
  assert on_disk["num_samples"] == 2 and on_disk["step"] == 30
  # The lecture's claim: the score function is far noisier than reparametrization,
  # and a leave-one-out baseline recovers a large part of the difference.
  v = on_disk["variance"]
  assert v["score"] > 10 * v["reparam"]
  assert v["score_loo"] < v["score"]
  assert set(on_disk["variance_ratio"]) == {"2", "8"}
  assert set(on_disk["variance_by_step"]) == {"0", "30"}
  # More samples, less variance (1/S for the plain estimators).
  by_s = on_disk["variance_by_num_samples"]
  assert by_s["8"]["reparam"]["total_variance"] < by_s["2"]["reparam"]["total_variance"]
  assert os.path.getsize(tmp_path / "estimator_variance.png") > 0
  rows = [r for r in wd.read_metrics(str(tmp_path)) if r["split"] == "variance"]
  assert len(rows) == len(names) * (1 + 2)
  # TensorBoard: one tag per (estimator, S); S = 2 at both stops, S = 8 at the last.
  tags = read_tensorboard_scalars(str(tmp_path))
  assert {t for t in tags if t.startswith("variance/total_variance")} == {
      f"variance/total_variance/{n}/num_samples_{s}" for n in names for s in (2, 8)}
  assert set(tags["variance/total_variance/score/num_samples_2"]) == {0, 30}
  assert tags["variance/total_variance/score/num_samples_8"] == pytest.approx(
      {30: by_s["8"]["score"]["total_variance"]}, rel=1e-6)
  # The VAE it measured was trained, checkpointed and resumed by the trainer.
  assert sorted(int(s) for s in os.listdir(tmp_path / "vae" / "checkpoints")) == [0, 30]
  # Run again in the same workdir: the step-0 numbers come back from metrics.jsonl
  # (the VAE is past step 0), the rest are measured again: the same summary.
  again = estimator_variance.run(config, str(tmp_path))
  assert again["variance_by_step"] == on_disk["variance_by_step"]
  assert again["variance_by_num_samples"] == on_disk["variance_by_num_samples"]


@pytest.mark.slow
def test_the_density_estimators_on_a_coupling_posterior_beside_the_gaussian(tmp_path):
  """variance.posteriors: a coupling flow's VAE, measured like the Gaussian's, with
  every estimator that needs log q at a given z; a re-run resumes both."""
  names = ("reparam", "score", "score_baseline", "score_loo", "stl", "vimco", "dreg")
  config = get_config("estimator_variance", "tiny")
  config.variance.update(estimators=names, num_samples=(2,), steps=(0, 20), draws=8,
                         posteriors=("coupling",), flow_steps=2)
  summary = estimator_variance.run(config, str(tmp_path))
  assert list(summary["families"]) == ["gaussian", "coupling"]
  gaussian, flow = summary["families"]["gaussian"], summary["families"]["coupling"]
  assert gaussian["variance"] == summary["variance"] and gaussian["flow_steps"] is None
  assert flow["flow_steps"] == 2 and set(flow["variance"]) == set(names)
  assert all(v > 0 and np.isfinite(v) for v in flow["variance"].values())
  # The lecture's claim holds on the flow: the score function is the noisiest.
  assert flow["variance"]["score"] == max(flow["variance"].values())
  assert flow["variance"]["score"] > 10 * flow["variance"]["reparam"]
  assert set(flow["variance_by_step"]) == {"0", "20"}
  assert sorted(int(s) for s in os.listdir(tmp_path / "vae_coupling" / "checkpoints")) == [0, 20]
  tags = read_tensorboard_scalars(str(tmp_path))
  assert set(tags["variance/total_variance/coupling/score/num_samples_2"]) == {0, 20}
  assert set(tags["variance/total_variance/score/num_samples_2"]) == {0, 20}   # the Gaussian's
  assert os.path.getsize(tmp_path / "estimator_variance_families.png") > 0
  again = estimator_variance.run(config, str(tmp_path))
  assert again["families"] == json.load(open(tmp_path / "summary.json"))["families"]


def test_variance_figure_legend_is_below_the_panels(tmp_path, monkeypatch):
  """Inside a panel the legend covered the score estimator's line (at the top)."""
  figures = []
  monkeypatch.setattr(plots, "save", lambda fig, path, **kw: figures.append(fig) or path)
  names = ("reparam", "score", "score_baseline", "score_loo", "stl", "iwae", "vimco", "dreg")
  stats = lambda scale: {n: {"total_variance": scale * (i + 1)} for i, n in enumerate(names)}
  estimator_variance.save_variance_plot(str(tmp_path / "v.png"), {2: stats(1), 8: stats(0.25)},
                                        {0: stats(2), 100: stats(1)}, 2)
  (fig,) = figures
  assert all(ax.get_legend() is None for ax in fig.axes)
  (legend,) = fig.legends
  assert [t.get_text() for t in legend.get_texts()] == list(names)
  # the legend's box lies below both panels
  renderer = fig.canvas.get_renderer()
  top = legend.get_window_extent(renderer).y1
  assert all(top <= ax.get_tightbbox(renderer).y0 + 1 for ax in fig.axes)


@pytest.mark.parametrize("settings,match", [
    (dict(estimators=("reparam", "nope")), "unknown"),
    (dict(estimators=("score_loo",), num_samples=(1, 4)), "S >= 2"),
    (dict(steps=(-1, 3)), "config.variance.steps"),
    (dict(draws=1), "config.variance.draws must be an integer >= 2"),
    (dict(posteriors=("realnvp",)), "config.variance.posteriors: 'realnvp' not a posterior"),
    (dict(posteriors=("gaussian",)), "config.variance.posteriors must name distinct families"),
    (dict(posteriors=("coupling", "coupling")), "config.variance.posteriors must name"),
    (dict(posteriors=("coupling",), flow_steps=0), "config.variance.flow_steps"),
    (dict(posteriors=("iaf",), estimators=("reparam", "score")),
     r"config.variance.posteriors: iaf: --config.objective.estimator=score needs log q"),
])
def test_bad_settings(tmp_path, settings, match):
  config = get_config("estimator_variance")
  config.variance.update(settings)
  with pytest.raises(UserError, match=match):
    estimator_variance.run(config, str(tmp_path))


def test_an_estimator_the_model_cannot_use_is_refused_before_training(tmp_path):
  """Each measured estimator is validated against the VAE it measures, once, by the
  VAE's own rules: the score function needs log q at any z, which iaf lacks."""
  config = get_config("estimator_variance", "tiny")
  config.model.update(posterior="iaf", flow_steps=2)
  config.variance.update(estimators=("reparam", "score"), num_samples=(2,))
  with pytest.raises(UserError, match=r"--config.variance.estimators: "
                                      r"--config.objective.estimator=score needs log q"):
    estimator_variance.run(config, str(tmp_path))
  assert not os.listdir(tmp_path)
