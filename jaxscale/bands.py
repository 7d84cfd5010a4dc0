"""Batch extrapolation with uncertainty bands from bootstrap parameter sets.

A law is evaluated at ``Q`` query points for every one of ``B`` parameter sets
at once (``vmap`` over both) and each point's loss quantiles are taken over the
sets. ``Q x B`` can be large (1e5 points x 4,000 sets is 3.2 GB in float64),
so the queries are streamed in fixed-size chunks with ``jax.lax.map``: memory
is ``chunk x B`` whatever ``Q``, and one compiled program serves every chunk.
Each point's quantiles are order statistics of its ``B`` losses (as integer bit
patterns); on CPU NumPy's partition finds them, called from the program.

Example:
  >>> from jaxscale import bands, fitting
  >>> fit = fitting.FitResult.from_json("fit.json")  # doctest: +SKIP
  >>> band = bands.predict(fit, None, {"N": [7e10], "D": [1.4e12]})  # doctest: +SKIP
  >>> band.estimate, band.low, band.high  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxscale import devices, fitting, limits
from jaxscale import laws as laws_lib

DEFAULT_QUANTILES = (0.025, 0.5, 0.975)
DEFAULT_CHUNK = 1024


@dataclasses.dataclass(frozen=True)
class Band:
  """Predicted losses at ``Q`` query points.

  Attributes:
    inputs: the query points, ``{variable: (Q,) array}``.
    estimate: loss under the point-estimate parameters, shape ``(Q,)``.
    quantile_levels: the levels of :attr:`quantiles`, e.g. ``(0.025, 0.5, 0.975)``.
    quantiles: loss quantiles over parameter sets, shape ``(K, Q)``; None
      without parameter samples.
    num_samples: parameter sets the quantiles are over (0 without samples).
  """

  inputs: dict[str, np.ndarray]
  estimate: np.ndarray | None
  quantile_levels: tuple[float, ...]
  quantiles: np.ndarray | None
  num_samples: int

  def quantile(self, level: float) -> np.ndarray | None:
    if self.quantiles is None:
      return None
    if level not in self.quantile_levels:
      raise ValueError(f"quantile {level} was not computed; computed {self.quantile_levels}")
    return self.quantiles[self.quantile_levels.index(level)]

  @property
  def low(self) -> np.ndarray | None:
    """The lowest computed quantile (the 2.5% by default)."""
    return None if self.quantiles is None else self.quantiles[0]

  @property
  def high(self) -> np.ndarray | None:
    """The highest computed quantile (the 97.5% by default)."""
    return None if self.quantiles is None else self.quantiles[-1]


# Past this many distinct order statistics a full sort is cheaper than a partition at each.
MAX_PARTITION_POSITIONS = 16


def _host_order_statistics(bits_QxB: np.ndarray, positions_QxJ: np.ndarray) -> np.ndarray:
  """``np.sort(bits_QxB, -1)`` read at ``positions_QxJ``, without sorting (NumPy, exact).

  ``np.partition`` at every distinct position puts each of those order statistics where a
  sort would, in linear time: for 4,000 sets and three quantiles (six positions) it takes
  half as long as a sort. The rows are split over the cores, since NumPy releases the GIL.
  """
  positions_J = np.unique(positions_QxJ)

  def rows(block):
    bits, positions = bits_QxB[block], positions_QxJ[block]
    arranged = (np.partition(bits, positions_J, axis=-1) if positions_J.size <= MAX_PARTITION_POSITIONS
                else np.sort(bits, axis=-1))
    return np.take_along_axis(arranged, positions, axis=-1)

  cores = len(limits.usable_cores())
  blocks = [block for block in np.array_split(np.arange(bits_QxB.shape[0]), cores) if block.size]
  return np.concatenate(devices.side_by_side(rows, blocks, cores)) if blocks else rows(slice(None))


def _order_statistics(bits_QxB, positions_QxJ, host):
  """Each row's order statistics at ``positions_QxJ`` (integers: exact, so either way gives the same).

  On a CPU they come from NumPy through a host callback (:func:`_host_order_statistics`):
  NumPy's vectorised sort alone was several times faster than XLA's (1,024 rows of 4,000
  int64: 15 ms against 98 ms on a 2-core Xeon), and a partition beats the sort. On
  accelerators XLA's sort stays.
  """
  if not host:
    return jnp.take_along_axis(jnp.sort(bits_QxB, axis=-1), positions_QxJ, axis=-1)
  # The callback runs on a thread outside the caller's x64 scope, where JAX narrows
  # 64-bit arrays both ways; 32-bit words cross intact.
  words_QxBxW = jax.lax.bitcast_convert_type(bits_QxB, jnp.int32)
  if words_QxBxW.ndim == bits_QxB.ndim:
    words_QxBxW = words_QxBxW[..., None]
  int_dtype = np.dtype(f"int{32 * words_QxBxW.shape[-1]}")
  out_shape = (*positions_QxJ.shape, words_QxBxW.shape[-1])

  def host(words, positions):
    bits = np.ascontiguousarray(words).view(int_dtype)[..., 0]
    statistics = _host_order_statistics(bits, np.asarray(positions, np.intp))
    return np.ascontiguousarray(statistics).view(np.int32).reshape(out_shape)

  words_QxJxW = jax.pure_callback(host, jax.ShapeDtypeStruct(out_shape, jnp.int32), words_QxBxW, positions_QxJ)
  if bits_QxB.dtype == jnp.int32:
    return words_QxJxW[..., 0]
  return jax.lax.bitcast_convert_type(words_QxJxW, bits_QxB.dtype)


def _nanquantile_positive(values_QxB, levels_K, host_sort=False):
  """``jnp.nanquantile(values, levels, axis=1).T`` (linear interpolation) for positive values.

  Positive floats order like their bit patterns read as integers, and integer sorts and
  partitions are several times faster than float ones (which must order NaNs and signed
  zeros), so the order statistics are taken on the bits.
  """
  int_dtype = jnp.int64 if values_QxB.dtype == jnp.float64 else jnp.int32
  missing = jnp.isnan(values_QxB)
  bits = jnp.where(missing, jnp.iinfo(int_dtype).max, jax.lax.bitcast_convert_type(values_QxB, int_dtype))  # NaNs last
  count_Q = jnp.sum(~missing, axis=-1)
  position_QxK = (count_Q[:, None] - 1).astype(values_QxB.dtype) * levels_K[None, :]
  below = jnp.clip(jnp.floor(position_QxK).astype(jnp.int32), 0, None)
  above = jnp.minimum(below + 1, jnp.maximum(count_Q[:, None] - 1, 0))
  statistics = jax.lax.bitcast_convert_type(
      _order_statistics(bits, jnp.concatenate([below, above], axis=-1), host_sort), values_QxB.dtype)
  low, high = jnp.split(statistics, 2, axis=-1)
  quantiles_QxK = low + (position_QxK - below) * (high - low)
  return jnp.where(count_Q[:, None] > 0, quantiles_QxK, jnp.nan).T


def _loss_QxB(law, theta_BxP, log_inputs_chunk):
  """The law's loss at ``Q`` points for ``B`` sets, shape ``(Q, B)`` (sets along the contiguous axis).

  Points on the outer ``vmap`` and sets on the inner one: each point's ``B``
  losses come out as one vectorised row, two to three times faster than the
  transposed nesting. The law sees length-1 inputs, as it would a one-run set.
  """
  loss_fn = law.direct_loss or (lambda params, x: jnp.exp(law.log_loss(params, x)))

  def at_point(point):
    one = {v: x[None] for v, x in point.items()}
    return jax.vmap(lambda theta: loss_fn(law.unflatten(theta), one)[0])(theta_BxP)

  return jax.vmap(at_point)(log_inputs_chunk)


@functools.partial(jax.jit, static_argnames=("law",))
def _point_loss(law, theta_P, log_inputs):
  # One program per query shape: op by op, the law's dozen primitives each compile their
  # own (~0.05 s apiece on a CPU, and a study asks for three shapes).
  return jnp.exp(law.log_loss(law.unflatten(theta_P), log_inputs))


@functools.partial(jax.jit, static_argnames=("law", "chunk", "host_sort"))
def _quantiles(law, theta_BxP, log_inputs, levels_K, *, chunk, host_sort):
  """Loss quantiles over the ``B`` sets for ``Q`` points (``Q`` a multiple of ``chunk``), shape ``(K, Q)``."""
  num_queries = next(iter(log_inputs.values())).shape[0]
  chunks = {v: x.reshape(num_queries // chunk, chunk) for v, x in log_inputs.items()}

  def one_chunk(log_inputs_chunk):
    # NaN marks a failed replicate's parameters: ignored, not propagated.
    return _nanquantile_positive(_loss_QxB(law, theta_BxP, log_inputs_chunk), levels_K, host_sort)

  return jax.lax.map(one_chunk, chunks).transpose(1, 0, 2).reshape(levels_K.shape[0], num_queries)


def _validated_inputs(law: laws_lib.Law, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
  missing = [v for v in law.variables if v not in inputs or inputs[v] is None]
  if missing:
    raise ValueError(f"law {law.name!r} needs {', '.join(law.variables)}; missing {', '.join(missing)}")
  arrays = {v: np.atleast_1d(np.asarray(inputs[v], np.float64)) for v in law.variables}
  try:
    shape = np.broadcast_shapes(*(a.shape for a in arrays.values()))
  except ValueError as e:
    sizes = ", ".join(f"{v}: {a.size}" for v, a in arrays.items())
    raise ValueError(f"inputs must have matching lengths (or length 1), got {sizes}") from e
  arrays = {v: np.broadcast_to(a, shape).ravel() for v, a in arrays.items()}
  for v, a in arrays.items():
    bad = ~(np.isfinite(a) & (a > 0))
    if bad.any():
      raise ValueError(f"{v} must be positive and finite (scaling laws live on log axes); got {v}={a[np.flatnonzero(bad)[0]]:g}")
  return arrays


def _theta(law: laws_lib.Law, natural: Mapping[str, Any]) -> jax.Array:
  missing = [k for k in law.natural_names if k not in natural]
  if missing:
    raise ValueError(f"law {law.name!r} needs parameters {', '.join(law.natural_names)}; missing {', '.join(missing)}")
  fit_space = law.from_natural({k: jnp.asarray(natural[k], jnp.float64) for k in law.natural_names})
  return jnp.stack([jnp.atleast_1d(jnp.asarray(fit_space[n])) for n in law.param_names], axis=-1)


def predict(
    law_or_fit: str | laws_lib.Law | fitting.FitResult,
    params_or_samples: Mapping[str, Any] | None = None,
    inputs: Mapping[str, Any] | None = None,
    *,
    estimate: Mapping[str, float] | None = None,
    quantiles: Sequence[float] = DEFAULT_QUANTILES,
    chunk: int = DEFAULT_CHUNK,
) -> Band:
  """Evaluates a law at many points for all parameter sets; quantile bands per point.

  Args:
    law_or_fit: a law (name or object), or a :class:`~jaxscale.fitting.FitResult`,
      whose params give the estimate and whose bootstrap section (if any) the samples.
    params_or_samples: natural parameters: scalars (one set: no band) or arrays
      of shape ``(B,)`` (bootstrap samples). Left out with a fit: its own
      samples (converged replicates), as in ``predict(fit, inputs=points)``.
    inputs: raw query points, e.g. ``{"N": (Q,), "D": (Q,)}``; length-1 arrays broadcast.
    estimate: natural parameters of the point estimate; defaults to the fit's
      params, or to ``params_or_samples`` when those are scalars.
    quantiles: levels in ``[0, 1]`` to compute over the parameter sets.
    chunk: query points per streamed chunk; memory is ``chunk x B``.

  Returns:
    A :class:`Band`.

  Example:
    >>> band = predict("chinchilla", samples, {"N": [7e10], "D": [1.4e12]},
    ...                estimate=fit.params)  # doctest: +SKIP
  """
  if inputs is None:
    raise ValueError("pass the query points as inputs={'N': ..., 'D': ...} (e.g. bands.predict(fit, inputs=points))")
  if isinstance(law_or_fit, fitting.FitResult):
    law = law_or_fit.law_object
    estimate = law_or_fit.params if estimate is None else estimate
    if params_or_samples is None:
      params_or_samples = None if law_or_fit.bootstrap is None else law_or_fit.bootstrap.natural()
  else:
    law = laws_lib.get(law_or_fit)
  levels = tuple(float(q) for q in quantiles)
  if not levels or not all(0.0 <= q <= 1.0 for q in levels):
    raise ValueError(f"quantiles must be levels in [0, 1], got {list(quantiles)}")
  if chunk <= 0:
    raise ValueError(f"chunk must be >= 1, got {chunk}")
  samples = None
  if params_or_samples is not None:
    if all(np.ndim(v) == 0 for v in params_or_samples.values()):
      estimate = params_or_samples if estimate is None else estimate
    else:
      samples = params_or_samples
  if estimate is None and samples is None:
    raise ValueError("nothing to predict from: pass parameters, samples, or a fit")
  arrays = _validated_inputs(law, inputs)
  num_queries = next(iter(arrays.values())).size

  with fitting.precision("float64"):
    log_inputs = {v: jnp.log(jnp.asarray(a)) for v, a in arrays.items()}
    point = None
    if estimate is not None:
      point = np.asarray(_point_loss(law, _theta(law, estimate)[0], log_inputs))
    bands, num_samples = None, 0
    if samples is not None:
      theta_BxP = _theta(law, samples)
      num_samples = int(theta_BxP.shape[0])
      chunk = int(min(chunk, num_queries))
      padded = -(-num_queries // chunk) * chunk
      # Pad by repeating the last point so every chunk has one shape; the pad is cut off below.
      padded_inputs = {v: jnp.concatenate([x, jnp.repeat(x[-1:], padded - num_queries)]) for v, x in log_inputs.items()}
      host_sort = jax.default_backend() == "cpu"
      bands = np.asarray(_quantiles(law, theta_BxP, padded_inputs, jnp.asarray(levels), chunk=chunk,
                                    host_sort=host_sort))[:, :num_queries]
  return Band(inputs=arrays, estimate=point, quantile_levels=levels, quantiles=bands, num_samples=num_samples)
