"""Minimising a smooth objective with any Optax optimiser, one problem at a time (vmap for many).

The objectives that are not least squares (a likelihood with a fitted noise
scale, Student-t, an asymmetric penalty, a user function) are minimised here by
an ``optax.GradientTransformation``: ``optax.lbfgs()`` by default, whose zoom
line search makes it a true quasi-Newton method, or any first-order optimiser
(``optax.adam(1e-2)``). As in :mod:`jaxscale.solver` every iteration does the
same work for every member of a batch (one optimiser update, whose line search
has a fixed cap on its evaluations), and a problem stops after ``patience``
steps without relative progress ``ftol``; under ``vmap`` the batch runs until
its slowest member stops, the others frozen.

Example:
  >>> import jax.numpy as jnp, optax
  >>> from jaxscale import optax_solver
  >>> state = optax_solver.minimize(lambda x: jnp.sum((x - 3.0) ** 2), jnp.zeros(2), optax.lbfgs())
  >>> state.theta.round(6).tolist()
  [3.0, 3.0]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

MAX_STEPS = 500
FTOL = 1e-15
PATIENCE = 10


class OptaxState(NamedTuple):
  theta: jax.Array  # shape=(P,)
  objective: jax.Array  # shape=()
  optimizer_state: Any
  stalled: jax.Array  # shape=(), int32: consecutive steps without progress
  steps: jax.Array  # shape=(), int32


def check_optimizer(optimizer: Any) -> optax.GradientTransformationExtraArgs:
  """``optimizer`` wrapped to accept ``value``/``grad``/``value_fn``; a clear error when it is not Optax's."""
  if not isinstance(optimizer, optax.GradientTransformation):
    raise ValueError(
        f"optimizer must be an optax.GradientTransformation (e.g. optax.lbfgs() or optax.adam(1e-2)), got "
        f"{type(optimizer).__name__}"
    )
  return optax.with_extra_args_support(optimizer)


def _finite(value):
  return jnp.where(jnp.isfinite(value), value, jnp.inf)


def minimize(
    value_fn: Callable[[jax.Array], jax.Array],
    theta0: jax.Array,
    optimizer: optax.GradientTransformation,
    *,
    max_steps: int = MAX_STEPS,
    ftol: float = FTOL,
    patience: int = PATIENCE,
) -> OptaxState:
  """Minimises ``value_fn`` from ``theta0`` with ``optimizer``; keeps the best point seen.

  Args:
    value_fn: pure ``theta_P -> scalar``.
    theta0: the start, shape ``(P,)``.
    optimizer: an ``optax.GradientTransformation`` (checked by the caller with
      :func:`check_optimizer`; static under jit).
    max_steps: iteration cap.
    ftol, patience: stop after ``patience`` steps in a row that improve the
      best value by less than ``ftol`` relative.

  Returns:
    The final :class:`OptaxState`; ``theta`` is the best point visited.
  """
  optimizer = optax.with_extra_args_support(optimizer)
  if optax.tree.get(optimizer.init(theta0), "value") is not None:
    # A line-search optimiser (L-BFGS) keeps the value and gradient at its accepted point: reuse them.
    value_and_grad = optax.value_and_grad_from_state(value_fn)
  else:  # a first-order optimiser (adam, sgd) stores neither
    plain = jax.value_and_grad(value_fn)
    value_and_grad = lambda theta, state: plain(theta)  # noqa: E731
  tiny = jnp.finfo(theta0.dtype).tiny

  class Carry(NamedTuple):
    current: jax.Array
    best: OptaxState

  def step(carry: Carry) -> Carry:
    best = carry.best
    value, grad = value_and_grad(carry.current, state=best.optimizer_state)
    grad = jnp.where(jnp.isfinite(grad), grad, 0.0)
    updates, optimizer_state = optimizer.update(
        grad, best.optimizer_state, carry.current, value=value, grad=grad, value_fn=value_fn
    )
    candidate = optax.apply_updates(carry.current, updates)
    ok = jnp.all(jnp.isfinite(candidate))
    candidate = jnp.where(ok, candidate, carry.current)
    candidate_value = _finite(value_fn(candidate))
    better = candidate_value < best.objective
    improvement = jnp.where(better, best.objective - candidate_value, 0.0)
    small = (improvement <= ftol * jnp.maximum(jnp.abs(best.objective), tiny)) | ~ok
    return Carry(
        current=candidate,
        best=OptaxState(
            theta=jnp.where(better, candidate, best.theta),
            objective=jnp.where(better, candidate_value, best.objective),
            optimizer_state=optimizer_state,
            stalled=jnp.where(small, best.stalled + 1, 0),
            steps=best.steps + 1,
        ),
    )

  def keep_going(carry: Carry):
    return (carry.best.steps < max_steps) & (carry.best.stalled < patience)

  init = OptaxState(
      theta=theta0,
      objective=_finite(value_fn(theta0)),
      optimizer_state=optimizer.init(theta0),
      stalled=jnp.asarray(0, jnp.int32),
      steps=jnp.asarray(0, jnp.int32),
  )
  return jax.lax.while_loop(keep_going, step, Carry(theta0, init)).best
