"""Compute-optimal allocation: the model size N and tokens D a budget should buy.

Two problems, both solved by gradient in log space for any law of ``N`` and
``D`` and any differentiable cost:

* **budget**: minimise ``L(N, D)`` subject to ``cost(N, D) = C``;
* **target loss**: minimise ``cost(N, D)`` subject to ``L(N, D) = L_target``.

Each is a one-dimensional search along the constraint curve. With
``x = log N`` and ``y = log D``, the constraint ``h(x, y) = 0`` (increasing in
both) defines ``y(x)``, found by a safeguarded Newton iteration; its
derivative comes from the implicit function theorem (a ``custom_jvp``), so
``jax.grad`` of the objective along the curve is exact. The optimum is the root
of that gradient, found by the same safeguarded Newton iteration (bracketed, so
a bad step falls back to bisection). Every loop has a fixed state shape, so one
compiled program is ``vmap``-ped over budgets and over bootstrap parameter
sets, and the frontier ``N*(C), D*(C)`` comes with bands.

Costs are small pure functions of ``(log_N, log_D)`` returning log FLOPs,
bundled with their numeric arguments in a :class:`Cost` (a pytree, so new
numbers do not recompile) and composed with :func:`total`.

Example:
  >>> from jaxscale import allocation, laws
  >>> params = laws.preset("chinchilla", "besiroglu2024")
  >>> best = allocation.allocate("chinchilla", params, 5.76e23)
  >>> f"{float(best.N[0]):.3g} parameters, {float(best.D[0]):.3g} tokens"
  '7.22e+10 parameters, 1.33e+12 tokens'

References:
  Hoffmann et al. 2022, "Training Compute-Optimal Large Language Models" (Eq. 4).
  Besiroglu et al. 2024, "Chinchilla Scaling: A replication attempt".
  Sardana et al. 2024, "Beyond Chinchilla-Optimal: Accounting for Inference".
  Muennighoff et al. 2023, "Scaling Data-Constrained Language Models".
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from jaxscale import fitting
from jaxscale import laws as laws_lib

# Search box in log space: 1 to ~2.5e30 parameters and tokens, beyond any budget of interest.
LOG_N_BOUNDS = (0.0, 70.0)
LOG_D_BOUNDS = (0.0, 70.0)
# Muennighoff et al. 2023's fitted R_D* and R_N*: repeated tokens (excess parameters) lose value
# with these e-foldings in epochs (in multiples of the compute-optimal size for the unique data).
_MUENNIGHOFF = laws_lib.get("data_constrained").presets["muennighoff2023"]
R_STAR = _MUENNIGHOFF["R_star"]
R_N_STAR = _MUENNIGHOFF["R_N_star"]
# Safeguarded Newton: at most this many steps (bisection alone would reach 70 / 2^80 ~ 1e-23).
MAX_ROOT_STEPS = 80
# Stop once a Newton step moves log N or log D by less than this (about 1e-13 relative in N, D).
STEP_TOLERANCE = 1e-13
# A solution counts as feasible when the constraint holds to this, in log units.
FEASIBILITY_TOLERANCE = 1e-8
# Stands in for "no cap on unique tokens" in the data-constrained law (log of ~1e304).
NO_CAP_LOG_U = 700.0


# --- Costs ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Cost:
  """A differentiable compute cost: ``log_flops(log_N, log_D, args) -> log FLOPs``.

  ``log_flops`` is static (part of the compiled program); ``args`` is a pytree
  of numbers, so a new inference volume reuses the compiled solver. A cost must
  increase with both ``N`` and ``D``.

  Attributes:
    log_flops: pure function of scalars ``log_N``, ``log_D`` and ``args``.
    args: its numeric arguments (floats or arrays).
  """

  log_flops: Callable[[Any, Any, Any], Any]
  args: Any = ()

  def __call__(self, log_N, log_D):
    return self.log_flops(log_N, log_D, self.args)


jax.tree_util.register_dataclass(Cost, data_fields=["args"], meta_fields=["log_flops"])


def _per_param_token(log_N, log_D, log_rate):
  return log_rate + log_N + log_D


def _per_param(log_N, log_D, log_rate_times_tokens):
  del log_D  # inference cost does not depend on how long the model was trained
  return log_rate_times_tokens + log_N


def training(flops_per_param_token: float = 6.0) -> Cost:
  """Training FLOPs, ``6 N D`` (forward and backward pass, Kaplan et al. 2020)."""
  if not flops_per_param_token > 0:
    raise ValueError(f"flops_per_param_token must be > 0, got {flops_per_param_token}")
  return Cost(_per_param_token, math.log(flops_per_param_token))


def inference(tokens: float, flops_per_param_token: float = 2.0) -> Cost:
  """Inference FLOPs over the model's life, ``2 N T`` for ``T`` tokens served."""
  if not (tokens > 0 and flops_per_param_token > 0):
    raise ValueError(f"inference tokens must be > 0, got {tokens} (leave the cost out for none)")
  return Cost(_per_param, math.log(flops_per_param_token) + math.log(tokens))


