"""Figures: what a reader must be able to see in them."""

import numpy as np

from vae_jax import plots


def test_save_curves_styles_a_curve_that_lies_on_another(tmp_path, monkeypatch):
  """The discrete VAE's Monte-Carlo -ELBO tracks the exact one: it is drawn on
  top, dashed with open markers, so the two stay distinguishable."""
  figures = []
  monkeypatch.setattr(plots, "save", lambda fig, path, **kw: figures.append(fig) or path)
  steps, values = [30, 60], [34.0, 28.9]
  plots.save_curves(str(tmp_path / "c.png"), {"exact": (steps, values), "MC": (steps, values)},
                    xlabel="step", ylabel="nats",
                    styles={"MC": dict(ls="--", marker="o", mfc="none", zorder=3)})
  exact, mc = figures[0].axes[0].get_lines()
  assert (exact.get_label(), mc.get_label()) == ("exact", "MC")
  assert exact.get_linestyle() == "-" and exact.get_marker() == "."
  assert mc.get_linestyle() == "--" and mc.get_marker() == "o" and mc.get_markerfacecolor() == "none"
  assert mc.get_zorder() > exact.get_zorder()
  np.testing.assert_array_equal(mc.get_ydata(), exact.get_ydata())
