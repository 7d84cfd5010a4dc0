"""Objectives a law can be fitted under: noise models over the runs' residuals.

An :class:`Objective` is a pure function ``value(residuals_R, weights_R, extra) -> scalar``
summed (not averaged) over runs, the space its residuals live in (``"log"``:
predicted minus observed log loss; ``"raw"``: predicted minus observed loss), the
extra parameters it fits besides the law's (a noise scale) and, when it is a
(robust) least-squares objective, the settings of the Levenberg-Marquardt engine
of :mod:`jaxscale.solver` that solves it exactly. The others are minimised by an
Optax optimiser (:mod:`jaxscale.optax_solver`).

=============  =====  =========================================================  ======
name           space  per-run term (``r`` the residual, ``w`` the run weight)     solver
=============  =====  =========================================================  ======
``huber_log``  log    ``w huber_delta(r)`` (Hoffmann et al.; the default)          LM
``mse_log``    log    ``w r^2 / 2``                                               LM
``mse_raw``    raw    ``w r^2 / 2`` on the loss itself (Open-Athena, ml-scalefit)  LM
``gaussian``   log    ``w (r^2 / (2 sigma^2) + log sigma)``, sigma fitted           Optax
``student_t``  log    ``w ((nu+1)/2 log(1 + r^2/(nu sigma^2)) + log sigma)``       Optax
``asymmetric`` log    ``w r^2 / 2``, times ``penalty`` where ``r > 0``              Optax
=============  =====  =========================================================  ======

``asymmetric`` is the overestimate penalty of AI2's OLMo-core fitter: a prediction
above the observed loss costs ``penalty`` times more, so the law hugs the lower
edge of the runs (the best loss reachable at that size), not their mean. Its
noise model is a split normal whose upper tail is ``sqrt(penalty)`` times wider.

Example:
  >>> from jaxscale import objectives
  >>> objectives.get("student_t").solver
  'lbfgs'
  >>> def l1(r, w, extra):  # a user objective: least absolute deviations on log loss
  ...   return (w * abs(r)).sum()
  >>> objectives.custom(l1).name
  'custom:l1'

References:
  Hoffmann et al. 2022 (Huber on log loss). Besiroglu et al. 2024.
  Open-Athena, "scaling-law-analysis" (MSE on raw loss, variable projection).
  AI2 OLMo-core, ``scaling_law`` fitter (overestimate penalty, prediction intervals).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxscale import runs as runs_lib
from jaxscale import solver as solver_lib

DEFAULT = "huber_log"
SPACES = ("log", "raw")
# Degrees of freedom of the Student-t noise model; 4 gives heavy tails with a finite variance.
STUDENT_T_NU = 4.0
# Overestimates cost this many times more than underestimates (OLMo-core's default order).
ASYMMETRIC_PENALTY = 4.0

ValueFn = Callable[[jax.Array, jax.Array, Mapping[str, jax.Array]], jax.Array]


@dataclasses.dataclass(frozen=True, eq=False)  # hashed by identity: a static jit argument
class Objective:
  """A fitting objective over the residuals of a law.

  Attributes:
    name: registry name (``"huber_log"``, ...) or ``"custom:<fn name>"``.
    value: ``fn(residuals_R, weights_R, extra) -> scalar``: the summed objective;
      ``extra`` maps :attr:`extra_names` to scalars. Pure, differentiable.
    space: ``"log"`` (residuals of log loss) or ``"raw"`` (of the loss).
    extra_names: fit-space names of the objective's own parameters (e.g. ``log_sigma``).
    init_extra: ``fn(residuals_R, weights_R) -> {name: scalar}``: where the extra
      parameters start, from the residuals at a start of the law's parameters.
    least_squares: the LM engine's settings when ``value`` is its (robust)
      least-squares objective, so ``solver="lm"`` solves it; None otherwise.
    likelihood: ``value`` is a negative log-likelihood up to a constant (the
      profile-likelihood intervals of :mod:`jaxscale.intervals` need one).
    description: one line for ``--help`` and reports.
  """

  name: str
  value: ValueFn
  space: str = "log"
  extra_names: tuple[str, ...] = ()
  init_extra: Callable[[jax.Array, jax.Array], dict[str, jax.Array]] | None = None
  least_squares: solver_lib.SolverOptions | None = None
  likelihood: bool = False
  description: str = ""

  @property
  def solver(self) -> str:
    """The default solver: ``"lm"`` for least squares, else ``"lbfgs"``."""
    return "lm" if self.least_squares is not None else "lbfgs"


def _weighted_rms(residuals_R, weights_R):
  total = jnp.maximum(jnp.sum(weights_R), jnp.finfo(residuals_R.dtype).tiny)
  return jnp.sqrt(jnp.sum(weights_R * residuals_R**2) / total) + jnp.finfo(residuals_R.dtype).eps


def _init_log_sigma(residuals_R, weights_R):
  return {"log_sigma": jnp.log(_weighted_rms(residuals_R, weights_R))}


@functools.lru_cache(maxsize=64)  # one object per delta, so fits with equal settings share a program
def huber_log(delta: float = 1e-3) -> Objective:
  """Huber on log loss with threshold ``delta`` (log-loss units): today's default."""
  options = solver_lib.SolverOptions(loss="huber", delta=float(delta))

  def value(residuals_R, weights_R, extra):
    del extra
    return jnp.sum(weights_R * optax.losses.huber_loss(residuals_R, delta=options.delta))

  return Objective("huber_log", value, "log", least_squares=options, description=f"Huber (delta={delta:g}) on log loss")


