"""Fitting a law under any objective: LM for least squares, Optax for the rest.

:func:`fit` is :func:`jaxscale.fitting.fit` with a choice of objective
(:mod:`jaxscale.objectives`), of solver (``"lm"``: the IRLS Levenberg-Marquardt
engine of :mod:`jaxscale.solver`; ``"lbfgs"`` or any ``optax.GradientTransformation``)
and with pinned or bounded parameters (:mod:`jaxscale.constraints`). The search
is the same one compiled program: every start of the grid is scored, the
``keep`` best are refined together (``vmap``), the best wins.

:func:`fit_weights` runs that search for a batch of weight vectors at once
(bootstrap replicates, backtest folds, profile points): one compiled program
whatever the weights, so a second call with new data of the same shape does
not recompile.

Example:
  >>> from jaxscale import estimation
  >>> result = estimation.fit("chinchilla", "runs.csv", objective="mse_raw")  # doctest: +SKIP
  >>> result.extras["objective"]["name"], result.extras["objective"]["solver"]  # doctest: +SKIP
  ('mse_raw', 'lm')
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxscale import constraints, fitting, optax_solver
from jaxscale import laws as laws_lib
from jaxscale import objectives as objectives_lib
from jaxscale import runs as runs_lib
from jaxscale import solver as solver_lib

SOLVERS = ("lm", "lbfgs")
MAX_STEPS = {"lm": 300, "optax": 1000}
_LBFGS = optax.lbfgs()  # one object, so repeated fits share one compiled program


@dataclasses.dataclass(frozen=True)  # hashed by value: equal settings share one compiled program
class Problem:
  """A law, an objective, the pins and bounds, and the solver: what one compiled search solves.

  The unknowns are ``z = [u_F, extra_X]``: the free law parameters (see
  :class:`~jaxscale.constraints.ParameterMap`) then the objective's own.
  """

  law: laws_lib.Law
  objective: objectives_lib.Objective
  parameters: constraints.ParameterMap
  solver: str  # "lm" or "optax"
  optimizer: Any = None  # an optax.GradientTransformation when solver == "optax"
  max_steps: int = 300

  @property
  def num_unknowns(self) -> int:
    return self.parameters.num_free + len(self.objective.extra_names)

  def theta(self, z):
    """The law's fit-space parameters ``(..., P)`` of unknowns ``z``."""
    return self.parameters.to_theta(z[..., : self.parameters.num_free])

  def extra(self, z) -> dict[str, jax.Array]:
    base = self.parameters.num_free
    return {name: z[..., base + k] for k, name in enumerate(self.objective.extra_names)}

  def residuals(self, z, log_inputs, log_loss_R):
    log_predicted = self.law.log_loss(self.law.unflatten(self.theta(z)), log_inputs)
    if self.objective.space == "raw":
      return jnp.exp(log_predicted) - jnp.exp(log_loss_R)
    return log_predicted - log_loss_R

  def value(self, z, log_inputs, log_loss_R, weights_R):
    value = self.objective.value(self.residuals(z, log_inputs, log_loss_R), weights_R, self.extra(z))
    return jnp.where(jnp.isfinite(value), value, jnp.inf)

  def start(self, u_F, log_inputs, log_loss_R, weights_R):
    """Unknowns ``z`` at a free start ``u_F``: the objective's extras from its residuals there."""
    if not self.objective.extra_names:
      return u_F
    z = jnp.concatenate([u_F, jnp.zeros(len(self.objective.extra_names), u_F.dtype)])
    extra = self.objective.init_extra(self.residuals(z, log_inputs, log_loss_R), weights_R)
    return jnp.concatenate([u_F, jnp.stack([jnp.asarray(extra[n], u_F.dtype) for n in self.objective.extra_names])])


class Solution(NamedTuple):
  z: jax.Array  # shape=(..., Z): free parameters then objective extras
  objective: jax.Array  # shape=(...)
  gradient_norm: jax.Array  # shape=(...)
  steps: jax.Array  # shape=(...), int32
  reached: jax.Array  # shape=(...), int32: refined starts that ended at the best objective


