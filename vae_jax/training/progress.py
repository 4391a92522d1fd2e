"""Progress: metric means between logging steps, throughput and ETA.

``StepMeter`` sums the trainer's per-dispatch metric sums on device and
brings them to the host only at logging boundaries; it times the steps after
the first dispatch (which compiles), leaving out the host work at the
boundaries (logging, evaluation, checkpoints). ``CountMeter`` does the same
timing for a loop over a known number of items (the examples of an
evaluation) and says when a progress line is due. Neither prints: the
experiment that holds one writes the line, with ``info``.

``info`` is where the library's progress and result lines go: absl's INFO log
under the runner (``app.run``: formatted and filtered as every other line),
and stderr everywhere else (a notebook, a script, docs/library.md's
example), where absl would drop them. Turn them off with
``set_verbose(False)`` or the environment variable ``VAE_JAX_QUIET=1``.
"""

from __future__ import annotations

import math
import os
import sys
import time
from typing import Any, Callable

from absl import flags
from absl import logging
import jax
import jax.numpy as jnp

from vae_jax.errors import UserError


_verbose = os.environ.get("VAE_JAX_QUIET", "").strip().lower() in ("", "0", "false", "no")


def set_verbose(on: bool) -> None:
  """Shows (True, the default) or hides the progress lines outside the runner."""
  global _verbose
  _verbose = bool(on)


def info(message: str, *args) -> None:
  """One progress or result line, ``message % args``: absl's INFO log under the
  runner, stderr elsewhere (unless ``set_verbose(False)``)."""
  if flags.FLAGS.is_parsed():
    logging.info(message, *args)
  elif _verbose:
    print(message % args if args else message, file=sys.stderr, flush=True)


# absl's lines name the caller of ``info`` (trainer.py:308), not this module.
logging.ABSLLogger.register_frame_to_skip(__file__, "info")


class NonFiniteLossError(UserError):
  """Raised when the loss or the gradient became NaN/Inf."""


class StepMeter:
  """Per-step metrics summed on device, flushed at logging boundaries, and throughput.

  Throughput excludes the first dispatch of the loop (compilation) and the host
  time spent between ``flush`` and ``end_host`` (logging, evaluation,
  checkpointing).
  """

  def __init__(self, start_step: int = 0):
    self.start_step = start_step
    self._acc, self._n = None, 0
    self._t_first, self._t_host, self._overhead = None, None, 0.0
    self._first_steps = 1

  def add(self, state: Any, sums: dict, steps: int = 1) -> None:
    """Adds the metric sums of ``steps`` steps (device arrays; no sync except
    after the first dispatch, which compiles and is not timed)."""
    self._acc = sums if self._acc is None else jax.tree_util.tree_map(
        jnp.add, self._acc, sums)
    self._n += steps
    if self._t_first is None:
      jax.block_until_ready(state)
      self._t_first = time.perf_counter()
      self._first_steps = steps

  def flush(self, done: int, nonfinite_message: Callable[[int, int], str]) -> dict:
    """Host sync: the mean of each metric since the last flush, plus ``steps_per_s``.

    Raises NonFiniteLossError(nonfinite_message(first_step, done)) if any step
    since the last flush had ``finite == 0``.
    """
    host = jax.device_get(self._acc)
    self._t_host = time.perf_counter()
    n = self._n
    self._acc, self._n = None, 0
    if host.pop("finite") < n:
      raise NonFiniteLossError(nonfinite_message(done - n, done))
    means = {k: float(v) / n for k, v in host.items()}
    means["steps_per_s"] = self.steps_per_s(done, self._t_host)
    return means

  def end_host(self) -> None:
    """Marks the end of the host work that followed ``flush``."""
    self._overhead += time.perf_counter() - self._t_host

  def steps_per_s(self, done: int, now: float | None = None) -> float:
    timed = done - self.start_step - self._first_steps
    if self._t_first is None or timed <= 0:
      return float("nan")
    elapsed = (time.perf_counter() if now is None else now) - self._t_first - self._overhead
    return timed / elapsed if elapsed > 0 else float("nan")


def format_eta(seconds: float) -> str:
  seconds = max(0, int(seconds))
  return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class CountMeter:
  """Items done out of ``total``: their rate, the ETA, and when a line is due.

  ``update(done)`` is called as work finishes, with the running count. The
  rate leaves out the work up to the first update (it compiles):
  (done - done_at_first) / (now - t_first). Once there is a rate, a line is
  due at the first update past each ``fraction`` of ``total`` and at least
  every ``every_s`` seconds; and always at ``total``.
  """

  def __init__(self, total: int, *, fraction: float = 0.1, every_s: float = 60.0,
               clock: Callable[[], float] = time.perf_counter):
    self.total, self.every_s, self._clock = int(total), every_s, clock
    self._mark = max(1, math.ceil(fraction * self.total))    # items between lines
    self.done, self._next = 0, self._mark
    self._first, self._t_first, self._t_line, self._t_done = None, None, None, None

  def update(self, done: int) -> bool:
    """Records ``done`` items; True when a progress line is due."""
    now = self._clock()
    self.done, self._t_done = int(done), now
    if self._first is None:
      self._first, self._t_first, self._t_line = self.done, now, now
    if self.done >= self.total:
      due = True
    elif self.done <= self._first:     # no rate yet
      due = False
    else:
      due = self.done >= self._next or now - self._t_line >= self.every_s
    if due:
      self._t_line = now
      while self._next <= self.done:
        self._next += self._mark
    return due

  def per_s(self) -> float:
    """Items per second between the first update and the last; NaN before any timed work."""
    if self._first is None or self.done <= self._first:
      return float("nan")
    elapsed = self._t_done - self._t_first
    return (self.done - self._first) / elapsed if elapsed > 0 else float("nan")

  def eta(self) -> str:
    """The time left as H:MM:SS (``format_eta``), or "?" while there is no rate."""
    rate = self.per_s()
    return format_eta((self.total - self.done) / rate) if rate > 0 else "?"