def _mse(residuals_R, weights_R, extra):
  del extra
  return jnp.sum(weights_R * 0.5 * residuals_R**2)


MSE_OPTIONS = solver_lib.SolverOptions(loss="mse")
mse_log = Objective("mse_log", _mse, "log", least_squares=MSE_OPTIONS, description="least squares on log loss")
mse_raw = Objective("mse_raw", _mse, "raw", least_squares=MSE_OPTIONS, description="least squares on the loss itself")


def _gaussian(residuals_R, weights_R, extra):
  log_sigma = extra["log_sigma"]
  return jnp.sum(weights_R * (0.5 * residuals_R**2 * jnp.exp(-2.0 * log_sigma) + log_sigma))


gaussian = Objective(
    "gaussian", _gaussian, "log", ("log_sigma",), _init_log_sigma, likelihood=True,
    description="Gaussian likelihood on log loss with a fitted noise scale sigma",
)


def student_t_objective(nu: float = STUDENT_T_NU) -> Objective:
  """Student-t likelihood on log loss with ``nu`` degrees of freedom and a fitted scale."""
  if not nu > 0:
    raise ValueError(f"student_t needs nu > 0 degrees of freedom, got {nu}")

  def value(residuals_R, weights_R, extra):
    log_sigma = extra["log_sigma"]
    z2 = residuals_R**2 * jnp.exp(-2.0 * log_sigma)
    return jnp.sum(weights_R * (0.5 * (nu + 1.0) * jnp.log1p(z2 / nu) + log_sigma))

  return Objective(
      "student_t", value, "log", ("log_sigma",), _init_log_sigma, likelihood=True,
      description=f"Student-t likelihood (nu={nu:g}) on log loss with a fitted scale",
  )


def asymmetric_objective(penalty: float = ASYMMETRIC_PENALTY) -> Objective:
  """Squared log residuals, ``penalty`` times heavier where the law overestimates (``r > 0``)."""
  if not penalty > 0:
    raise ValueError(f"asymmetric needs penalty > 0, got {penalty}")

  def value(residuals_R, weights_R, extra):
    del extra
    scale_R = jnp.where(residuals_R > 0, penalty, 1.0)
    return jnp.sum(weights_R * scale_R * 0.5 * residuals_R**2)

  return Objective("asymmetric", value, "log", description=f"overestimates cost {penalty:g}x (OLMo-core's penalty)")


_DEFAULT_HUBER = huber_log(1e-3)
_REGISTRY = {
    "huber_log": _DEFAULT_HUBER,
    "mse_log": mse_log,
    "mse_raw": mse_raw,
    "gaussian": gaussian,
    "student_t": student_t_objective(),
    "asymmetric": asymmetric_objective(),
}
NAMES = tuple(_REGISTRY)


def names() -> list[str]:
  return list(NAMES)


def get(objective: str | Objective | Callable | None = None, *, delta: float | None = None) -> Objective:
  """An objective by name; :class:`Objective` objects pass through, a callable becomes :func:`custom`.

  Args:
    objective: a name from :data:`NAMES`, an :class:`Objective`, a user function
      ``fn(residuals_R, weights_R, extra_params) -> scalar``, or None (the default).
    delta: Huber threshold for ``huber_log`` (default 1e-3).
  """
  if objective is None:
    objective = DEFAULT
  if isinstance(objective, Objective):
    return objective
  if isinstance(objective, str):
    if objective not in _REGISTRY:
      raise ValueError(
          f"unknown objective {objective!r}; choose one of: {', '.join(NAMES)} "
          "(or pass a function fn(residuals_R, weights_R, extra_params) -> scalar)"
      )
    if objective == "huber_log":
      return huber_log(float(1e-3 if delta is None else delta))
    return _REGISTRY[objective]
  if callable(objective):
    return custom(objective)
  raise ValueError(f"objective must be a name ({', '.join(NAMES)}), an Objective or a function; got {type(objective).__name__}")


