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

The optimum is itself differentiable: the optimal ``x*`` is the root of the
slope along the curve, so its derivative also comes from the implicit function
theorem, and :func:`allocate`, :func:`allocate_for_loss` and :func:`closed_form`
work under ``jax.jit``, ``jax.vmap`` and ``jax.grad`` (e.g. ``dN*/dalpha`` or
``dN*/dC``). Called with concrete numbers they check their inputs, solve in
float64 and return NumPy arrays; called with traced values (inside a JAX
transformation) they skip the checks that need values, compute in the
caller's precision and return JAX arrays, with NaN where infeasible.

Costs are small pure functions of ``(log_N, log_D)`` returning log FLOPs,
bundled with their numeric arguments in a :class:`Cost` (a pytree, so new
numbers do not recompile) and composed with :func:`total`.

Example:
  >>> from jaxscale import allocation, laws
  >>> params = laws.preset("chinchilla", "besiroglu2024")
  >>> best = allocation.allocate("chinchilla", params, 5.76e23)
  >>> f"{float(best.N[0]):.3g} parameters, {float(best.D[0]):.3g} tokens"
  '7.22e+10 parameters, 1.33e+12 tokens'
  >>> import jax
  >>> with jax.enable_x64(True):
  ...   dN_dalpha = jax.grad(lambda a: allocation.allocate("chinchilla", {**params, "alpha": a}, 5.76e23).N[0])(0.3478)
  >>> f"{float(dN_dalpha):.3g}"
  '-2.24e+12'

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
from typing import Any

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
# Stop once a Newton step moves log N or log D by less than this (about 1e-13 relative in N, D),
# or by a few units in the last place where the precision is coarser (float32 under a caller's jit).
STEP_TOLERANCE = 1e-13
# A solution counts as feasible when the constraint holds to this, in log units (float64), or to
# FEASIBILITY_ULPS units in the last place of the level (float32).
FEASIBILITY_TOLERANCE = 1e-8
FEASIBILITY_ULPS = 64
# Stands in for "no cap on unique tokens" in the data-constrained law (log of ~1e304).
NO_CAP_LOG_U = 700.0


def _traced(*trees) -> bool:
  """Whether any leaf is a JAX tracer: the call runs inside jit, vmap or grad."""
  return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(trees))


def _log(value):
  return jnp.log(value) if _traced(value) else math.log(value)


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
  if not _traced(flops_per_param_token) and not flops_per_param_token > 0:
    raise ValueError(f"flops_per_param_token must be > 0, got {flops_per_param_token}")
  return Cost(_per_param_token, _log(flops_per_param_token))


def inference(tokens: float, flops_per_param_token: float = 2.0) -> Cost:
  """Inference FLOPs over the model's life, ``2 N T`` for ``T`` tokens served (``T`` may be traced)."""
  if not _traced(tokens, flops_per_param_token) and not (tokens > 0 and flops_per_param_token > 0):
    raise ValueError(f"inference tokens must be > 0, got {tokens} (leave the cost out for none)")
  return Cost(_per_param, _log(flops_per_param_token) + _log(tokens))


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
  if inference_tokens is None or (not _traced(inference_tokens) and inference_tokens == 0):
    return training()
  return total(training(), inference(inference_tokens))


# --- Results -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Allocation:
  """Optimal allocations, batched over budgets (``K``) and parameter sets (``B``).

  Shapes are ``(K,)`` for one parameter set and ``(B, K)`` for ``B`` of them.
  Infeasible problems (a budget below one token on a one-parameter model, a
  target loss below what the law can reach) hold NaN. A pytree (``law`` is
  static), so it passes through ``jit`` and ``vmap``.

  Attributes:
    N: parameters, shape ``(..., K)``.
    D: training tokens, shape ``(..., K)``.
    loss: predicted loss at ``(N, D)``, shape ``(..., K)``.
    compute: ``cost(N, D)`` in FLOPs, shape ``(..., K)``.
    law: the name of the law that was solved. With a cap on unique tokens,
      law ``chinchilla`` is solved as ``data_constrained`` and this says so.
  """

  N: Any
  D: Any
  loss: Any
  compute: Any
  law: str = dataclasses.field(default="", metadata={"static": True})

  @property
  def tokens_per_param(self):
    return self.D / self.N

  def as_dict(self) -> dict[str, Any]:
    """``{"N", "D", "loss", "compute"}`` arrays (not ``law``)."""
    return {"N": self.N, "D": self.D, "loss": self.loss, "compute": self.compute}

  def __iter__(self):  # unpacks as (N, D, loss, compute), like the NamedTuple it was
    return iter(self.as_dict().values())


