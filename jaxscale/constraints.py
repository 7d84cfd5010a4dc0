"""Pinned and bounded parameters: a smooth map from a free vector to a law's parameters.

A :class:`ParameterMap` turns an unconstrained vector ``u_F`` (the ``F`` free
parameters) into the law's fit-space vector ``theta_P``: pinned parameters are
constants, bounded ones pass through a sigmoid (both bounds) or a softplus (one
bound). Every real ``u`` is then a valid, in-bounds law, so both solvers (LM and
Optax) stay unconstrained and keep their fixed cost per step.

Names may be fit-space (``e``, ``alpha``) or natural (``E``): a natural name is
mapped through the law's ``from_natural`` (``E = 1.8`` pins ``e = log 1.8``).

Example:
  >>> from jaxscale import constraints, laws
  >>> pmap = constraints.ParameterMap.build(laws.get("chinchilla"), fixed={"E": 1.69},
  ...                                       bounds={"alpha": (0, 2), "beta": (0, 2)})
  >>> pmap.free_names
  ('a', 'b', 'alpha', 'beta')
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from jaxscale import laws as laws_lib

# Starts on a bound are moved this fraction of the interval inside it (the sigmoid's image is open).
INSIDE = 1e-6


def _fit_space(law: laws_lib.Law, name: str, value: float, what: str) -> tuple[str, float]:
  """``(fit-space name, fit-space value)`` of ``name = value`` (a fit-space or natural name)."""
  if name in law.param_names:
    return name, float(value)
  if name not in law.natural_names:
    raise ValueError(
        f"cannot {what} {name!r}: law {law.name!r} has no such parameter; its parameters are "
        f"{', '.join(law.natural_names)} (natural) or {', '.join(law.param_names)} (fit space)"
    )
  with jax.enable_x64(True), np.errstate(divide="ignore", invalid="ignore"):
    reference = law.starts(None).mean(axis=0) if not callable(law.start_grid) else np.zeros(law.num_params)
    base = {k: np.float64(v) for k, v in law.to_natural(law.unflatten(jnp.asarray(reference))).items()}
    base_fit = law.from_natural(base)
    # Which fit-space parameter moves with this natural one: probe with a value surely unlike the base.
    moved = law.from_natural({**base, name: np.float64(2.0 * base[name] + 1.0)})
    changed = [k for k in law.param_names if not np.isclose(float(moved[k]), float(base_fit[k]), rtol=0, atol=1e-12)]
    if len(changed) == 1:
      mapped = float(law.from_natural({**base, name: np.float64(value)})[changed[0]])
  if len(changed) != 1:
    raise ValueError(
        f"cannot {what} natural parameter {name!r} of law {law.name!r} directly (it maps to {changed or 'no'} fit-space "
        f"parameters); {what} the fit-space parameter instead ({', '.join(law.param_names)})"
    )
  return changed[0], mapped


@dataclasses.dataclass(frozen=True)  # hashed by value: a static jit argument
class ParameterMap:
  """Free vector ``u_F`` <-> law parameters ``theta_P`` with pins and bounds.

  Attributes:
    law: the law.
    free: indices (into ``law.param_names``) of the free parameters.
    pinned: ``((index, fit-space value), ...)`` of the pinned ones.
    bounds: per free parameter, ``(low, high)`` in fit space (``-inf``/``inf`` for none).
  """

  law: laws_lib.Law
  free: tuple[int, ...]
  pinned: tuple[tuple[int, float], ...] = ()
  bounds: tuple[tuple[float, float], ...] = ()

  @classmethod
  def build(cls, law: laws_lib.Law, fixed: Mapping[str, float] | None = None, bounds: Mapping[str, tuple[float, float]] | None = None) -> ParameterMap:
    """Checks ``fixed`` (``{name: value}``) and ``bounds`` (``{name: (low, high)}``) against ``law``."""
    pinned = {}
    for name, value in (fixed or {}).items():
      if not math.isfinite(float(value)):
        raise ValueError(f"pinned parameter {name!r} must be finite, got {value}")
      fit_name, fit_value = _fit_space(law, name, value, "pin")
      if not math.isfinite(fit_value):
        raise ValueError(f"pinning {name!r} to {value} gives {fit_name} = {fit_value}; pin it to a value inside its domain")
      pinned[law.param_names.index(fit_name)] = fit_value
    if len(pinned) == law.num_params:
      raise ValueError(f"every parameter of law {law.name!r} is pinned; leave at least one free")
    box = {}
    for name, pair in (bounds or {}).items():
      try:
        low, high = (float(x) for x in pair)
      except (TypeError, ValueError):
        raise ValueError(f"bounds for {name!r} must be a pair (low, high), got {pair!r}") from None
      if not low < high:
        raise ValueError(f"bounds for {name!r} must have low < high, got ({low}, {high})")
      if name in law.param_names:
        fit_name, fit_low, fit_high = name, low, high
      else:
        ends = [_fit_space(law, name, x, "bound") if math.isfinite(x) else None for x in (low, high)]
        fit_name = next((end[0] for end in ends if end), None) or _fit_space(law, name, 1.0, "bound")[0]
        fit_low = ends[0][1] if ends[0] else -math.inf
        fit_high = ends[1][1] if ends[1] else math.inf
        fit_low, fit_high = min(fit_low, fit_high), max(fit_low, fit_high)
      index = law.param_names.index(fit_name)
      if index in pinned:
        raise ValueError(f"parameter {name!r} is both pinned and bounded; give one or the other")
      box[index] = (fit_low, fit_high)
    free = tuple(i for i in range(law.num_params) if i not in pinned)
    return cls(law, free, tuple(sorted(pinned.items())), tuple(box.get(i, (-math.inf, math.inf)) for i in free))

  @property
  def trivial(self) -> bool:
    return not self.pinned and all(not (math.isfinite(lo) or math.isfinite(hi)) for lo, hi in self.bounds)

  @property
  def free_names(self) -> tuple[str, ...]:
    return tuple(self.law.param_names[i] for i in self.free)

  @property
  def num_free(self) -> int:
    return len(self.free)

  def to_theta(self, u_F):
    """Free vector -> the law's fit-space vector (pure JAX; vmap for batches)."""
    values = []
    for j, (low, high) in enumerate(self.bounds):
      values.append(_forward(u_F[..., j], low, high))
    theta = [None] * self.law.num_params
    for j, i in enumerate(self.free):
      theta[i] = values[j]
    for i, value in self.pinned:
      theta[i] = jnp.full(u_F.shape[:-1], value, u_F.dtype)
    return jnp.stack(theta, axis=-1)

  def to_free(self, theta_SxP: np.ndarray) -> np.ndarray:
    """The law's fit-space starts -> free starts (numpy), clipping onto the open bounds."""
    theta_SxP = np.asarray(theta_SxP, np.float64)
    columns = []
    for j, i in enumerate(self.free):
      low, high = self.bounds[j]
      columns.append(_inverse(theta_SxP[:, i], low, high))
    return np.stack(columns, axis=-1)

  def starts(self, starts_SxP: np.ndarray) -> np.ndarray:
    """The law's start grid restricted to the pins and bounds, as free vectors ``(S', F)``.

    Pinned columns are dropped (duplicate rows merged); starts outside the
    bounds are dropped; an empty result is an error naming the bounds.
    """
    starts_SxP = np.asarray(starts_SxP, np.float64)
    inside = np.ones(starts_SxP.shape[0], bool)
    for j, i in enumerate(self.free):
      low, high = self.bounds[j]
      inside &= (starts_SxP[:, i] >= low) & (starts_SxP[:, i] <= high)
    if not inside.any():
      described = ", ".join(
          f"{self.law.param_names[i]} in [{lo:g}, {hi:g}] (grid {np.unique(starts_SxP[:, i]).round(4).tolist()})"
          for (lo, hi), i in zip(self.bounds, self.free) if math.isfinite(lo) or math.isfinite(hi)
      )
      raise ValueError(
          f"the bounds exclude every start of law {self.law.name!r}'s grid: {described}; widen the bounds or pass "
          "starts= inside them"
      )
    free_SxF = starts_SxP[inside][:, list(self.free)]
    free_SxF = np.unique(free_SxF, axis=0) if self.pinned else free_SxF
    full = np.zeros((free_SxF.shape[0], self.law.num_params))
    full[:, list(self.free)] = free_SxF
    return self.to_free(full)


def _forward(u, low: float, high: float):
  if math.isfinite(low) and math.isfinite(high):
    return low + (high - low) * jax.nn.sigmoid(u)
  if math.isfinite(low):
    return low + jax.nn.softplus(u)
  if math.isfinite(high):
    return high - jax.nn.softplus(u)
  return u


def _inverse(theta, low: float, high: float):
  if math.isfinite(low) and math.isfinite(high):
    fraction = np.clip((theta - low) / (high - low), INSIDE, 1.0 - INSIDE)
    return np.log(fraction) - np.log1p(-fraction)
  if math.isfinite(low):
    gap = np.maximum(theta - low, INSIDE)
    return gap + np.log(-np.expm1(-gap))  # softplus^-1
  if math.isfinite(high):
    gap = np.maximum(high - theta, INSIDE)
    return gap + np.log(-np.expm1(-gap))
  return theta
