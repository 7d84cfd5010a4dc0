"""Variable projection for Chinchilla's form: solve E, A, B exactly, search only the exponents.

``L = E + A N^-alpha + B D^-beta`` is linear in ``c = (E, A, B)`` once
``(alpha, beta)`` are fixed. For least squares on the raw loss (``mse_raw``) the
best non-negative ``c`` for given exponents is a 3-column non-negative least
squares problem, solved here exactly and at fixed cost by trying every support
(the 7 non-empty subsets of the columns) and keeping the best feasible one. The
outer problem has only the two exponents, solved by the same Levenberg-Marquardt
engine (:mod:`jaxscale.solver`); derivatives flow through the inner solve
(Golub and Pereyra's variable projection).

Open-Athena report this turns a condition number of ~1e11 into ~10; what it
does here is measured in ``benchmarks/bench_objectives.py`` (time, optimum and
the condition numbers of both Gauss-Newton matrices).

Example:
  >>> from jaxscale import varpro
  >>> result = varpro.fit_chinchilla(runs)  # doctest: +SKIP
  >>> result["params"]["alpha"], result["objective"]  # doctest: +SKIP

References:
  Golub & Pereyra 1973, "The differentiation of pseudo-inverses and nonlinear
  least squares problems whose variables separate".
"""

from __future__ import annotations

import functools
import itertools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxscale import fitting
from jaxscale import runs as runs_lib
from jaxscale import solver as solver_lib

EXPONENT_GRID = np.arange(0.05, 1.55, 0.25)  # 6 x 6 starts for (alpha, beta)
SUPPORTS = np.array([s for k in (1, 2, 3) for s in itertools.combinations(range(3), k)], dtype=object)
_MASKS = np.array([[float(i in s) for i in range(3)] for s in SUPPORTS])  # (7, 3)


def basis(exponents_2, log_N_R, log_D_R):
  """The columns ``[1, N^-alpha, D^-beta]``, shape ``(R, 3)``."""
  alpha, beta = exponents_2[0], exponents_2[1]
  return jnp.stack([jnp.ones_like(log_N_R), jnp.exp(-alpha * log_N_R), jnp.exp(-beta * log_D_R)], axis=1)


def nonnegative_coefficients(basis_RxC, target_R, weights_R):
  """``argmin_{c >= 0} sum_i w_i (basis_i c - target_i)^2`` for ``C = 3`` columns, by trying every support."""
  masks = jnp.asarray(_MASKS, basis_RxC.dtype)
  root_R = jnp.sqrt(weights_R)
  scaled = basis_RxC * root_R[:, None]
  target = target_R * root_R
  # Columns are scaled to unit norm first: N^-alpha and 1 differ by orders of magnitude.
  norms = jnp.maximum(jnp.linalg.norm(scaled, axis=0), jnp.finfo(basis_RxC.dtype).tiny)
  unit = scaled / norms

  def on_support(mask_C):
    columns = unit * mask_C[None]
    gram = columns.T @ columns + jnp.diag(1.0 - mask_C)
    coefficients = jnp.linalg.solve(gram, columns.T @ target) * mask_C
    residual = unit @ coefficients - target
    feasible = jnp.all(coefficients >= 0)
    return coefficients / norms, jnp.where(feasible, jnp.sum(residual**2), jnp.inf)

  coefficients_SxC, cost_S = jax.vmap(on_support)(masks)
  return coefficients_SxC[jnp.argmin(cost_S)]


def _residual_fn(log_N_R, log_D_R, loss_R, weights_R):
  def residuals(exponents_2):
    columns = basis(exponents_2, log_N_R, log_D_R)
    return columns @ nonnegative_coefficients(columns, loss_R, weights_R) - loss_R

  return residuals


@functools.partial(jax.jit, static_argnames=("options",))
def _search(starts_Sx2, log_N_R, log_D_R, loss_R, weights_R, *, options):
  residual_fn = _residual_fn(log_N_R, log_D_R, loss_R, weights_R)
  states = jax.vmap(lambda start: solver_lib.minimize(residual_fn, start, weights_R, options))(starts_Sx2)
  objective = jnp.where(jnp.isfinite(states.objective), states.objective, jnp.inf)
  best = jnp.argmin(objective)
  exponents = states.theta[best]
  columns = basis(exponents, log_N_R, log_D_R)
  jacobian = jax.jacfwd(residual_fn)(exponents)
  return exponents, nonnegative_coefficients(columns, loss_R, weights_R), objective[best], objective, jacobian


def fit_chinchilla(runs: Any, *, starts=None, max_steps: int = 300) -> dict[str, Any]:
  """``mse_raw`` fit of Chinchilla's law by variable projection.

  Args:
    runs: anything :func:`jaxscale.runs.load` reads, with ``N``, ``D`` and ``loss``.
    starts: ``(S, 2)`` starting exponents; default the 6 x 6 grid over [0.05, 1.3].
    max_steps: LM steps per start.

  Returns:
    ``{"params", "objective", "starts", "starts_reached_best", "condition_number"}``: the
    natural parameters, ``sum w r^2 / 2``, and the condition number of the
    2 x 2 Gauss-Newton matrix ``J^T W J`` at the optimum.
  """
  runs = runs_lib.load(runs)
  if starts is None:
    starts = np.array(list(itertools.product(EXPONENT_GRID, EXPONENT_GRID)))
  options = solver_lib.SolverOptions(loss="mse", max_steps=int(max_steps))
  with fitting.precision("float64"):
    exponents, coefficients, objective, objectives_S, jacobian = _search(
        jnp.asarray(starts), jnp.log(jnp.asarray(runs.N)), jnp.log(jnp.asarray(runs.D)), jnp.asarray(runs.loss),
        jnp.asarray(runs.weight), options=options,
    )
  objective = float(objective)
  objectives_S = np.asarray(objectives_S)
  J = np.asarray(jacobian) * np.sqrt(runs.weight)[:, None]
  E, A, B = (float(c) for c in np.asarray(coefficients))
  return {
      "params": {"E": E, "A": A, "B": B, "alpha": float(exponents[0]), "beta": float(exponents[1])},
      "objective": objective,
      "starts": int(len(starts)),
      "starts_reached_best": int(np.sum(objectives_S <= objective * (1 + fitting.SAME_OPTIMUM_RTOL) + fitting.SAME_OPTIMUM_ATOL)),
      "condition_number": float(np.linalg.cond(J.T @ J)),
  }