def _refine(problem: Problem, z0, log_inputs, log_loss_R, weights_R):
  """One start refined: ``(z, objective, gradient norm, steps)``."""

  def value(z):
    return problem.value(z, log_inputs, log_loss_R, weights_R)

  if problem.solver == "lm":
    options = problem.objective.least_squares._replace(max_steps=int(problem.max_steps))
    state = solver_lib.minimize(lambda z: problem.residuals(z, log_inputs, log_loss_R), z0, weights_R, options)
    z, objective, steps = state.theta, state.objective, state.steps
  else:
    state = optax_solver.minimize(value, z0, problem.optimizer, max_steps=int(problem.max_steps))
    z, objective, steps = state.theta, state.objective, state.steps
  return z, objective, optax.tree.norm(jax.grad(value)(z)), steps


def _search(problem: Problem, starts_SxF, log_inputs, log_loss_R, weights_R, keep: int) -> Solution:
  def start(u):
    return problem.start(u, log_inputs, log_loss_R, weights_R)

  if keep < starts_SxF.shape[0]:
    objectives_S = jax.lax.map(
        lambda u: problem.value(start(u), log_inputs, log_loss_R, weights_R), starts_SxF, batch_size=1024
    )
    _, best = jax.lax.top_k(-objectives_S, keep)
    starts_SxF = starts_SxF[best]
  z0_KxZ = jax.vmap(start)(starts_SxF)
  z_KxZ, objective_K, gradient_K, steps_K = jax.vmap(lambda z0: _refine(problem, z0, log_inputs, log_loss_R, weights_R))(z0_KxZ)
  objective_K = jnp.where(jnp.isfinite(objective_K), objective_K, jnp.inf)
  best = jnp.argmin(objective_K)
  top = objective_K[best]
  reached = jnp.sum(objective_K <= top + fitting.SAME_OPTIMUM_RTOL * jnp.abs(top) + fitting.SAME_OPTIMUM_ATOL)
  return Solution(z_KxZ[best], top, gradient_K[best], steps_K[best], reached.astype(jnp.int32))


@functools.partial(jax.jit, static_argnames=("problem", "keep"))
def fit_weights(problem: Problem, starts_SxF, log_inputs, log_loss_R, weights_BxR, *, keep: int) -> Solution:
  """The multi-start search for each of ``B`` weight vectors at once; one compiled program.

  Args:
    problem: the :class:`Problem` (static).
    starts_SxF: free starting points (see :meth:`ParameterMap.starts`).
    log_inputs: ``{variable: (R,) log values}``.
    log_loss_R: observed log losses.
    weights_BxR: per-run weights of each problem (0 drops a run).
    keep: starts refined per problem after scoring them all (static).

  Returns:
    A :class:`Solution` batched over ``B``.
  """
  return jax.vmap(lambda w: _search(problem, starts_SxF, log_inputs, log_loss_R, w, keep))(weights_BxR)


def problem_for(
    law: str | laws_lib.Law,
    *,
    objective: Any = None,
    solver: str | None = None,
    optimizer: Any = None,
    fixed: Mapping[str, float] | None = None,
    bounds: Mapping[str, tuple[float, float]] | None = None,
    delta: float | None = None,
    max_steps: int | None = None,
) -> Problem:
  """Checks the settings and builds the :class:`Problem` (see :func:`fit` for the arguments)."""
  law = laws_lib.get(law)
  if delta is not None and not delta > 0:
    raise ValueError(f"delta must be > 0, got {delta}")
  objective = objectives_lib.get(objective, delta=delta)
  if optimizer is not None:
    optax_solver.check_optimizer(optimizer)
    if solver == "lm":
      raise ValueError("solver='lm' takes no optimizer; pass solver='lbfgs' (or leave it out) with an Optax optimizer")
    engine = "optax"
  elif solver is None:
    engine = "lm" if objective.least_squares is not None else "optax"
  elif solver == "lm":
    if objective.least_squares is None:
      raise ValueError(
          f"objective {objective.name!r} is not least squares, so the LM engine cannot solve it; use solver='lbfgs' "
          f"(LM solves {', '.join(n for n in objectives_lib.NAMES if objectives_lib.get(n).least_squares)})"
      )
    engine = "lm"
  elif solver == "lbfgs":
    engine = "optax"
  else:
    raise ValueError(f"unknown solver {solver!r}; use one of {', '.join(SOLVERS)} (or pass optimizer=an Optax optimizer)")
  steps = MAX_STEPS[engine] if max_steps is None else int(max_steps)
  if steps < 1:
    raise ValueError(f"max_steps must be >= 1, got {max_steps}")
  parameters = constraints.ParameterMap.build(law, fixed, bounds)
  return Problem(law, objective, parameters, engine, (optimizer or _LBFGS) if engine == "optax" else None, steps)