jax.tree_util.register_dataclass(Allocation, data_fields=["N", "D", "loss", "compute"], meta_fields=["law"])


# --- Closed form ---------------------------------------------------------------------------


def _closed_form_log(params, log_compute_K):
  """``log N*, log D*`` and the loss for ``C = 6 N D``; pure JAX, broadcasting ``params[...]`` against ``K``."""
  E, A, B, alpha, beta = (jnp.asarray(params[k])[..., None] for k in ("E", "A", "B", "alpha", "beta"))
  log_G = (jnp.log(alpha) + jnp.log(A) - jnp.log(beta) - jnp.log(B)) / (alpha + beta)
  log_units = log_compute_K - math.log(6.0)
  log_N = log_G + beta / (alpha + beta) * log_units
  log_D = alpha / (alpha + beta) * log_units - log_G
  loss = E + jnp.exp(jnp.log(A) - alpha * log_N) + jnp.exp(jnp.log(B) - beta * log_D)
  return log_N, log_D, loss


def closed_form(params: Mapping[str, Any], compute) -> Allocation:
  """Chinchilla's closed-form optimum for ``C = 6 N D`` (Hoffmann et al. 2022, Eq. 4).

  ``N* = G (C/6)^(beta/(alpha+beta))``, ``D* = G^-1 (C/6)^(alpha/(alpha+beta))``,
  ``G = (alpha A / (beta B))^(1/(alpha+beta))``, computed in log space. Works
  under ``jit``, ``vmap`` and ``grad`` (then returns JAX arrays in the caller's
  precision).

  Args:
    params: natural Chinchilla parameters ``E, A, B, alpha, beta`` (scalars or
      arrays of shape ``(B,)``).
    compute: budget(s) in FLOPs, scalar or shape ``(K,)``.

  Returns:
    An :class:`Allocation`, shape ``(K,)`` or ``(B, K)``: NumPy float64 arrays
    for concrete inputs. Degenerate parameter sets (a bootstrap replicate with
    ``alpha ~ 0``) give inf or NaN in their own rows.

  Example:
    >>> from jaxscale import laws
    >>> best = closed_form(laws.preset("chinchilla", "besiroglu2024"), 5.76e23)
    >>> round(float(best.tokens_per_param[0]), 1)
    18.4
  """
  missing = [k for k in ("E", "A", "B", "alpha", "beta") if k not in params]
  if missing:
    raise ValueError(f"closed_form needs the natural chinchilla parameters E, A, B, alpha, beta; missing {', '.join(missing)}")
  if _traced(params, compute):
    compute_K = jnp.atleast_1d(compute)
    log_N, log_D, loss = _closed_form_log(params, jnp.log(compute_K))
    N, D = jnp.exp(log_N), jnp.exp(log_D)
    return Allocation(N=N, D=D, loss=loss, compute=jnp.broadcast_to(compute_K, N.shape), law="chinchilla")
  compute_K = _budgets(compute, "compute")
  with fitting.precision("float64"):
    arrays = {k: jnp.asarray(np.asarray(params[k], np.float64)) for k in ("E", "A", "B", "alpha", "beta")}
    log_N, log_D, loss = _closed_form_log(arrays, jnp.log(jnp.asarray(compute_K)))
    N, D, loss = (np.asarray(v, np.float64) for v in (jnp.exp(log_N), jnp.exp(log_D), loss))
  return Allocation(N=N, D=D, loss=loss, compute=np.broadcast_to(compute_K, N.shape), law="chinchilla")


# --- The solver ----------------------------------------------------------------------------


def _step_tolerance(x):
  return jnp.maximum(STEP_TOLERANCE, 4 * jnp.finfo(jnp.result_type(x)).eps)


