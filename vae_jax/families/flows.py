r"""Flow posteriors: q(z|x) = a Gaussian pushed through T invertible maps.

  z_0 ~ N(mu(x), diag sigma(x)^2),   z_t = f_t(z_{t-1}),
  log q(z_T | x) = log N(z_0) - sum_t log |det df_t / dz_{t-1}|.

``FlowPosterior`` is any such q: the maps are one posterior family's
(a module of ``vae_jax.families.posteriors``), given as a function
``forward(t, step, context, z) -> (f_t(z), log |det|)`` of step t's parameters
and, where the family inverts its maps in closed form, a second one
``inverse(t, step, context, y) -> (f_t^{-1}(y), log |det df_t^{-1}/dy|)``.
Each map is a ``distrax.Bijector`` (``Map``) and the steps one ``distrax.Chain``;
a draw comes with its density in one pass (``sample_and_log_prob``). With an
inverse, q also has its density at any z (``has_density``):

  log q(z | x) = log N(f^{-1}(z)) + log |det df^{-1}/dz|,

so every estimator takes it; without one, the estimators that need log q at a
given z are refused for it.

distrax is imported when a flow is built (``bijector``), not with this module.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
from flax import struct

from vae_jax.families.normal import DiagNormal, NoClosedFormKL

Array = jax.Array


def _map_class():
  """``Map``, a distrax bijector of one step (distrax is imported here: seconds)."""
  import distrax  # pylint: disable=g-import-not-at-top

  class Map(distrax.Bijector):
    """Step ``t`` of a flow as a distrax bijector (its inverse where the family gives one)."""

    def __init__(self, forward: Callable, inverse: Callable | None, t: int, step: Any,
                 context: Array):
      super().__init__(event_ndims_in=1)
      self.forward, self.inverse = forward, inverse
      self.t, self.step, self.context = t, step, context

    def forward_and_log_det(self, x: Array) -> tuple[Array, Array]:
      return self.forward(self.t, self.step, self.context, x)

    def inverse_and_log_det(self, y: Array) -> tuple[Array, Array]:
      if self.inverse is None:
        raise NotImplementedError("this flow offers no inverse")
      return self.inverse(self.t, self.step, self.context, y)

  return Map


_MAP = []


def Map(*args):  # pylint: disable=invalid-name
  """One step as a ``distrax.Bijector``: ``Map(forward, inverse, t, step, context)``."""
  if not _MAP:
    _MAP.append(_map_class())
  return _MAP[0](*args)


@struct.dataclass
class FlowPosterior(NoClosedFormKL):
  """q(z|x): ``base`` pushed through ``len(steps)`` maps ``forward``.

  Attributes:
    base: the encoder's Gaussian, batch [B], event [L].
    steps: per step, its parameters (per example, e.g. planar's [B, L] u and w,
      or shared by every example, e.g. IAF's MADE weights: ``shared``).
    context: [B, C] a per-example input of every step (empty: [B, 0]).
    forward_fn: (t, step, context, z [..., B, L]) -> (f_t(z), log |det| [..., B]).
    name: the family's name.
    shared: whether ``steps`` are shared by every example.
    inverse_fn: (t, step, context, y [..., B, L]) -> (f_t^{-1}(y), log |det df_t^{-1}/dy|
      [..., B]), or None where the maps have no closed-form inverse.
  """
  base: DiagNormal
  steps: tuple[Any, ...]
  context: Array
  forward_fn: Callable = struct.field(pytree_node=False)
  name: str = struct.field(pytree_node=False)
  shared: bool = struct.field(pytree_node=False, default=False)
  inverse_fn: Callable | None = struct.field(pytree_node=False, default=None)

  @property
  def has_density(self) -> bool:
    """log q at any z (``log_prob``): where the family inverts its maps."""
    return self.inverse_fn is not None

  @property
  def shared_fields(self) -> tuple[str, ...]:
    """Arrays shared by every example (IAF's MADE weights), not per-example ones."""
    return ("steps",) if self.shared else ()

  @property
  def latent_dim(self) -> int:
    return self.base.latent_dim

  def bijector(self):
    """The T maps as one ``distrax.Chain`` (which applies its last element first)."""
    import distrax  # pylint: disable=g-import-not-at-top
    maps = [Map(self.forward_fn, self.inverse_fn, t, s, self.context)
            for t, s in enumerate(self.steps)]
    return distrax.Chain(maps[::-1])

  def forward(self, z0: Array) -> tuple[Array, Array]:
    """z_T and sum_t log |det J_t| for base draws z0: [..., B, L] -> ([..., B, L], [..., B])."""
    return self.bijector().forward_and_log_det(z0)

  def inverse(self, z: Array) -> tuple[Array, Array]:
    """z_0 = f^{-1}(z) and log |det df^{-1}/dz| (= -sum_t log |det J_t| at z_0):
    [..., B, L] -> ([..., B, L], [..., B]); only where ``has_density``."""
    return self.bijector().inverse_and_log_det(z)

  def sample_and_log_prob(self, seed: Array, sample_shape: tuple[int, ...] = ()
                          ) -> tuple[Array, Array]:
    """(z_T, log q(z_T|x)) = (f(z_0), log N(z_0) - sum log |det|): [*S, B, L], [*S, B]."""
    z0, log_q0 = self.base.sample_and_log_prob(seed, sample_shape)
    z, log_det = self.forward(z0)
    return z, log_q0 - log_det

  def sample(self, seed: Array, sample_shape: tuple[int, ...] = ()) -> Array:
    return self.sample_and_log_prob(seed, sample_shape)[0]

  def log_prob(self, z: Array) -> Array:
    """log q(z|x) = log N(f^{-1}(z)) + log |det df^{-1}/dz|: [*S, B, L] -> [*S, B]."""
    if not self.has_density:
      raise NotImplementedError(
          f"a {self.name} flow posterior has no log q(z|x) at an arbitrary z here (only "
          f"with its own draws: sample_and_log_prob)")
    z0, log_det_inverse = self.inverse(z)
    return self.base.log_prob(z0) + log_det_inverse

  def point(self) -> Array:
    """The flow applied to the base mean: the z the figures decode, [B, L]."""
    return self.forward(self.base.loc)[0]
