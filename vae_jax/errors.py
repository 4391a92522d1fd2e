"""User-facing errors and input validation at public boundaries.

``UserError`` is raised for anything a user can get wrong (flags, data,
workdirs). The runner catches it and prints its one-line message, then exits
non-zero; library callers get an ordinary ``ValueError`` subclass.
"""

from __future__ import annotations

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


def check_positive(value, name: str, *, integer: bool = False, minimum=None,
                   meaning: str | None = None):
  """Returns ``value`` if it is a finite number > 0, else raises one UserError that names it.

  The one check of a count, size, rate or scale, wherever one is read (a
  config key when the config is validated, a library function's argument).

  Args:
    value: the number (a float may also be an array: every element is checked).
    name: what the user set. A config key, ``config.train.batch_size``, is
      written as its flag ``--config.train.batch_size``; any other name (a
      function's argument, ``num_samples``) as it is.
    integer: ``value`` must be an integer (Python's or NumPy's; not a bool,
      not 3.0).
    minimum: the least value allowed (inclusive) in place of "> 0": 0 for a
      count that may be zero, 2 for a number of draws.
    meaning: a few words on what the number is, shown after the rule.

  Raises:
    UserError: e.g. ``--config.train.batch_size must be a positive integer, got 0.``
  """
  shown = f"--{name}" if name.startswith("config.") else name
  rule = ((f"an integer >= {minimum}" if integer else f"a finite number >= {minimum}")
          if minimum is not None else
          ("a positive integer" if integer else "a positive finite number"))
  if meaning:
    rule += f" ({meaning})"
  if integer:
    ok = (isinstance(value, (int, np.integer)) and not isinstance(value, bool)
          and value >= (1 if minimum is None else minimum))
  else:
    try:
      v = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
      v = np.array(np.nan)
    ok = (v.size > 0 and bool(np.all(np.isfinite(v)))
          and bool(np.all(v > 0 if minimum is None else v >= minimum)))
  if not ok:
    got = value.tolist() if hasattr(value, "tolist") else value    # arrays as lists
    raise UserError(f"{shown} must be {rule}, got {got!r}.")
  return value