def _increasing_root(fn: Callable, lo, hi, *, multiplicative: bool = False):
  """``x`` in ``[lo, hi]`` with ``fn(x) = 0`` for ``fn`` increasing; the nearer end if none.

  Newton steps (slope by forward-mode autodiff) inside a shrinking bracket,
  bisection whenever Newton would leave it. The state has a fixed shape, so the
  loop ``vmap``s; batched lanes run until the slowest converges. Not
  differentiable itself (a ``while_loop``): :func:`_implicit_root` gives it a derivative.

  ``multiplicative=True`` takes Newton steps on ``exp(fn) - 1`` in ``exp(x)``
  instead, for ``fn`` a log-ratio such as ``log cost - log C``: the step is
  exact for costs affine in ``D`` (``6ND + 2NT``), where plain Newton in
  ``log D`` crawls about one unit per step across the flat region.
  """
  lo, hi = jnp.asarray(lo, jnp.result_type(float)), jnp.asarray(hi, jnp.result_type(float))
  tolerance = _step_tolerance(lo)

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
    done = (value == 0) | (jnp.abs(x_next - x) <= tolerance * (1.0 + jnp.abs(x))) | (hi - lo <= tolerance)
    return lo, hi, x_next, count + 1, done

  def keep_going(state):
    return (state[3] < MAX_ROOT_STEPS) & ~state[4]

  # No root inside: the answer is an end, and the loop has nothing to do.
  below, above = fn(hi) <= 0, fn(lo) >= 0
  start = jnp.where(below, hi, jnp.where(above, lo, 0.5 * (lo + hi)))
  init = (lo, hi, start, jnp.zeros((), jnp.int32), below | above)
  _, _, x, _, _ = jax.lax.while_loop(keep_going, step, init)
  return x


def _implicit_root(fn: Callable, solve: Callable) -> Callable:
  """``root(args)`` with ``fn(root(args), args) = 0``, found by ``solve(args)``.

  The root is a scalar or a 2-vector. Its derivative is the implicit function
  theorem's ``-(dfn/dx)^-1 dfn/dargs``, so ``jvp``, ``grad`` and ``vmap`` pass
  through the (non-differentiable) search without tracing it again. ``fn``
  must hold no traced values outside ``args``.
  """

  @jax.custom_jvp
  def root(args):
    return solve(jax.lax.stop_gradient(args))

  @root.defjvp
  def root_jvp(primals, tangents):
    (args,), (args_dot,) = primals, tangents
    x = root(args)
    _, fn_dot = jax.jvp(lambda a: fn(x, a), (args,), (args_dot,))
    if x.ndim == 0:
      return x, -fn_dot / jax.grad(fn)(x, args)
    (a, b), (c, d) = jax.jacfwd(fn)(x, args)  # 2 x 2: inverted by hand, cheaper than a solver under vmap
    determinant = a * d - b * c
    return x, -jnp.stack([d * fn_dot[0] - b * fn_dot[1], a * fn_dot[1] - c * fn_dot[0]]) / determinant

  return root


def _constraint_curve(constraint: Callable) -> Callable:
  """``y(x, args)`` solving ``constraint(x, y, args) = 0``, differentiable by the implicit function theorem."""

  def residual(y, x_args):
    return constraint(x_args[0], y, x_args[1])

  def solve(x_args):
    x, args = x_args
    return _increasing_root(lambda y: constraint(x, y, args), *LOG_D_BOUNDS, multiplicative=True)

  root = _implicit_root(residual, solve)
  return lambda x, args: root((x, args))


def _minimize_on_curve(objective: Callable, constraint: Callable, args):
  """Minimises ``objective(x, y, args)`` subject to ``constraint(x, y, args) = 0``.

  ``constraint`` must increase in ``x`` and ``y``; the objective must have one
  minimum along the curve. Returns ``(x, y, constraint residual)``.

  The search runs along the curve ``y(x)``. The derivative of the optimum in
  ``args`` comes from the implicit function theorem on the optimality
  conditions ``f_x h_y - f_y h_x = 0`` (the objective's gradient is normal to
  the constraint) and ``h = 0``: second derivatives of ``f`` and ``h`` at the
  optimum, with no search traced again (exact where the minimum is interior).
  """
  curve = _constraint_curve(constraint)

  def solve(args):
    x_min, x_max = LOG_N_BOUNDS
    y_min, y_max = LOG_D_BOUNDS
    # The curve runs from the smallest x (y at its ceiling) to the largest (y at its floor).
    x_lo = _increasing_root(lambda x: constraint(x, y_max, args), x_min, x_max, multiplicative=True)
    x_hi = _increasing_root(lambda x: constraint(x, y_min, args), x_min, x_max, multiplicative=True)
    slope = jax.grad(lambda x: objective(x, curve(x, args), args))
    x = _increasing_root(slope, x_lo, x_hi)
    return jnp.stack([x, curve(x, args)])

  def optimality(z, args):
    f_x, f_y = jax.grad(objective, argnums=(0, 1))(z[0], z[1], args)
    h_x, h_y = jax.grad(constraint, argnums=(0, 1))(z[0], z[1], args)
    return jnp.stack([f_x * h_y - f_y * h_x, constraint(z[0], z[1], args)])

  z = _implicit_root(optimality, solve)(args)
  x, y = z[0], z[1]
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


