"""Comparing laws by a rollout backtest over compute, with interval coverage and an information criterion.

A rollout backtest asks what a scaling law is for: fitted on the budgets up to
``C_k``, how well does it predict the runs of the next budget? The runs are
grouped into compute budgets (the ``group`` column, or clusters of ``log C`` as
in :func:`jaxscale.isoflop.assign_budgets`); each fold is an expanding window,
trained on every budget below the held-out one. A fold is only a weight vector
over the same runs, so all folds of a law are one compiled multi-start search
(:func:`jaxscale.estimation.fit_weights`), whatever the objective.

For each law :func:`compare` reports, over the folds:

* the extrapolation error of the predicted loss on the held-out runs (mean
  relative error, bias);
* the coverage of 95% prediction intervals for those runs, from each fold's own
  fit (delta method plus the fold's residual noise): an honest law's intervals
  cover about 95% of the next budget's runs;
* AIC and BIC of the full-data fit under Gaussian noise on log loss
  (``R log(SSE / R) + 2k`` and ``+ k log R``, ``k`` the free parameters plus
  the noise scale), a penalised in-sample check beside the out-of-sample one.

Laws are ranked by the backtest's mean relative error. :func:`backtest` is also
what :func:`jaxscale.validation.validate` runs (one mechanism, not two).

Example:
  >>> from jaxscale import compare
  >>> result = compare.compare(["chinchilla", "kaplan_joint"], "runs.csv")  # doctest: +SKIP
  >>> result.winner, result.margin  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from jaxscale import estimation, fitting, isoflop
from jaxscale import laws as laws_lib
from jaxscale import objectives as objectives_lib
from jaxscale import runs as runs_lib

TRAIN_ON = ("smaller", "rest")
LEVEL = 0.95


@dataclasses.dataclass(frozen=True)
class Folds:
  """Held-out budgets as weight vectors over the runs.

  Attributes:
    labels: the held-out budgets' labels, by increasing compute.
    C: their compute.
    train_FxR: training weights of each fold (the runs' weights, 0 outside the window).
    test_FxR: which runs each fold predicts.
  """

  labels: list[str]
  C: np.ndarray
  train_FxR: np.ndarray
  test_FxR: np.ndarray


def rollout_folds(
    runs: runs_lib.RunSet,
    *,
    num_params: int,
    holdout: int | None = None,
    train_on: str = "smaller",
    min_runs: int = 3,
    tolerance: float = isoflop.DEFAULT_TOLERANCE,
    law_name: str = "the law",
) -> Folds:
  """The folds of a backtest: each of the ``holdout`` largest budgets held out in turn.

  Args:
    runs: the run set.
    num_params: the most parameters any law to be fitted has (each fold must train more runs).
    holdout: how many of the largest eligible budgets to hold out; None: all.
    train_on: ``"smaller"`` (expanding window: the budgets below) or ``"rest"`` (all others).
    min_runs: budgets with fewer runs are never held out (they still train).
    tolerance: budget clustering gap in dex of C (without ``group``).
    law_name: named in the error when a fold trains too few runs.
  """
  if train_on not in TRAIN_ON:
    raise ValueError(f"train_on must be one of {TRAIN_ON}, got {train_on!r}")
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
    if used <= num_params:
      raise ValueError(
          f"holding out budget {labels[b]} leaves {used} training runs for {law_name} with {num_params} "
          f"parameters; lower holdout (now {holdout}) or add runs at smaller budgets"
      )
  return Folds([labels[b] for b in held], np.asarray([C_B[b] for b in held], np.float64), weights_FxR, test_FxR)


@dataclasses.dataclass(frozen=True)
class Fold:
  """One held-out budget and how well the law fitted to the budgets before it predicts it."""

  label: str
  C: float
  train_runs: int
  test_runs: int
  mean_absolute_error: float  # mean |predicted - observed| loss on the held-out runs
  relative_error: float  # mean |predicted - observed| / observed
  bias: float  # mean (predicted - observed) / observed: > 0 means the law predicts too high
  max_relative_error: float
  coverage: float  # fraction of held-out runs inside the fold fit's 95% prediction interval
  converged: bool
  params: dict[str, float]


@dataclasses.dataclass(frozen=True)
class Backtest:
  """A law's rollout backtest: per-fold results and the held-out predictions."""

  law: str
  objective: str
  train_on: str
  folds: list[Fold]
  predicted_FxR: np.ndarray
  low_FxR: np.ndarray
  high_FxR: np.ndarray
  test_FxR: np.ndarray

  @property
  def relative_error(self) -> float:
    return float(np.mean([f.relative_error for f in self.folds]))

  @property
  def coverage(self) -> float:
    """Held-out runs inside their 95% prediction interval, pooled over folds."""
    inside = sum(f.coverage * f.test_runs for f in self.folds)
    return float(inside / max(sum(f.test_runs for f in self.folds), 1))


@functools.partial(jax.jit, static_argnames=("law", "space"))
def _fold_predictions(law, theta_FxP, log_inputs, log_loss_R, weights_FxR, free_P, tail_F, *, space):
  """Per fold: predictions at every run and the half-width of the prediction interval, shape ``(F, R)`` each."""

  def center(theta):
    log_loss = law.log_loss(law.unflatten(theta), log_inputs)
    return jnp.exp(log_loss) if space == "raw" else log_loss

  observed_R = jnp.exp(log_loss_R) if space == "raw" else log_loss_R

  def one(theta, weights_R, tail):
    predicted_R = center(theta)
    jacobian_RxP = jax.jacfwd(center)(theta) * free_P[None]
    residuals_R = predicted_R - observed_R
    used = jnp.sum(weights_R > 0)
    scale_R = weights_R / (jnp.sum(weights_R) / used)
    sigma2 = jnp.sum(scale_R * residuals_R**2) / (used - jnp.sum(free_P))
    normal = (jacobian_RxP * scale_R[:, None]).T @ jacobian_RxP
    covariance = sigma2 * jnp.linalg.pinv(normal, hermitian=True)
    variance_R = jnp.einsum("rp,pk,rk->r", jacobian_RxP, covariance, jacobian_RxP) + sigma2
    return predicted_R, tail * jnp.sqrt(jnp.maximum(variance_R, 0.0))

  return jax.vmap(one)(theta_FxP, weights_FxR, tail_F)


def backtest(
    law: str | laws_lib.Law,
    runs: Any,
    *,
    folds: Folds | None = None,
    holdout: int | None = None,
    train_on: str = "smaller",
    min_runs: int = 3,
    tolerance: float = isoflop.DEFAULT_TOLERANCE,
    keep: int | None = fitting.DEFAULT_KEEP,
    dtype: str = "float64",
    columns: Mapping[str, str] | None = None,
    full_fit: bool = False,
    **objective_options: Any,
) -> Backtest | tuple[Backtest, fitting.FitResult]:
  """The rollout backtest of one law: every fold fitted by one compiled search.

  Args:
    law: law name or object.
    runs: a path, DataFrame, dict or RunSet with budgets (``group`` or C).
    folds: precomputed :class:`Folds` (as :func:`compare` shares them); else
      built from ``holdout``, ``train_on``, ``min_runs`` and ``tolerance`` (see :func:`rollout_folds`).
    keep, dtype: as in :func:`jaxscale.estimation.fit`.
    columns: column mapping when ``runs`` is a path.
    full_fit: also fit all the runs, in the same compiled batch as the folds.
    **objective_options: ``objective``, ``solver``, ``optimizer``, ``fixed``,
      ``bounds``, ``delta``, ``max_steps`` of :func:`jaxscale.estimation.fit`.

  Returns:
    A :class:`Backtest`, or ``(Backtest, FitResult)`` with ``full_fit=True``.
  """
  seed_weights = objective_options.pop("seed_weights", False)
  problem = estimation.problem_for(law, **objective_options)
  law = problem.law
  runs = runs_lib.load(runs, columns=columns)
  runs_lib.check_for_law(runs, law)
  if seed_weights:
    runs = objectives_lib.seed_weights(runs, space=problem.objective.space)
  if folds is None:
    folds = rollout_folds(runs, num_params=law.num_params, holdout=holdout, train_on=train_on, min_runs=min_runs,
                          tolerance=tolerance, law_name=f"law {law.name!r}")
  with fitting.precision(dtype) as float_dtype:
    log_inputs, log_loss_R, _ = fitting.prepare(law, runs, float_dtype)
    # Starts come from the law's grid over all runs; only where the fit begins, never what it sees.
    starts_SxF = problem.parameters.starts(law.starts(log_inputs))
    kept = starts_SxF.shape[0] if keep is None else max(1, min(int(keep), starts_SxF.shape[0]))
    weights_FxR = jnp.asarray(folds.train_FxR, float_dtype)
    # The full-data fit rides along as one more weight vector: one compiled search, not two.
    batch = jnp.concatenate([weights_FxR, jnp.asarray(runs.weight, float_dtype)[None]]) if full_fit else weights_FxR
    solution = estimation.fit_weights(problem, jnp.asarray(starts_SxF, float_dtype), log_inputs, log_loss_R, batch, keep=kept)
    if full_fit:
      last = jax.tree.map(lambda x: np.asarray(x[-1]), solution)
      full = estimation.result(
          problem, runs, np.asarray(problem.theta(jnp.asarray(last.z)), np.float64),
          {k: float(v) for k, v in problem.extra(jnp.asarray(last.z)).items()}, last, starts=starts_SxF.shape[0],
          kept=kept, dtype=dtype,
      )
      solution = jax.tree.map(lambda x: x[:-1], solution)
    theta_FxP = problem.theta(solution.z)
    free_P = np.zeros(law.num_params)
    free_P[list(problem.parameters.free)] = 1.0
    used_F = np.count_nonzero(folds.train_FxR > 0, axis=1)
    tail_F = stats.t.ppf(0.5 * (1 + LEVEL), np.maximum(used_F - problem.parameters.num_free, 1))
    center_FxR, half_FxR = _fold_predictions(
        law, theta_FxP, log_inputs, log_loss_R, weights_FxR, jnp.asarray(free_P, float_dtype),
        jnp.asarray(tail_F, float_dtype), space=problem.objective.space,
    )
    center_FxR, half_FxR = np.asarray(center_FxR, np.float64), np.asarray(half_FxR, np.float64)
    theta_FxP = np.asarray(theta_FxP, np.float64)
    naturals = [{k: float(v) for k, v in law.to_natural(law.unflatten(jnp.asarray(t))).items()} for t in theta_FxP]
  if problem.objective.space == "raw":
    predicted_FxR, low_FxR, high_FxR = center_FxR, center_FxR - half_FxR, center_FxR + half_FxR
  else:
    # A fold whose fit ran off (a broken power law past its break) predicts an overflowing loss: inf error, honestly.
    with np.errstate(over="ignore"):
      predicted_FxR, low_FxR, high_FxR = np.exp(center_FxR), np.exp(center_FxR - half_FxR), np.exp(center_FxR + half_FxR)
  objective_F = np.asarray(solution.objective, np.float64)
  gradient_F = np.asarray(solution.gradient_norm, np.float64)
  observed_R = runs.loss
  out = []
  for f, label in enumerate(folds.labels):
    test = folds.test_FxR[f]
    error = predicted_FxR[f, test] - observed_R[test]
    relative = error / observed_R[test]
    inside = (low_FxR[f, test] <= observed_R[test]) & (observed_R[test] <= high_FxR[f, test])
    out.append(Fold(
        label=label,
        C=float(folds.C[f]),
        train_runs=int(np.count_nonzero(folds.train_FxR[f] > 0)),
        test_runs=int(np.count_nonzero(test)),
        mean_absolute_error=float(np.mean(np.abs(error))),
        relative_error=float(np.mean(np.abs(relative))),
        bias=float(np.mean(relative)),
        max_relative_error=float(np.max(np.abs(relative))),
        coverage=float(np.mean(inside)),
        converged=bool(np.isfinite(objective_F[f])
                       and gradient_F[f] <= fitting.GRADIENT_TOLERANCE[dtype] * (1.0 + abs(objective_F[f]))),
        params=naturals[f],
    ))
  result = Backtest(law.name, problem.objective.name, train_on, out, predicted_FxR, low_FxR, high_FxR, folds.test_FxR)
  return (result, full) if full_fit else result


# --- Comparing laws --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LawScore:
  """One law's backtest and information criteria."""

  law: str
  parameters: int  # free parameters of the law (the noise scale not counted)
  relative_error: float
  coverage: float
  aic: float
  bic: float
  params: dict[str, float]
  backtest: Backtest


@dataclasses.dataclass(frozen=True)
class Comparison:
  """Laws ranked by their backtest's mean relative error (best first).

  Attributes:
    scores: one :class:`LawScore` per law, best first.
    folds: the held-out budgets' labels (shared by every law).
    objective: the objective every law was fitted under.
  """

  scores: list[LawScore]
  folds: list[str]
  objective: str

  @property
  def winner(self) -> str:
    return self.scores[0].law

  @property
  def margin(self) -> float:
    """How many times larger the runner-up's backtest error is than the winner's."""
    if len(self.scores) < 2:
      return math.nan
    return self.scores[1].relative_error / max(self.scores[0].relative_error, 1e-300)

  def to_dict(self) -> dict[str, Any]:
    return {
        "format": "jaxscale.compare",
        "objective": self.objective,
        "folds": self.folds,
        "winner": self.winner,
        "margin": self.margin,
        "laws": [
            {"law": s.law, "parameters": s.parameters, "relative_error": s.relative_error, "coverage95": s.coverage,
             "aic": s.aic, "bic": s.bic, "params": s.params,
             "folds": [dataclasses.asdict(f) for f in s.backtest.folds]}
            for s in self.scores
        ],
    }


def information_criteria(fit: fitting.FitResult, runs: runs_lib.RunSet) -> tuple[float, float]:
  """``(AIC, BIC)`` of a fit under Gaussian noise on log loss, the noise scale counted as a parameter."""
  law = fit.law_object
  used = runs.weight > 0
  predicted = fit.predict(**{v: runs.column(v)[used] for v in law.variables})
  residuals = np.log(predicted) - np.log(runs.loss[used])
  count = int(np.count_nonzero(used))
  k = law.num_params - len(fit.extras.get("objective", {}).get("fixed", {})) + 1
  fit_term = count * math.log(max(float(np.mean(residuals**2)), 1e-300))
  return fit_term + 2 * k, fit_term + k * math.log(count)


def compare(
    laws: Sequence[str | laws_lib.Law],
    runs: Any,
    *,
    holdout: int | None = None,
    min_runs: int = 3,
    tolerance: float = isoflop.DEFAULT_TOLERANCE,
    keep: int | None = fitting.DEFAULT_KEEP,
    dtype: str = "float64",
    columns: Mapping[str, str] | None = None,
    **objective_options: Any,
) -> Comparison:
  """Fits each law, backtests it on the same expanding-window folds, and ranks the laws.

  Args:
    laws: law names or objects (at least one).
    runs: a run set with compute budgets.
    holdout: how many of the largest budgets to hold out (None: every budget after the first eligible).
    min_runs, tolerance: as in :func:`rollout_folds`.
    keep, dtype, columns, **objective_options: as in :func:`backtest`.

  Returns:
    A :class:`Comparison`.
  """
  if isinstance(laws, str):
    laws = [name.strip() for name in laws.split(",") if name.strip()]
  if not laws:
    raise ValueError("give at least one law to compare, e.g. --laws chinchilla,kaplan_joint")
  law_objects = [laws_lib.get(law) for law in laws]
  runs = runs_lib.load(runs, columns=columns)
  if objective_options.pop("seed_weights", False):
    runs = objectives_lib.seed_weights(runs, space=estimation.problem_for(law_objects[0], **objective_options).objective.space)
  for law in law_objects:
    runs_lib.check_for_law(runs, law)
  most = max(law.num_params for law in law_objects)
  widest = max(law_objects, key=lambda law: law.num_params)
  folds = rollout_folds(runs, num_params=most, holdout=holdout, min_runs=min_runs, tolerance=tolerance,
                        law_name=f"law {widest.name!r}")
  scores = []
  objective_name = None
  for law in law_objects:
    result, full = backtest(law, runs, folds=folds, keep=keep, dtype=dtype, full_fit=True, **objective_options)
    objective_name = result.objective
    aic, bic = information_criteria(full, runs)
    free = law.num_params - len(full.extras["objective"]["fixed"])
    scores.append(LawScore(law.name, free, result.relative_error, result.coverage, aic, bic, full.params, result))
  scores.sort(key=lambda s: (not math.isfinite(s.relative_error), s.relative_error))
  return Comparison(scores, folds.labels, objective_name)


def plot(comparison: Comparison, path: str | None = None):
  """Backtest error per held-out budget for each law, and each law's AIC relative to the best.

  Returns:
    The matplotlib figure (saved to ``path`` when given).
  """
  import matplotlib

  matplotlib.use("Agg", force=False)
  import matplotlib.pyplot as plt

  figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4), gridspec_kw={"width_ratios": [2, 1]})
  for score in comparison.scores:
    folds = score.backtest.folds
    left.plot([f.C for f in folds], [100 * f.relative_error for f in folds], marker="o",
              label=f"{score.law} ({100 * score.relative_error:.2f}%, cover {100 * score.coverage:.0f}%)")
  left.set_xscale("log")
  left.set_xlabel("held-out compute budget C (FLOPs), fitted on the budgets below")
  left.set_ylabel("mean relative error of predicted loss (%)")
  left.set_title(f"rollout backtest ({comparison.objective})")
  left.legend(fontsize=8)
  best = min(s.aic for s in comparison.scores)
  names = [s.law for s in comparison.scores]
  right.barh(names, [s.aic - best for s in comparison.scores])
  right.invert_yaxis()
  right.set_xlabel("AIC - best AIC (Gaussian on log loss)")
  right.set_title("information criterion")
  figure.tight_layout()
  if path is not None:
    figure.savefig(path, dpi=110)
  return figure