@functools.lru_cache(maxsize=None)  # one function per combination, so jit caches stay warm
def _sum_of(log_flops: tuple[Callable, ...]) -> Callable:
  def log_total(log_N, log_D, args):
    return logsumexp(jnp.stack([fn(log_N, log_D, a) for fn, a in zip(log_flops, args)]))

  return log_total


def total(*costs: Cost) -> Cost:
  """The sum of costs, e.g. ``total(training(), inference(1e13))``."""
  if not costs:
    raise ValueError("total() needs at least one cost, e.g. total(training(), inference(1e13))")
  if len(costs) == 1:
    return costs[0]
  return Cost(_sum_of(tuple(c.log_flops for c in costs)), tuple(c.args for c in costs))


def training_and_inference(inference_tokens: float | None) -> Cost:
  """``6 N D + 2 N T``: a model that will serve ``T`` tokens (``None``: training only)."""
  if inference_tokens is None or inference_tokens == 0:
    return training()
  return total(training(), inference(inference_tokens))


# --- Results -------------------------------------------------------------------------------


class Allocation(NamedTuple):
  """Optimal allocations, batched over budgets (``K``) and parameter sets (``B``).

  Shapes are ``(K,)`` for one parameter set and ``(B, K)`` for ``B`` of them.
  Infeasible problems (a budget below one token on a one-parameter model, a
  target loss below what the law can reach) hold NaN.
  """

  N: Any  # parameters, shape=(..., K)
  D: Any  # training tokens, shape=(..., K)
  loss: Any  # predicted loss at (N, D), shape=(..., K)
  compute: Any  # cost(N, D) in FLOPs, shape=(..., K)

  @property
  def tokens_per_param(self):
    return self.D / self.N


# --- Closed form ---------------------------------------------------------------------------


def closed_form(params: Mapping[str, Any], compute) -> Allocation:
  """Chinchilla's closed-form optimum for ``C = 6 N D`` (Hoffmann et al. 2022, Eq. 4).

  ``N* = G (C/6)^(beta/(alpha+beta))``, ``D* = G^-1 (C/6)^(alpha/(alpha+beta))``,
  ``G = (alpha A / (beta B))^(1/(alpha+beta))``.

  Args:
    params: natural Chinchilla parameters ``E, A, B, alpha, beta`` (scalars or
      arrays of shape ``(B,)``).
    compute: budget(s) in FLOPs, scalar or shape ``(K,)``.

  Returns:
    An :class:`Allocation` of NumPy arrays, shape ``(K,)`` or ``(B, K)``.

  Example:
    >>> from jaxscale import laws
    >>> best = closed_form(laws.preset("chinchilla", "besiroglu2024"), 5.76e23)
    >>> round(float(best.tokens_per_param[0]), 1)
    18.4
  """
  compute_K = _budgets(compute, "compute")
  E, A, B, alpha, beta = (np.asarray(params[k], np.float64)[..., None] for k in ("E", "A", "B", "alpha", "beta"))
  # Degenerate parameter sets (a bootstrap replicate with alpha ~ 0 or A ~ 1e150) give inf or NaN
  # in their own rows, which the bands then ignore; that is not worth a warning per call.
  with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
    G = (alpha * A / (beta * B)) ** (1.0 / (alpha + beta))
    N = G * (compute_K / 6.0) ** (beta / (alpha + beta))
    D = (compute_K / 6.0) ** (alpha / (alpha + beta)) / G
    loss = E + A / N**alpha + B / D**beta
  return Allocation(N=N, D=D, loss=loss, compute=np.broadcast_to(compute_K, N.shape))


