"""Validation by extrapolation: fit on small budgets, predict the largest ones.

A law that fits its runs well can still extrapolate badly, and extrapolation is
what scaling laws are for. :func:`validate` holds out whole compute budgets,
fits the law to the others and measures how well it predicts the held-out
losses. It is the rollout backtest of :mod:`jaxscale.compare` for one law (one
mechanism, not two): each fold is only a weight vector over the same runs (0
for held-out runs), so the multi-start fit of every fold is one compiled
program, :func:`jaxscale.estimation.fit_weights`, under any objective.

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
from collections.abc import Mapping
from typing import Any

from jaxscale import compare, estimation, fitting, isoflop
from jaxscale import laws as laws_lib

DEFAULT_HOLDOUT = 3
TRAIN_ON = compare.TRAIN_ON
Fold = compare.Fold  # one held-out budget: errors, 95% prediction-interval coverage, the fold's parameters
# Every fold is a weight vector: the one batched multi-start search fits them all (and its cache is what
# a repeated validation of same-shaped runs reuses).
fit_folds = estimation.fit_weights


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
    coverage: held-out runs inside their fold's 95% prediction interval, pooled.
    objective: the objective the folds were fitted under.
  """

  law: str
  train_on: str
  folds: list[Fold]
  relative_error: float
  mean_absolute_error: float
  band: tuple[float, float]
  coverage: float = float("nan")
  objective: str = "huber_log"

  def to_dict(self) -> dict[str, Any]:
    out = dataclasses.asdict(self)
    out["format"] = "jaxscale.validation"
    return out


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
    **objective_options: Any,
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
    **objective_options: ``objective=``, ``solver=``, ``fixed=``, ``bounds=``, ...
      of :func:`jaxscale.estimation.fit` (``objective`` overrides ``loss``).

  Returns:
    A :class:`ValidationResult`.

  Example:
    >>> validate("chinchilla", "runs.csv", holdout=2).band  # doctest: +SKIP
  """
  if train_on not in TRAIN_ON:
    raise ValueError(f"train_on must be one of {TRAIN_ON}, got {train_on!r}")
  if loss not in ("huber", "mse"):
    raise ValueError(f"unknown loss {loss!r}; use 'huber' or 'mse'")
  objective_options.setdefault("objective", {"huber": "huber_log", "mse": "mse_log"}[loss])
  result = compare.backtest(
      law, runs, holdout=holdout, train_on=train_on, min_runs=min_runs, tolerance=tolerance, keep=keep, dtype=dtype,
      columns=columns, delta=delta, max_steps=max_steps if max_steps != 300 else None, **objective_options,
  )
  relative = [fold.relative_error for fold in result.folds]
  return ValidationResult(
      law=result.law,
      train_on=train_on,
      folds=result.folds,
      relative_error=float(sum(relative) / len(relative)),
      mean_absolute_error=float(sum(f.mean_absolute_error for f in result.folds) / len(result.folds)),
      band=(float(min(relative)), float(max(relative))),
      coverage=result.coverage,
      objective=result.objective,
  )
