"""Validation by extrapolation: fit on small budgets, predict the largest ones.

A law that fits its runs well can still extrapolate badly, and extrapolation is
what scaling laws are for. :func:`validate` holds out whole compute budgets,
fits the law to the others and measures how well it predicts the held-out
losses. Each fold is only a weight vector over the same runs (0 for held-out
runs), so the multi-start fit of every fold is one compiled program:
:func:`jaxscale.fitting.multistart` ``vmap``-ed over the folds' weights.

Folds: the ``holdout`` largest budgets (of those with at least ``min_runs``
runs) are held out one at a time. With
``train_on="smaller"`` (default) each is predicted from the budgets below it
only, so every fold is a genuine extrapolation in compute; ``train_on="rest"``
is leave-one-budget-out (the other budgets, larger ones included).

The band is the spread of the per-fold errors (min to max), not a bootstrap:
a bootstrap of every fold multiplies the cost by the number of replicates and
mostly measures the same thing, the sensitivity of the fit to which runs it
sees, which the folds already vary.

Budgets are the ``group`` column or clusters of ``log C`` as in
:func:`jaxscale.isoflop.assign_budgets`.

Example:
  >>> from jaxscale import validation
  >>> report = validation.validate("chinchilla", "runs.csv", holdout=3)  # doctest: +SKIP
  >>> report.relative_error, report.band  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxscale import fitting, isoflop, solver
from jaxscale import laws as laws_lib
from jaxscale import runs as runs_lib

DEFAULT_HOLDOUT = 3
TRAIN_ON = ("smaller", "rest")


@dataclasses.dataclass(frozen=True)
class Fold:
  """One held-out budget and how well the law fitted to the others predicts it."""

  label: str
  C: float
  train_runs: int
  test_runs: int
  mean_absolute_error: float  # mean |predicted - observed| loss on the held-out runs
  relative_error: float  # mean |predicted - observed| / observed
  bias: float  # mean (predicted - observed) / observed: > 0 means the law predicts too high
  max_relative_error: float
  converged: bool
  params: dict[str, float]


@dataclasses.dataclass(frozen=True)
class ValidationResult:
  """Per-fold extrapolation errors and their summary.

  Attributes:
    law: the law's name.
    train_on: ``"smaller"`` or ``"rest"``.
    folds: one :class:`Fold` per held-out budget, by increasing compute.
    relative_error: mean over folds of the folds' mean relative error.
    mean_absolute_error: mean over folds of the folds' mean absolute error.
    band: ``(min, max)`` of the folds' relative errors.
  """

  law: str
  train_on: str
  folds: list[Fold]
  relative_error: float
  mean_absolute_error: float
  band: tuple[float, float]

  def to_dict(self) -> dict[str, Any]:
    out = dataclasses.asdict(self)
    out["format"] = "jaxscale.validation"
    return out


@functools.partial(jax.jit, static_argnames=("law", "options", "keep"))
def fit_folds(law, starts_SxP, log_inputs, log_loss_R, weights_FxR, *, options: solver.SolverOptions, keep: int):
  """Multi-start fits of every fold at once: ``(best theta_FxP, objective_F, gradient_norm_F)``."""

  def one(weights_R):
    states, gradient_norms = fitting.multistart(law, starts_SxP, log_inputs, log_loss_R, weights_R, options=options, keep=keep)
    objective = jnp.where(jnp.isfinite(states.objective), states.objective, jnp.inf)
    best = jnp.argmin(objective)
    return states.theta[best], objective[best], gradient_norms[best]

  return jax.vmap(one)(weights_FxR)


def validate(
    law: str | laws_lib.Law,
    runs: Any,
    *,
    holdout: int | None = DEFAULT_HOLDOUT,
    train_on: str = "smaller",
    min_runs: int = 3,
    tolerance: float = isoflop.DEFAULT_TOLERANCE,
    loss: str = "huber",
    delta: float = 1e-3,
    keep: int | None = fitting.DEFAULT_KEEP,
    max_steps: int = 300,
    dtype: str = "float64",
    columns: Mapping[str, str] | None = None,
) -> ValidationResult:
  """Holds out the largest compute budgets and measures the law's extrapolation error.

  Args:
    law: law name or object.
    runs: a path, DataFrame, dict or RunSet with a ``group`` column or
      budgets recognisable from C.
    holdout: how many of the largest budgets to hold out, one per fold;
      ``None`` holds out every budget that has training data.
    train_on: ``"smaller"`` fits each fold on the budgets below the held-out
      one; ``"rest"`` on all the others.
    min_runs: budgets with fewer runs are never held out (they still train).
    tolerance: budget clustering gap in dex of C (without ``group``).
    loss, delta, keep, max_steps, dtype: as in :func:`jaxscale.fitting.fit`.
    columns: column mapping when ``runs`` is a path.

  Returns:
    A :class:`ValidationResult`.

  Example:
    >>> validate("chinchilla", "runs.csv", holdout=2).band  # doctest: +SKIP
  """
  law = laws_lib.get(law)
  runs = runs_lib.load(runs, columns=columns)
  if train_on not in TRAIN_ON:
    raise ValueError(f"train_on must be one of {TRAIN_ON}, got {train_on!r}")
  if loss not in ("huber", "mse"):
    raise ValueError(f"unknown loss {loss!r}; use 'huber' or 'mse'")
  runs_lib.check_for_law(runs, law)
  index_R, labels, C_B = isoflop.assign_budgets(runs, tolerance)
  count = len(labels)
  if count < 2:
    raise ValueError(
        f"{runs.source}: all runs share one compute budget ({labels[0]}), so there is nothing to extrapolate to; "
        "validation needs runs at 2 or more budgets (a 'group' column or distinct C)"
    )
  weight_R = runs.weight
  sizes_B = np.bincount(index_R[weight_R > 0], minlength=count)
  # A budget of one or two runs (a stray point in digitised data) is no test of anything.
  candidates = [b for b in range(count) if sizes_B[b] >= min_runs and (train_on == "rest" or b > 0)]
  if holdout is None:
    holdout = len(candidates)
  if not 1 <= holdout <= len(candidates):
    raise ValueError(
        f"holdout must be between 1 and {len(candidates)}: the runs have {count} compute budgets, "
        f"{len(candidates)} of them with >= {min_runs} runs"
        f"{' and a smaller budget to train on' if train_on == 'smaller' else ''}; got {holdout}"
    )
  held = candidates[len(candidates) - holdout :]
  test_FxR = np.stack([index_R == b for b in held]) & (weight_R > 0)
  if train_on == "smaller":
    train_FxR = np.stack([index_R < b for b in held])
  else:
    train_FxR = np.stack([index_R != b for b in held])
  weights_FxR = np.where(train_FxR, weight_R[None], 0.0)
  for f, b in enumerate(held):
    used = int(np.count_nonzero(weights_FxR[f] > 0))
    if used <= law.num_params:
      raise ValueError(
          f"holding out budget {labels[b]} leaves {used} training runs for law {law.name!r} with {law.num_params} "
          f"parameters; lower holdout (now {holdout}) or add runs at smaller budgets"
      )

  options = solver.SolverOptions(loss=loss, delta=float(delta), max_steps=int(max_steps))
  with fitting.precision(dtype) as float_dtype:
    log_inputs, log_loss_R, _ = fitting.prepare(law, runs, float_dtype)
    # Starts come from the law's grid over all runs; only where the fit begins, never what it sees.
    starts_SxP = law.starts(log_inputs)
    kept = starts_SxP.shape[0] if keep is None else max(1, min(int(keep), starts_SxP.shape[0]))
    theta_FxP, objective_F, gradient_F = fit_folds(
        law, jnp.asarray(starts_SxP, float_dtype), log_inputs, log_loss_R, jnp.asarray(weights_FxR, float_dtype),
        options=options, keep=kept,
    )
    predicted_FxR = np.asarray(jnp.exp(jax.vmap(lambda t: law.log_loss(law.unflatten(t), log_inputs))(theta_FxP)))
    naturals = [
        {k: float(v) for k, v in law.to_natural(law.unflatten(jnp.asarray(t))).items()} for t in np.asarray(theta_FxP)
    ]
  observed_R = runs.loss
  objective_F, gradient_F = np.asarray(objective_F, np.float64), np.asarray(gradient_F, np.float64)
  folds = []
  for f, b in enumerate(held):
    test = test_FxR[f]
    error = predicted_FxR[f, test] - observed_R[test]
    relative = error / observed_R[test]
    folds.append(
        Fold(
            label=labels[b],
            C=float(C_B[b]),
            train_runs=int(np.count_nonzero(weights_FxR[f] > 0)),
            test_runs=int(np.count_nonzero(test)),
            mean_absolute_error=float(np.mean(np.abs(error))),
            relative_error=float(np.mean(np.abs(relative))),
            bias=float(np.mean(relative)),
            max_relative_error=float(np.max(np.abs(relative))),
            converged=bool(
                np.isfinite(objective_F[f])
                and gradient_F[f] <= fitting.GRADIENT_TOLERANCE[dtype] * (1.0 + abs(objective_F[f]))
            ),
            params=naturals[f],
        )
    )
  relative = np.array([fold.relative_error for fold in folds])
  return ValidationResult(
      law=law.name,
      train_on=train_on,
      folds=folds,
      relative_error=float(relative.mean()),
      mean_absolute_error=float(np.mean([fold.mean_absolute_error for fold in folds])),
      band=(float(relative.min()), float(relative.max())),
  )