def _feasible(residual, log_levels_K):
  """Whether the constraint holds: to 1e-8 in float64, to a few ulps of the level in float32."""
  eps = jnp.finfo(jnp.result_type(residual)).eps
  return jnp.abs(residual) <= jnp.maximum(FEASIBILITY_TOLERANCE, FEASIBILITY_ULPS * eps * (1.0 + jnp.abs(log_levels_K)))


def _allocation_of(law, natural_B, levels_K, cost, log_U, mode) -> tuple:
  """The pure core: natural params ``{name: (B,)}`` and levels ``(K,)`` -> ``(N, D, loss, compute)``, each ``(B, K)``."""
  log_levels_K = jnp.log(levels_K)
  log_N, log_D, log_L, log_C, residual = _solve(law, law.from_natural(natural_B), log_levels_K, cost, log_U, mode=mode)
  feasible = _feasible(residual, log_levels_K)
  return tuple(jnp.where(feasible, jnp.exp(v), jnp.nan) for v in (log_N, log_D, log_L, log_C))


# A new number of parameter sets or budgets must not compile a new program (a study asks
# for a point estimate, a bootstrap's sets at 2 budgets and at a curve's 60, ~2 s of
# compilation each on a CPU). Eager calls pad to these buckets, repeating the last row,
# and slice the answer: each solve is independent, so the padding changes no result.
_MIN_SETS, _MIN_LEVELS = 1024, 64


def _sets_bucket(count: int) -> int:
  return 1 if count == 1 else max(_MIN_SETS, 1 << (count - 1).bit_length())


def _levels_bucket(count: int) -> int:
  return max(_MIN_LEVELS, 1 << (count - 1).bit_length())


def _padded(values: np.ndarray, size: int) -> np.ndarray:
  return np.concatenate([values, np.repeat(values[-1:], size - len(values))])


_compiled_allocation = jax.jit(_allocation_of, static_argnums=(0, 5))


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


def solved_law(law: str | laws_lib.Law, unique_tokens: float | None = None) -> str:
  """The name of the law :func:`allocate` solves: ``data_constrained`` for ``chinchilla`` with a cap.

  Example:
    >>> solved_law("chinchilla", unique_tokens=1e11)
    'data_constrained'
  """
  name = laws_lib.get(law).name
  return "data_constrained" if name == "chinchilla" and unique_tokens is not None else name


def _with_unique_tokens(law: laws_lib.Law, params: Mapping[str, Any], unique_tokens, decay: Mapping[str, Any]):
  """The law and natural params that read a cap ``U`` on unique tokens (``log U`` too).

  ``decay`` holds the data-constrained law's ``R_star`` and ``R_N_star`` that
  extend ``chinchilla`` (Muennighoff et al.'s decay of repeats); the law
  returned is then ``data_constrained``, which :attr:`Allocation.law` records.
  """
  if unique_tokens is None:
    if "U" in law.variables:
      return law, params, NO_CAP_LOG_U
    return law, params, 0.0  # unused by the law
  if not _traced(unique_tokens) and not (np.isfinite(unique_tokens) and unique_tokens > 0):
    raise ValueError(f"unique_tokens must be positive and finite, got {unique_tokens}")
  if law.name == "chinchilla":
    law = laws_lib.get(solved_law(law, unique_tokens))
    params = {**params, **decay}
  elif "U" not in law.variables:
    raise ValueError(
        f"a cap on unique tokens needs law 'data_constrained' (or 'chinchilla', which gets R* = {decay['R_star']}, "
        f"R_N* = {decay['R_N_star']}); "
        f"law {law.name!r} cannot tell repeated tokens from fresh ones"
    )
  return law, params, jnp.log(unique_tokens) if _traced(unique_tokens) else math.log(unique_tokens)


