"""MADE's masks (Germain et al., 2015): which input each unit of a masked MLP may see.

Used by the autoregressive model (``vae_jax.models.made``) and by the IAF
posterior's steps (``vae_jax.families.posteriors.iaf``). Deterministic: input i
has degree i; hidden unit k of every layer has degree ``k mod (D - 1) + 1``
(cycling 1..D-1); a hidden unit sees units of degree <= its own, and output i
sees hidden units of degree < i.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def made_degrees(num_dims: int, hidden_dims: Sequence[int]) -> list[np.ndarray]:
  """Degrees of the input units (1..D) and of each hidden layer (cycling 1..D-1)."""
  degrees = [np.arange(1, num_dims + 1)]
  for h in hidden_dims:
    degrees.append(np.arange(h) % max(num_dims - 1, 1) + 1)
  return degrees


def made_masks(num_dims: int, hidden_dims: Sequence[int]) -> list[np.ndarray]:
  """Binary [fan_in, fan_out] masks of every layer, input to output.

  Hidden layer: unit k sees unit j of the layer below iff deg(k) >= deg(j).
  Output layer: logit i sees unit j iff i > deg(j) (strict: no x_i in logit_i).
  """
  degrees = made_degrees(num_dims, hidden_dims)
  masks = [(d_out[None, :] >= d_in[:, None]).astype(np.float32)
           for d_in, d_out in zip(degrees[:-1], degrees[1:])]
  out_degrees = np.arange(1, num_dims + 1)
  masks.append((out_degrees[None, :] > degrees[-1][:, None]).astype(np.float32))
  return masks