# --- The solver ----------------------------------------------------------------------------


def _increasing_root(fn: Callable, lo, hi, *, multiplicative: bool = False):
  """``x`` in ``[lo, hi]`` with ``fn(x) = 0`` for ``fn`` increasing; the nearer end if none.

  Newton steps (slope by forward-mode autodiff) inside a shrinking bracket,
  bisection whenever Newton would leave it. The state has a fixed shape, so the
  loop ``vmap``s; batched lanes run until the slowest converges.

  ``multiplicative=True`` takes Newton steps on ``exp(fn) - 1`` in ``exp(x)``
  instead, for ``fn`` a log-ratio such as ``log cost - log C``: the step is
  exact for costs affine in ``D`` (``6ND + 2NT``), where plain Newton in
  ``log D`` crawls about one unit per step across the flat region.
  """

  def step(state):
    lo, hi, x, count, _ = state
    value, slope = jax.jvp(fn, (x,), (jnp.ones_like(x),))
    lo = jnp.where(value < 0, x, lo)
    hi = jnp.where(value < 0, hi, x)
    if multiplicative:
      newton = x + jnp.log1p(jnp.expm1(-value) / slope)
    else:
      newton = x - value / slope
    use_newton = jnp.isfinite(newton) & (newton >= lo) & (newton <= hi)
    x_next = jnp.where(use_newton, newton, 0.5 * (lo + hi))
    done = (value == 0) | (jnp.abs(x_next - x) <= STEP_TOLERANCE * (1.0 + jnp.abs(x))) | (hi - lo <= STEP_TOLERANCE)
    return lo, hi, x_next, count + 1, done

  def keep_going(state):
    return (state[3] < MAX_ROOT_STEPS) & ~state[4]

  # No root inside: the answer is an end, and the loop has nothing to do.
  below, above = fn(hi) <= 0, fn(lo) >= 0
  start = jnp.where(below, hi, jnp.where(above, lo, 0.5 * (lo + hi)))
  init = (lo, hi, start, jnp.zeros((), jnp.int32), below | above)
  _, _, x, _, _ = jax.lax.while_loop(keep_going, step, init)
  return x


def _constraint_curve(constraint: Callable) -> Callable:
  """``y(x, args)`` solving ``constraint(x, y, args) = 0``, differentiable by the implicit function theorem."""

  @jax.custom_jvp
  def curve(x, args):
    return _increasing_root(lambda y: constraint(x, y, args), LOG_D_BOUNDS[0], LOG_D_BOUNDS[1], multiplicative=True)

  @curve.defjvp
  def curve_jvp(primals, tangents):
    x, args = primals
    y = curve(x, args)
    _, dh = jax.jvp(lambda x, args: constraint(x, y, args), (x, args), tangents)
    dh_dy = jax.grad(constraint, argnums=1)(x, y, args)
    return y, -dh / dh_dy

  return curve


def _minimize_on_curve(objective: Callable, constraint: Callable, args):
  """Minimises ``objective(x, y, args)`` subject to ``constraint(x, y, args) = 0``.

  ``constraint`` must increase in ``x`` and ``y``; the objective must have one
  minimum along the curve. Returns ``(x, y, constraint residual)``.
  """
  curve = _constraint_curve(constraint)
  x_min, x_max = LOG_N_BOUNDS
  y_min, y_max = LOG_D_BOUNDS
  # The curve runs from the smallest x (y at its ceiling) to the largest (y at its floor).
  x_lo = _increasing_root(lambda x: constraint(x, y_max, args), x_min, x_max, multiplicative=True)
  x_hi = _increasing_root(lambda x: constraint(x, y_min, args), x_min, x_max, multiplicative=True)
  slope = jax.grad(lambda x: objective(x, curve(x, args), args))
  x = _increasing_root(slope, x_lo, x_hi)
  y = curve(x, args)
  return x, y, constraint(x, y, args)


def _law_log_loss(law: laws_lib.Law) -> Callable:
  def log_loss(x, y, params, log_U):
    return law.log_loss(params, {"N": x, "D": y, "U": log_U})

  return log_loss


