"""Figures written into the workdir (PNG).

Figures are built as ``matplotlib.figure.Figure`` objects and saved with the
Agg canvas directly: no ``pyplot``, no global backend switch, nothing left
open. This is the only library module that imports matplotlib; experiments'
own figures use ``new_figure`` and ``save`` from here.
"""

from __future__ import annotations

import math
import os
from typing import Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
import numpy as np

from vae_jax.training.distributed import is_writer


def new_figure(nrows: int = 1, ncols: int = 1, *, figsize=(6, 4), **subplot_kw):
  """(fig, axes) like ``pyplot.subplots``, without pyplot's global state."""
  fig = Figure(figsize=figsize)
  FigureCanvasAgg(fig)
  axes = fig.subplots(nrows, ncols, **subplot_kw)
  return fig, axes


def save(fig: Figure, path: str, dpi: int = 120, *, tight: bool = True) -> str:
  """Writes ``fig`` as a PNG (creating the directory); returns the path.

  ``tight``: lay it out with ``tight_layout`` first (off for figures that set
  their own margins). With several processes only process 0 writes.
  """
  if not is_writer():
    return path
  if tight:
    fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=dpi)
  return path


def tile_images(images: np.ndarray, image_shape: Sequence[int],
                ncols: int, pad: int = 1) -> np.ndarray:
  """Tiles flat images [N, H*W*C] into one [rows*(H+pad), ncols*(W+pad), C] canvas."""
  h, w, c = image_shape
  images = np.clip(np.asarray(images, np.float32), 0.0, 1.0).reshape(-1, h, w, c)
  n = len(images)
  nrows = math.ceil(n / ncols)
  canvas = np.ones((nrows * (h + pad) + pad, ncols * (w + pad) + pad, c), np.float32)
  for i, img in enumerate(images):
    r, col = divmod(i, ncols)
    canvas[pad + r * (h + pad):pad + r * (h + pad) + h,
           pad + col * (w + pad):pad + col * (w + pad) + w] = img
  return canvas


def _show(ax, canvas):
  if canvas.shape[-1] == 1:
    ax.imshow(canvas[..., 0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
  else:
    ax.imshow(canvas, interpolation="nearest")
  ax.set_xticks([])
  ax.set_yticks([])


def save_image_grid(path: str, images: np.ndarray, image_shape: Sequence[int], *,
                    ncols: int = 10, title: str = "") -> str:
  """Saves a grid of flat images in [0, 1] as a PNG and returns the path."""
  ncols = max(1, min(ncols, len(images)))
  canvas = tile_images(images, image_shape, ncols)
  # About 0.6 inch per image whatever its resolution, room for the title.
  inch_per_px = 0.6 / (image_shape[0] + 1)
  width = max(4.0, canvas.shape[1] * inch_per_px + 0.3)
  height = canvas.shape[0] * inch_per_px + (0.6 if title else 0.3)
  fig, ax = new_figure(figsize=(width, height))
  _show(ax, canvas)
  if title:
    ax.set_title(title, fontsize=9, wrap=True)
  return save(fig, path)


def save_reconstructions(path: str, inputs: np.ndarray, recons: np.ndarray,
                         image_shape: Sequence[int], *, ncols: int = 10,
                         title: str = "") -> str:
  """Saves rows of inputs above their reconstructions (alternating rows)."""
  n = (len(inputs) // ncols) * ncols or len(inputs)
  rows = []
  for start in range(0, n, ncols):
    rows.append(inputs[start:start + ncols])
    rows.append(recons[start:start + ncols])
  grid = np.concatenate(rows)
  canvas = tile_images(grid, image_shape, ncols)
  fig, ax = new_figure(figsize=(6, 6 * canvas.shape[0] / canvas.shape[1] + 0.6))
  _show(ax, canvas)
  ax.set_title(title or "odd rows: held-out inputs; even rows: reconstructions",
               fontsize=9)
  return save(fig, path)


def focus_ylim(curves: dict[str, tuple[Sequence[float], Sequence[float]]], *,
               skip: float = 0.1, pad: float = 0.06) -> tuple[float, float] | None:
  """y-limits for the part of training that matters, not its first steps.

  The range of the curves' finite values at x past the first ``skip`` of the
  x-span (and never a curve's first point, when it has more than one: a
  training loss's first logged mean is often several times its final value),
  padded by ``pad`` of that range on each side. None (autoscale) when no value
  is left or the curves cannot be ranged this way.
  """
  xs = [float(v) for x, _ in curves.values() for v in x]
  if not xs:
    return None
  cut = min(xs) + skip * (max(xs) - min(xs))
  kept = [float(v) for x, y in curves.values()
          for i, (s, v) in enumerate(zip(x, y))
          if (i > 0 or len(x) == 1) and float(s) >= cut and math.isfinite(float(v))]
  if not kept:
    return None
  low, high = min(kept), max(kept)
  margin = pad * (high - low) or pad * max(abs(high), 1.0)
  return low - margin, high + margin


def save_curves(path: str, curves: dict[str, tuple[Sequence[float], Sequence[float]]], *,
                xlabel: str, ylabel: str, title: str = "", logy: bool = False,
                styles: dict[str, dict] | None = None,
                ylim: tuple[float, float] | None = None) -> str:
  """Line plot of named (x, y) curves.

  ``styles``: {name: keyword arguments of ``Axes.plot``} for curves that need
  their own look (e.g. a dashed estimate drawn over the exact value it tracks).
  ``ylim``: the y-range (e.g. ``focus_ylim(curves)``); values above it are cut,
  and a note in the lower left says how high they went. A curve of one point
  (a final estimate) has its value written beside it.
  """
  fig, ax = new_figure(figsize=(6, 4))
  for name, (x, y) in curves.items():
    ax.plot(x, y, **{"label": name, "marker": "." if len(x) < 30 else None,
                     **(styles or {}).get(name, {})})
    if len(x) == 1:
      ax.annotate(f"{y[0]:.2f}", (x[0], y[0]), xytext=(-8, -6), textcoords="offset points",
                  ha="right", va="top", fontsize=8)
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  if logy:
    ax.set_yscale("log")
  if ylim is not None:
    ax.set_ylim(*ylim)
    above = [float(v) for _, y in curves.values() for v in y
             if math.isfinite(float(v)) and float(v) > ylim[1]]
    if above:
      ax.text(0.02, 0.03, f"{len(above)} earlier value{'s' if len(above) > 1 else ''} above "
              f"the axis, up to {max(above):.4g}", transform=ax.transAxes, ha="left",
              va="bottom", fontsize=8, color="0.35")
  if title:
    ax.set_title(title)
  ax.grid(alpha=0.3)
  ax.legend()
  return save(fig, path)


def metric_curves(records: Sequence[dict], spec: dict[str, tuple[str, str, float]],
                  min_step: int = 0) -> dict[str, tuple[list, list]]:
  """Curves for ``save_curves`` from ``metrics.jsonl`` records.

  Args:
    records: the run's metric records (``workdir.read_metrics``).
    spec: {label: (split, key, sign)}; the curve is sign * record[key] over the
      records of that split that have the key, at step >= min_step.
  """
  curves = {}
  for label, (split, key, sign) in spec.items():
    rows = [r for r in records if r["split"] == split and key in r and r["step"] >= min_step]
    if rows:
      curves[label] = ([r["step"] for r in rows], [sign * r[key] for r in rows])
  return curves
