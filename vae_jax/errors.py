"""User-facing errors and input validation at public boundaries.

``UserError`` is raised for anything a user can get wrong (flags, data,
workdirs). The runner catches it and prints its one-line message, then exits
non-zero; library callers get an ordinary ``ValueError`` subclass.
"""

from __future__ import annotations

import math

import numpy as np


class UserError(ValueError):
  """Bad input from the user; the message says what was wrong and the fix."""


def check_data_matrix(x, name: str = "x", *, ndim: int = 2):
  """Validates an [N, D] array (NumPy or JAX) of finite floats.

  Returns the array unchanged (no copy, no host sync for JAX arrays beyond
  the finiteness check). Raises UserError on wrong rank, empty input,
  non-float dtype or NaN/Inf.
  """
  shape = getattr(x, "shape", None)
  if shape is None:
    x = np.asarray(x)
    shape = x.shape
  if len(shape) != ndim:
    raise UserError(
        f"{name} must have rank {ndim} (shape [N, D]), got shape {tuple(shape)}; "
        f"reshape it, e.g. x.reshape(len(x), -1).")
  if shape[0] == 0:
    raise UserError(f"{name} is empty (shape {tuple(shape)}); pass at least one row.")
  if not np.issubdtype(np.dtype(x.dtype), np.floating):
    raise UserError(f"{name} must be a float array, got dtype {x.dtype}; "
                    f"convert it with x.astype(np.float32).")
  if not bool(np.all(np.isfinite(np.asarray(x)))):
    raise UserError(f"{name} contains NaN or Inf values; remove or impute them first.")
  return x


def check_choice(value, choices, name: str):
  """Raises UserError naming ``--name`` unless ``value`` is one of ``choices``; returns it."""
  if value not in choices:
    raise UserError(f"--{name} must be one of {', '.join(choices)}, got {value!r}.")
  return value


def check_positive(value, name: str, *, integer: bool = False):
  """Raises UserError unless ``value`` is a finite number > 0."""
  try:
    v = float(value)
  except (TypeError, ValueError):
    raise UserError(f"--{name} must be a positive number, got {value!r}.") from None
  if not math.isfinite(v) or v <= 0 or (integer and v != int(v)):
    kind = "a positive integer" if integer else "a positive finite number"
    raise UserError(f"--{name} must be {kind}, got {value!r}.")
  return value