def custom(
    fn: ValueFn,
    *,
    space: str = "log",
    extra: Mapping[str, float] | None = None,
    name: str | None = None,
    likelihood: bool = False,
) -> Objective:
  """A user objective ``fn(residuals_R, weights_R, extra_params) -> scalar``, minimised by Optax.

  Args:
    fn: the summed objective; ``extra_params`` is a dict of the parameters named in ``extra``.
    space: ``"log"`` or ``"raw"`` residuals.
    extra: ``{name: starting value}`` of the objective's own parameters (fitted too).
    name: shown in reports (default ``"custom:<fn.__name__>"``).
    likelihood: whether ``fn`` is a negative log-likelihood.

  Example:
    >>> def cauchy(r, w, extra):
    ...   return (w * jnp.log1p((r / 0.01) ** 2)).sum()
    >>> objective = custom(cauchy)  # doctest: +SKIP
  """
  if not callable(fn):
    raise ValueError(f"a custom objective must be a function fn(residuals_R, weights_R, extra_params); got {type(fn).__name__}")
  if space not in SPACES:
    raise ValueError(f"space must be one of {SPACES}, got {space!r}")
  return _custom(fn, space, tuple((k, float(v)) for k, v in (extra or {}).items()), name, bool(likelihood))


@functools.lru_cache(maxsize=64)  # the same function and settings give the same object (no recompilation)
def _custom(fn, space, extra, name, likelihood) -> Objective:
  start = dict(extra)

  def init_extra(residuals_R, weights_R):
    return {k: jnp.asarray(v, residuals_R.dtype) for k, v in start.items()}

  label = name or f"custom:{getattr(fn, '__name__', 'fn')}"
  return Objective(label, fn, space, tuple(start), init_extra if start else None, likelihood=likelihood,
                   description=f"user objective {label}")


# --- Per-run noise from seed repeats ----------------------------------------------------------


def seed_weights(runs: Any, *, variables: tuple[str, ...] = ("N", "D"), space: str = "log", min_repeats: int = 2) -> runs_lib.RunSet:
  """Weights ``1 / sigma_c^2`` from the spread of runs that share a configuration.

  Runs with equal ``variables`` (e.g. the same ``N`` and ``D``, trained with
  different seeds) form a configuration ``c``; its noise variance is the
  sample variance of their (log) losses. Configurations with fewer than
  ``min_repeats`` runs take the pooled variance of the repeated ones. The
  weights multiply the runs' own and are scaled to average 1, so the
  objective's size is comparable with an unweighted fit.

  Args:
    runs: anything :func:`jaxscale.runs.load` reads.
    variables: the columns that define a configuration.
    space: ``"log"`` (variance of log loss) or ``"raw"``.
    min_repeats: runs a configuration needs for its own variance.

  Returns:
    The run set with its ``weight`` column replaced.

  Example:
    >>> weighted = seed_weights(runs)  # doctest: +SKIP
    >>> fit(law, weighted, objective="mse_log")  # doctest: +SKIP
  """
  runs = runs_lib.load(runs)
  frame = runs.frame
  missing = [v for v in variables if v not in frame.columns]
  if missing:
    raise ValueError(f"{runs.source}: seed weights group runs by {', '.join(variables)}; missing column(s) {', '.join(missing)}")
  values = np.log(runs.loss) if space == "log" else runs.loss
  keys = frame[list(variables)].round(12).astype(str).agg("|".join, axis=1).to_numpy()
  _, group_R, counts = np.unique(keys, return_inverse=True, return_counts=True)
  repeated = counts >= min_repeats
  if not repeated.any():
    raise ValueError(
        f"{runs.source}: no configuration ({', '.join(variables)}) has {min_repeats} or more runs, so there are no seed "
        "repeats to estimate run-to-run noise from; train some configurations with several seeds"
    )
  means = np.bincount(group_R, weights=values) / counts
  squares = np.bincount(group_R, weights=(values - means[group_R]) ** 2)
  variance = np.where(repeated, squares / np.maximum(counts - 1, 1), np.nan)
  pooled = squares[repeated].sum() / (counts[repeated] - 1).sum()
  floor = max(pooled * 1e-3, np.finfo(np.float64).tiny)
  variance = np.maximum(np.where(repeated, variance, pooled), floor)
  weight = runs.weight / variance[group_R]
  positive = runs.weight > 0
  weight = weight / weight[positive].mean()
  out = frame.copy()
  out["weight"] = weight
  return runs_lib.from_frame(out, source=runs.source)