def problem_of(
    fit: fitting.FitResult,
    *,
    objective: Any = None,
    solver: str | None = None,
    optimizer: Any = None,
    max_steps: int | None = None,
) -> Problem:
  """The :class:`Problem` ``fit`` solved, rebuilt from its ``extras["objective"]`` section.

  A fit of :func:`jaxscale.fitting.fit` without an objective section is Huber
  (or MSE) on log loss on the LM engine. A user function is not stored in a
  fit, so a ``custom:`` fit needs its ``objective`` passed again.

  Args:
    fit: a fitted result (in memory or read from a fit file).
    objective, solver, optimizer: override the recorded ones (a custom
      objective's function; an Optax optimizer other than L-BFGS).
    max_steps: iteration cap per start (default the engine's).

  Example:
    >>> problem_of(fit).objective.name  # doctest: +SKIP
    'gaussian'
  """
  section = fit.extras.get("objective")
  if section is None:
    name = objective or {"huber": "huber_log", "mse": "mse_log"}.get(fit.loss, fit.loss)
    return problem_for(fit.law_object, objective=name, solver=solver, optimizer=optimizer, delta=fit.delta if name == "huber_log" else None,
                       max_steps=max_steps)
  name = section["name"]
  if objective is None:
    if name.startswith("custom:"):
      raise ValueError(
          f"the fit's objective {name!r} is a user function, which a fit does not store; pass it again as objective=fn"
      )
    objective = name
  if solver is None and optimizer is None:
    solver = {"lm": "lm", "lbfgs": "lbfgs"}.get(section.get("solver"), "lbfgs")
    if section.get("solver") == "optax":
      raise ValueError("the fit used an Optax optimizer other than L-BFGS, which a fit does not store; pass it again as optimizer=")
  bounds = {k: tuple(float(x) for x in v) for k, v in section.get("bounds", {}).items()}
  return problem_for(
      fit.law_object, objective=objective, solver=solver, optimizer=optimizer, fixed=section.get("fixed") or None,
      bounds=bounds or None, delta=fit.delta if objective == "huber_log" else None, max_steps=max_steps,
  )