@functools.partial(jax.jit, static_argnames=("law", "mode"))
def _solve(law: laws_lib.Law, params_B: Mapping[str, Any], levels_K, cost: Cost, log_U, *, mode: str):
  """The batched solver: one compiled program for all budgets and parameter sets.

  Returns ``(log_N, log_D, log_L, log_C, residual)``, each of shape ``(B, K)``.
  """
  log_loss = _law_log_loss(law)

  def one(params, level):
    args = (params, level, cost, log_U)
    if mode == "budget":
      objective = lambda x, y, a: log_loss(x, y, a[0], a[3])
      constraint = lambda x, y, a: a[2](x, y) - a[1]
    else:  # target loss: -log L increases with N and D
      objective = lambda x, y, a: a[2](x, y)
      constraint = lambda x, y, a: a[1] - log_loss(x, y, a[0], a[3])
    x, y, residual = _minimize_on_curve(objective, constraint, args)
    return x, y, log_loss(x, y, params, log_U), cost(x, y), residual

  per_budget = jax.vmap(one, in_axes=(None, 0))
  return jax.vmap(per_budget, in_axes=(0, None))(params_B, levels_K)


# --- Public API ----------------------------------------------------------------------------


def _budgets(values, name: str) -> np.ndarray:
  array = np.atleast_1d(np.asarray(values, dtype=np.float64))
  if array.ndim != 1:
    raise ValueError(f"{name} must be a number or a 1-D list of numbers, got shape {array.shape}")
  bad = array[~(np.isfinite(array) & (array > 0))]
  if bad.size:
    raise ValueError(f"{name} must be positive and finite, got {bad[0]:g}")
  return array


def _check_law(law: laws_lib.Law) -> None:
  if not {"N", "D"} <= set(law.variables) or not set(law.variables) <= {"N", "D", "U"}:
    raise ValueError(
        f"allocation needs a law of N and D (e.g. chinchilla or data_constrained); law {law.name!r} "
        f"reads {', '.join(law.variables)}"
    )


def _with_unique_tokens(law: laws_lib.Law, params: Mapping[str, Any], unique_tokens, decay: Mapping[str, float]):
  """The law and natural params that read a cap ``U`` on unique tokens (``log U`` too).

  ``decay`` holds the data-constrained law's ``R_star`` and ``R_N_star`` that extend ``chinchilla``.
  """
  if unique_tokens is None:
    if "U" in law.variables:
      return law, params, NO_CAP_LOG_U
    return law, params, 0.0  # unused by the law
  if not (np.isfinite(unique_tokens) and unique_tokens > 0):
    raise ValueError(f"unique_tokens must be positive and finite, got {unique_tokens}")
  if law.name == "chinchilla":
    # Chinchilla has no notion of repeats; Muennighoff et al.'s decay of repeated tokens fills it in.
    like = np.asarray(params["E"], np.float64)
    law = laws_lib.get("data_constrained")
    params = {**params, **{name: np.full_like(like, value) for name, value in decay.items()}}
  elif "U" not in law.variables:
    raise ValueError(
        f"a cap on unique tokens needs law 'data_constrained' (or 'chinchilla', which gets R* = {decay['R_star']}, "
        f"R_N* = {decay['R_N_star']}); "
        f"law {law.name!r} cannot tell repeated tokens from fresh ones"
    )
  return law, params, math.log(unique_tokens)


def _prepare_params(law: laws_lib.Law, params: Mapping[str, Any]):
  missing = [k for k in law.natural_names if k not in params]
  if missing:
    raise ValueError(f"law {law.name!r} needs natural parameters {', '.join(law.natural_names)}; missing {', '.join(missing)}")
  arrays = {k: np.asarray(params[k], np.float64) for k in law.natural_names}
  batched = any(a.ndim > 0 for a in arrays.values())
  arrays = dict(zip(arrays, np.broadcast_arrays(*(np.atleast_1d(a) for a in arrays.values()))))
  if any(a.ndim != 1 for a in arrays.values()):
    raise ValueError("natural parameters must be scalars or arrays of shape (B,) (one per parameter set)")
  return arrays, batched


def _decay(r_star: float, r_n_star: float) -> dict[str, float]:
  return {"R_star": float(r_star), "R_N_star": float(r_n_star)}