def _prepare_params(law: laws_lib.Law, params: Mapping[str, Any], *, traced: bool):
  """``{name: (B,)}`` arrays of the law's natural parameters, and whether they came batched."""
  missing = [k for k in law.natural_names if k not in params]
  if missing:
    raise ValueError(f"law {law.name!r} needs natural parameters {', '.join(law.natural_names)}; missing {', '.join(missing)}")
  xp = jnp if traced else np
  arrays = {k: xp.asarray(params[k], None if traced else np.float64) for k in law.natural_names}
  batched = any(a.ndim > 0 for a in arrays.values())
  arrays = dict(zip(arrays, xp.broadcast_arrays(*(xp.atleast_1d(a) for a in arrays.values()))))
  if any(a.ndim != 1 for a in arrays.values()):
    raise ValueError("natural parameters must be scalars or arrays of shape (B,) (one per parameter set)")
  return arrays, batched


def _decay(r_star, r_n_star) -> dict[str, Any]:
  as_number = lambda v: v if _traced(v) else float(v)  # noqa: E731
  return {"R_star": as_number(r_star), "R_N_star": as_number(r_n_star)}


def _run(law, params, levels, cost, unique_tokens, decay, mode) -> Allocation:
  law = laws_lib.get(law)
  _check_law(law)
  cost = training() if cost is None else cost
  if not isinstance(cost, Cost):
    raise ValueError(f"cost must be a jaxscale.allocation.Cost (e.g. allocation.training()), got {type(cost).__name__}")
  traced = _traced(params, levels, cost, unique_tokens, decay)
  law, params, log_U = _with_unique_tokens(law, params, unique_tokens, decay)
  arrays, batched = _prepare_params(law, params, traced=traced)
  if traced:  # inside the caller's jit, vmap or grad: their precision, no value checks
    out = _allocation_of(law, arrays, jnp.atleast_1d(jnp.asarray(levels)), cost, jnp.asarray(log_U), mode)
  else:
    levels_K = _budgets(levels, "compute" if mode == "budget" else "target_loss")
    num_sets, num_levels = len(next(iter(arrays.values()))), len(levels_K)
    with fitting.precision("float64"):
      natural = {k: jnp.asarray(_padded(v, _sets_bucket(num_sets))) for k, v in arrays.items()}
      levels_P = jnp.asarray(_padded(levels_K, _levels_bucket(num_levels)))
      out = _compiled_allocation(law, natural, levels_P, cost, jnp.asarray(log_U), mode)
      out = [np.asarray(v, np.float64)[:num_sets, :num_levels] for v in out]
  if not batched:
    out = [v[0] for v in out]
  return Allocation(*out, law=law.name)


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

  A JAX function: ``params``, ``compute``, the cost's numbers, ``unique_tokens``
  and the decay constants may be traced, so ``jax.grad`` gives e.g.
  ``dN*/dalpha`` and ``dN*/dC`` (by the implicit function theorem) and
  ``jax.vmap`` / ``jax.jit`` compose.

  Args:
    law: a law of ``N`` and ``D`` (name or :class:`~jaxscale.laws.Law`).
    params: its natural parameters (``law.natural_names``), scalars or arrays
      of shape ``(B,)`` (e.g. bootstrap samples: one solve per set).
    compute: budget(s) in FLOPs, scalar or shape ``(K,)``.
    cost: what the budget pays for; default :func:`training` (``6 N D``).
    unique_tokens: a cap ``U`` on unique training tokens; tokens beyond it are
      repeats, worth less (Muennighoff et al.). Needs law ``data_constrained``;
      law ``chinchilla`` is then solved as ``data_constrained`` with
      ``R* = r_star`` and ``R_N* = r_n_star``, and the result's ``law`` says so.
    r_star: decay constant of repeated tokens used with ``chinchilla``.
    r_n_star: decay constant of excess parameters used with ``chinchilla``.

  Returns:
    An :class:`Allocation`, shape ``(K,)`` or ``(B, K)``; NaN where
    infeasible. NumPy float64 for concrete inputs (solved in float64); JAX
    arrays in the caller's precision under a transformation.

  Example:
    >>> from jaxscale import laws
    >>> params = laws.preset("chinchilla", "besiroglu2024")
    >>> serving = allocate("chinchilla", params, 1e24, cost=training_and_inference(1e13))
    >>> bool(serving.N[0] < allocate("chinchilla", params, 1e24).N[0])
    True
  """
  return _run(law, params, compute, cost, unique_tokens, _decay(r_star, r_n_star), "budget")


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

  Args and Returns as :func:`allocate` (a JAX function too), with
  ``target_loss`` (scalar or ``(K,)``) in place of the budget; ``compute`` in
  the result is the least cost.

  Raises:
    ValueError: for one concrete parameter set, a target at or below the law's
      irreducible loss ``E`` (unreachable at any scale). For batched or traced
      parameter sets such targets give NaN in the affected sets instead.
  """
  if not _traced(params, target_loss):
    targets_K = _budgets(target_loss, "target_loss")
    if "E" in params and np.ndim(params["E"]) == 0 and np.any(targets_K <= float(params["E"])):
      low = float(targets_K[targets_K <= float(params["E"])][0])
      raise ValueError(
          f"target loss {low:g} is unreachable: the law's irreducible loss is E = {float(params['E']):.4g}; "
          "choose a target above it"
      )
  return _run(law, params, target_loss, cost, unique_tokens, _decay(r_star, r_n_star), "target")


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
  fields = {**samples.as_dict(), "tokens_per_param": samples.tokens_per_param}
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
    floor: float | None = None,
) -> list[dict[str, Any]]:
  """One row per budget (or target loss): the optimum, with bands from ``samples``.

  The table layer over :func:`allocate`: concrete numbers in, plain floats out.

  Args:
    law, params: the law and its natural point-estimate parameters.
    compute: budgets in FLOPs; or
    target_loss: losses to reach at least cost (exactly one of the two).
    inference_tokens: tokens the model will serve; the cost becomes ``6ND + 2NT``.
    unique_tokens: cap on unique training tokens (see :func:`allocate`).
    samples: natural parameter arrays of shape ``(B,)`` (e.g. from
      :func:`bootstrap_params`) for bands.
    level: band coverage; keys are suffixed ``_ci95`` for 0.95.
    r_star, r_n_star: Muennighoff et al.'s decay constants, used when law
      ``chinchilla`` meets ``unique_tokens``.
    floor: a loss known to be unreachable from below (e.g. the data's entropy
      rate). Each row then gets ``below_floor``: True when its predicted loss
      (or target) is below it, i.e. the law's extrapolation cannot be right there.

  Returns:
    Rows with ``compute, N, D, tokens_per_param, loss`` (and ``target_loss``),
    ``law`` (the law solved: ``data_constrained`` for ``chinchilla`` with a
    cap), plus ``N_ci95, D_ci95, tokens_per_param_ci95`` and ``loss_ci95``
    (for targets ``compute_ci95`` instead) as ``[low, high]`` when
    ``samples`` is given, and ``below_floor`` when ``floor`` is.

  Example:
    >>> from jaxscale import laws
    >>> [row] = frontier("chinchilla", laws.preset("chinchilla", "besiroglu2024"), compute=1e13, floor=15.0)
    >>> round(row["loss"], 2), row["below_floor"]
    (14.85, True)
  """
  if (compute is None) == (target_loss is None):
    raise ValueError("give exactly one of compute (a budget in FLOPs) or target_loss")
  if floor is not None and not (np.isfinite(floor) and floor >= 0):
    raise ValueError(f"floor must be a finite loss >= 0, got {floor}")
  cost = training_and_inference(inference_tokens)
  solve = functools.partial(
      allocate_for_loss if compute is None else allocate, cost=cost, unique_tokens=unique_tokens, r_star=r_star,
      r_n_star=r_n_star,
  )
  levels = compute if compute is not None else target_loss
  point = solve(law, params, levels)
  fields = ["compute", "N", "D", "tokens_per_param", "loss"]
  columns = {**point.as_dict(), "tokens_per_param": point.tokens_per_param}
  rows = [{name: float(columns[name][k]) for name in fields} for k in range(len(point.N))]
  for row, value in zip(rows, _budgets(levels, "compute" if target_loss is None else "target_loss")):
    # Label each row with the number asked for (the solution meets it to ~1e-14 relative).
    row["compute" if target_loss is None else "target_loss"] = float(value)
    row["law"] = point.law
    if floor is not None:
      row["below_floor"] = bool(row["loss"] < floor)
  if samples is not None:
    suffix = f"_ci{round(level * 100):d}"
    low_high = bands(solve(law, samples, levels), level)
    # For a target the loss is fixed and the compute is what varies.
    shown = ["N", "D", "tokens_per_param"] + (["loss"] if target_loss is None else ["compute"])
    for k, row in enumerate(rows):
      for name in shown:
        row[name + suffix] = [float(low_high[name][0][k]), float(low_high[name][1][k])]
  return rows