def fit(
    law: str | laws_lib.Law,
    runs: Any,
    *,
    objective: Any = None,
    solver: str | None = None,
    optimizer: Any = None,
    fixed: Mapping[str, float] | None = None,
    bounds: Mapping[str, tuple[float, float]] | None = None,
    seed_weights: bool = False,
    delta: float | None = None,
    starts: Any = None,
    keep: int | None = fitting.DEFAULT_KEEP,
    max_steps: int | None = None,
    dtype: str = "float64",
    columns: Mapping[str, str] | None = None,
) -> fitting.FitResult:
  """Fits ``law`` to ``runs`` under ``objective`` from many starting points at once.

  Args:
    law: a law name or object.
    runs: a path, DataFrame, dict of arrays or RunSet.
    objective: a name (``huber_log`` default, ``mse_log``, ``mse_raw``,
      ``gaussian``, ``student_t``, ``asymmetric``), an
      :class:`~jaxscale.objectives.Objective`, or a function
      ``fn(residuals_R, weights_R, extra_params) -> scalar``.
    solver: ``"lm"`` (least-squares objectives; their default) or ``"lbfgs"``
      (Optax's L-BFGS; the default for the others).
    optimizer: any ``optax.GradientTransformation`` to use instead of L-BFGS.
    fixed: pinned parameters, ``{name: value}`` (natural or fit-space names), e.g. ``{"E": 1.69}``.
    bounds: ``{name: (low, high)}``, e.g. ``{"alpha": (0, 2), "beta": (0, 2)}``.
    seed_weights: weight runs by ``1 / sigma^2`` of their configuration's seed
      repeats (:func:`jaxscale.objectives.seed_weights`).
    delta: Huber threshold of ``huber_log`` (default 1e-3).
    starts: fit-space starting points ``(S, P)``; default the law's grid.
    keep: starts refined after scoring all; None refines all.
    max_steps: iteration cap per start (default 300 for LM, 1000 for Optax).
    dtype: ``"float64"`` (scoped) or ``"float32"``.
    columns: column mapping when ``runs`` is a path.

  Returns:
    A :class:`~jaxscale.fitting.FitResult`; ``extras["objective"]`` records the
    objective, solver, pins, bounds and fitted extras (e.g. ``sigma``).

  Example:
    >>> fit("chinchilla", runs, objective="gaussian", bounds={"alpha": (0, 2)})  # doctest: +SKIP
  """
  problem = problem_for(law, objective=objective, solver=solver, optimizer=optimizer, fixed=fixed, bounds=bounds,
                        delta=delta, max_steps=max_steps)
  law = problem.law
  runs = runs_lib.load(runs, columns=columns)
  if seed_weights:
    runs = objectives_lib.seed_weights(runs, space=problem.objective.space)
  with fitting.precision(dtype) as float_dtype:
    log_inputs, log_loss_R, weights_R = fitting.prepare(law, runs, float_dtype)
    grid_SxP = law.starts(log_inputs) if starts is None else np.asarray(starts, dtype=np.float64)
    if grid_SxP.ndim != 2 or grid_SxP.shape[1] != law.num_params:
      raise ValueError(f"starts must have shape (S, {law.num_params}) for law {law.name!r}, got {grid_SxP.shape}")
    starts_SxF = problem.parameters.starts(grid_SxP)
    kept = starts_SxF.shape[0] if keep is None else max(1, min(int(keep), starts_SxF.shape[0]))
    solution = fit_weights(problem, jnp.asarray(starts_SxF, float_dtype), log_inputs, log_loss_R, weights_R[None], keep=kept)
    solution = jax.tree.map(lambda x: np.asarray(x[0]), solution)
    theta = np.asarray(problem.theta(jnp.asarray(solution.z)), np.float64)
    extra = {k: float(v) for k, v in problem.extra(jnp.asarray(solution.z)).items()}
  return result(problem, runs, theta, extra, solution, starts=starts_SxF.shape[0], kept=kept, dtype=dtype)


def result(problem: Problem, runs, theta_P, extra, solution, *, starts: int, kept: int, dtype: str) -> fitting.FitResult:
  """The :class:`~jaxscale.fitting.FitResult` of one solved problem."""
  law = problem.law
  fit_params = {n: float(v) for n, v in zip(law.param_names, theta_P)}
  with fitting.precision(dtype):
    natural = {k: float(v) for k, v in law.to_natural({k: jnp.asarray(v) for k, v in fit_params.items()}).items()}
  objective = float(solution.objective)
  gradient_norm = float(solution.gradient_norm)
  steps = int(solution.steps)
  converged = bool(math.isfinite(objective) and gradient_norm <= fitting.GRADIENT_TOLERANCE[dtype] * (1.0 + abs(objective)))
  least = problem.objective.least_squares
  # `loss`/`delta` keep their meaning for the LM-on-log-loss objectives that bootstrap and diagnostics read.
  if problem.objective.name == "huber_log":
    loss, delta = "huber", least.delta
  elif problem.objective.name == "mse_log":
    loss, delta = "mse", 1e-3
  else:
    loss, delta = problem.objective.name, 1e-3
  names = law.param_names
  section = {
      "name": problem.objective.name,
      "space": problem.objective.space,
      "solver": "lm" if problem.solver == "lm" else ("lbfgs" if problem.optimizer is _LBFGS else "optax"),
      "fixed": {names[i]: v for i, v in problem.parameters.pinned},
      "bounds": {names[i]: list(b) for i, b in zip(problem.parameters.free, problem.parameters.bounds)
                 if math.isfinite(b[0]) or math.isfinite(b[1])},
      "extra": {**extra, **({"sigma": math.exp(extra["log_sigma"])} if "log_sigma" in extra else {})},
  }
  return fitting.FitResult(
      law=law.name,
      params=natural,
      fit_params=fit_params,
      objective=objective,
      converged=converged,
      status=fitting._status(converged, steps, problem.max_steps, gradient_norm, objective),
      iterations=steps,
      gradient_norm=gradient_norm,
      runs_used=int(np.count_nonzero(runs.weight > 0)),
      starts=int(starts),
      starts_refined=int(kept),
      starts_reached_best=int(solution.reached),
      loss=loss,
      delta=float(delta),
      dtype=dtype,
      extras={"objective": section},
  )