def _run(law, params, levels_K, cost, unique_tokens, decay, mode) -> Allocation:
  law = laws_lib.get(law)
  _check_law(law)
  law, params, log_U = _with_unique_tokens(law, params, unique_tokens, decay)
  arrays, batched = _prepare_params(law, params)
  cost = training() if cost is None else cost
  if not isinstance(cost, Cost):
    raise ValueError(f"cost must be a jaxscale.allocation.Cost (e.g. allocation.training()), got {type(cost).__name__}")
  with fitting.precision("float64"):
    fit_params = law.from_natural({k: jnp.asarray(v) for k, v in arrays.items()})
    log_N, log_D, log_L, log_C, residual = _solve(
        law, fit_params, jnp.log(jnp.asarray(levels_K)), cost, jnp.asarray(log_U), mode=mode
    )
    out = [np.exp(np.asarray(v, np.float64)) for v in (log_N, log_D, log_L, log_C)]
    feasible = np.abs(np.asarray(residual)) <= FEASIBILITY_TOLERANCE
  out = [np.where(feasible, v, np.nan) for v in out]
  if not batched:
    out = [v[0] for v in out]
  return Allocation(*out)


def allocate(
    law: str | laws_lib.Law,
    params: Mapping[str, Any],
    compute,
    *,
    cost: Cost | None = None,
    unique_tokens: float | None = None,
    r_star: float = R_STAR,
    r_n_star: float = R_N_STAR,
) -> Allocation:
  """The ``(N, D)`` that minimise the law's loss at a compute budget.

  Args:
    law: a law of ``N`` and ``D`` (name or :class:`~jaxscale.laws.Law`).
    params: its natural parameters (``law.natural_names``), scalars or arrays
      of shape ``(B,)`` (e.g. bootstrap samples: one solve per set).
    compute: budget(s) in FLOPs, scalar or shape ``(K,)``.
    cost: what the budget pays for; default :func:`training` (``6 N D``).
    unique_tokens: a cap ``U`` on unique training tokens; tokens beyond it are
      repeats, worth less (Muennighoff et al.). Needs law ``data_constrained``;
      law ``chinchilla`` is extended with ``R* = r_star`` and ``R_N* = r_n_star``.
    r_star: decay constant of repeated tokens used with ``chinchilla``.
    r_n_star: decay constant of excess parameters used with ``chinchilla``.

  Returns:
    An :class:`Allocation`, shape ``(K,)`` or ``(B, K)``; NaN where infeasible.

  Example:
    >>> from jaxscale import laws
    >>> params = laws.preset("chinchilla", "besiroglu2024")
    >>> serving = allocate("chinchilla", params, 1e24, cost=training_and_inference(1e13))
    >>> bool(serving.N[0] < allocate("chinchilla", params, 1e24).N[0])
    True
  """
  return _run(law, params, _budgets(compute, "compute"), cost, unique_tokens, _decay(r_star, r_n_star), "budget")


def allocate_for_loss(
    law: str | laws_lib.Law,
    params: Mapping[str, Any],
    target_loss,
    *,
    cost: Cost | None = None,
    unique_tokens: float | None = None,
    r_star: float = R_STAR,
    r_n_star: float = R_N_STAR,
) -> Allocation:
  """The cheapest ``(N, D)`` whose predicted loss is ``target_loss``.

  Args and Returns as :func:`allocate`, with ``target_loss`` (scalar or ``(K,)``)
  in place of the budget; ``compute`` in the result is the least cost.

  Raises:
    ValueError: for one parameter set, a target at or below the law's
      irreducible loss ``E`` (unreachable at any scale). For batched parameter
      sets such targets give NaN in the affected sets instead.
  """
  targets_K = _budgets(target_loss, "target_loss")
  if "E" in params and np.ndim(params["E"]) == 0 and np.any(targets_K <= float(params["E"])):
    low = float(targets_K[targets_K <= float(params["E"])][0])
    raise ValueError(
        f"target loss {low:g} is unreachable: the law's irreducible loss is E = {float(params['E']):.4g}; "
        "choose a target above it"
    )
  return _run(law, params, targets_K, cost, unique_tokens, _decay(r_star, r_n_star), "target")


def bands(samples: Allocation, level: float = 0.95) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """Equal-tailed quantile bands over parameter sets (axis 0), ignoring NaN.

  Args:
    samples: an :class:`Allocation` of shape ``(B, K)``.
    level: coverage, e.g. 0.95 for the 2.5% and 97.5% quantiles.

  Returns:
    ``{field: (low_K, high_K)}`` for ``N``, ``D``, ``loss``, ``compute`` and
    ``tokens_per_param``.
  """
  if not 0 < level < 1:
    raise ValueError(f"level must be in (0, 1), got {level}")
  tails = [(1 - level) / 2, (1 + level) / 2]
  fields = {**samples._asdict(), "tokens_per_param": samples.tokens_per_param}
  out = {}
  for name, values in fields.items():
    values = np.asarray(values, np.float64)
    if values.ndim != 2:
      raise ValueError(f"bands need samples of shape (B, K), got {name} of shape {values.shape}")
    # All-NaN columns (every set infeasible) stay NaN without a warning.
    with np.errstate(all="ignore"):
      low, high = (np.full(values.shape[1], np.nan) for _ in range(2))
      ok = np.any(np.isfinite(values), axis=0)
      if ok.any():
        low[ok], high[ok] = np.nanquantile(values[:, ok], tails, axis=0)
    out[name] = (low, high)
  return out


def bootstrap_params(fit, law: laws_lib.Law | None = None) -> dict[str, np.ndarray] | None:
  """Natural-parameter arrays of shape ``(B_used,)`` of ``fit.bootstrap``, or None without one.

  The converged replicates with finite parameters, as :meth:`jaxscale.BootstrapResult.natural` gives them.
  """
  del law  # the bootstrap knows its law
  return None if fit.bootstrap is None else fit.bootstrap.natural()


def frontier(
    law: str | laws_lib.Law,
    params: Mapping[str, Any],
    *,
    compute: Sequence[float] | float | None = None,
    target_loss: Sequence[float] | float | None = None,
    inference_tokens: float | None = None,
    unique_tokens: float | None = None,
    samples: Mapping[str, Any] | None = None,
    level: float = 0.95,
    r_star: float = R_STAR,
    r_n_star: float = R_N_STAR,
) -> list[dict[str, Any]]:
  """One row per budget (or target loss): the optimum, with bands from ``samples``.

  Args:
    law, params: the law and its natural point-estimate parameters.
    compute: budgets in FLOPs; or
    target_loss: losses to reach at least cost (exactly one of the two).
    inference_tokens: tokens the model will serve; the cost becomes ``6ND + 2NT``.
    unique_tokens: cap on unique training tokens (see :func:`allocate`).
    samples: natural parameter arrays of shape ``(B,)`` (e.g. from
      :func:`bootstrap_params`) for bands.
    level: band coverage; keys are suffixed ``_ci95`` for 0.95.

  Returns:
    Rows with ``compute, N, D, tokens_per_param, loss`` (and ``target_loss``),
    plus ``N_ci95, D_ci95, tokens_per_param_ci95`` and ``loss_ci95`` (for
    targets ``compute_ci95`` instead) as ``[low, high]`` when ``samples`` is
    given.
  """
  if (compute is None) == (target_loss is None):
    raise ValueError("give exactly one of compute (a budget in FLOPs) or target_loss")
  cost = training_and_inference(inference_tokens)
  solve = functools.partial(
      allocate_for_loss if compute is None else allocate, cost=cost, unique_tokens=unique_tokens, r_star=r_star,
      r_n_star=r_n_star,
  )
  levels = compute if compute is not None else target_loss
  point = solve(law, params, levels)
  fields = ["compute", "N", "D", "tokens_per_param", "loss"]
  columns = {**point._asdict(), "tokens_per_param": point.tokens_per_param}
  rows = [{name: float(columns[name][k]) for name in fields} for k in range(len(point.N))]
  for row, value in zip(rows, _budgets(levels, "compute" if target_loss is None else "target_loss")):
    # Label each row with the number asked for (the solution meets it to ~1e-14 relative).
    row["compute" if target_loss is None else "target_loss"] = float(value)
  if samples is not None:
    suffix = f"_ci{round(level * 100):d}"
    low_high = bands(solve(law, samples, levels), level)
    # For a target the loss is fixed and the compute is what varies.
    shown = ["N", "D", "tokens_per_param"] + (["loss"] if target_loss is None else ["compute"])
    for k, row in enumerate(rows):
      for name in shown:
        row[name + suffix] = [float(low_high[name][0][k]), float(low_high[name][1][k])]
  return rows
