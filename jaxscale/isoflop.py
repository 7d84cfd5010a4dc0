"""IsoFLOP analysis: compute-optimal model size from Chinchilla's Approaches 1 and 2.

Approach 2 (Hoffmann et al. 2022, Sec. 3.2): runs are grouped by compute
budget; at each budget a parabola in ``log N`` is fitted to the final losses,
its minimum is the compute-optimal size ``N_opt(C)``, and straight lines in
log-log give ``N_opt = k C^a`` and ``D_opt = k' C^b``. All budgets (and all
bootstrap replicates of them) are solved at once as a batch of 3x3 weighted
normal equations: a replicate is just a weight vector over the same runs.

Approach 1 (Sec. 3.1): from loss curves (several points per run), the lowest
loss reached at each compute value across runs (the envelope) names the
optimal ``(N, D)`` at that compute; power laws are fitted to those.

Budgets: the ``group`` column when present; otherwise runs are clustered by
``log10 C`` with single linkage (sorted values join a budget while the gap to
the previous one is at most ``tolerance`` dex, default 0.02, i.e. ~5%), which
keeps digitised budgets together (Chinchilla's "6e18" runs span 5.1e18 to
5.8e18) while splitting distinct budgets. Budgets with fewer than
``min_sizes`` distinct model sizes, or whose parabola opens downwards, are
skipped with a warning.

Example:
  >>> from jaxscale import isoflop
  >>> result = isoflop.approach2("runs.csv", bootstrap=1000, seed=0)  # doctest: +SKIP
  >>> result.N_opt.exponent, result.N_opt.exponent_ci95  # doctest: +SKIP
  (0.49, (0.47, 0.52))

References:
  Hoffmann et al. 2022, "Training Compute-Optimal Large Language Models".
  Besiroglu et al. 2024, "Chinchilla Scaling: A replication attempt".
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from jaxscale import runs as runs_lib

DEFAULT_TOLERANCE = 0.02  # dex of C within which neighbouring runs share a budget
MIN_SIZES = 3  # a parabola needs three distinct model sizes
DEFAULT_GRID = 200  # compute values of Approach 1's envelope


class IsoFLOPWarning(UserWarning):
  """A budget or grid point was skipped; the result is still usable."""


@dataclasses.dataclass(frozen=True)
class PowerLaw:
  """``y = coefficient * C^exponent`` fitted in log-log, with optional bootstrap CIs."""

  coefficient: float
  exponent: float
  exponent_ci95: tuple[float, float] | None = None
  exponent_se: float | None = None

  def __call__(self, C):
    return self.coefficient * np.asarray(C, dtype=np.float64) ** self.exponent


@dataclasses.dataclass(frozen=True)
class IsoFLOPResult:
  """Compute-optimal allocation from an IsoFLOP analysis.

  Attributes:
    approach: 1 (loss-curve envelope) or 2 (parabolas per budget).
    points: one dict per budget (Approach 2: ``label, C, runs, sizes, N_opt,
      D_opt, loss_opt, center, coefficients, interior``; the parabola is
      ``loss = c0 + c1 x + c2 x^2`` with ``x = log N - center``) or per
      envelope grid point (Approach 1: ``C, N_opt, D_opt, loss_opt, run_id``).
    N_opt: ``N_opt(C) = k C^a``.
    D_opt: ``D_opt(C) = k' C^b``.
    bootstrap: ``{"n", "seed", "valid"}`` when CIs were computed, else None.
    skipped: one message per budget or grid region left out.
  """

  approach: int
  points: list[dict[str, Any]]
  N_opt: PowerLaw
  D_opt: PowerLaw
  bootstrap: dict[str, Any] | None = None
  skipped: list[str] = dataclasses.field(default_factory=list)

  @property
  def a(self) -> float:
    return self.N_opt.exponent

  @property
  def b(self) -> float:
    return self.D_opt.exponent

  def to_dict(self) -> dict[str, Any]:
    out = dataclasses.asdict(self)
    out["format"] = "jaxscale.isoflop"
    return out


# --- Budgets ------------------------------------------------------------------------------


def assign_budgets(runs: runs_lib.RunSet, tolerance: float = DEFAULT_TOLERANCE) -> tuple[np.ndarray, list[str], np.ndarray]:
  """Labels each run with its compute budget.

  Args:
    runs: the run set.
    tolerance: with no ``group`` column, the largest gap in ``log10 C`` between
      sorted neighbours of one budget.

  Returns:
    ``(index_R, labels_B, C_B)``: each run's budget index, budget labels and
    budgets' compute (geometric mean of their runs' C), sorted by compute.
  """
  log_C = np.log(runs.C)
  if "group" in runs.frame.columns:
    raw = runs.frame["group"].astype(str).to_numpy()
    names, inverse = np.unique(raw, return_inverse=True)
  else:
    if tolerance <= 0:
      raise ValueError(f"tolerance must be > 0 dex, got {tolerance}")
    order = np.argsort(log_C, kind="stable")
    gaps = np.diff(log_C[order]) / math.log(10.0)
    sorted_index = np.concatenate([[0], np.cumsum(gaps > tolerance)])
    inverse = np.empty(len(runs), dtype=np.int64)
    inverse[order] = sorted_index
    names = None
  count = int(inverse.max()) + 1
  budget_log_C = np.bincount(inverse, weights=log_C, minlength=count) / np.bincount(inverse, minlength=count)
  rank = np.argsort(budget_log_C, kind="stable")
  new_index = np.empty(count, dtype=np.int64)
  new_index[rank] = np.arange(count)
  C_B = np.exp(budget_log_C[rank])
  labels = [str(names[i]) for i in rank] if names is not None else [f"C={c:.2e}" for c in C_B]
  return new_index[inverse], labels, C_B


def _pad_by_budget(index_R: np.ndarray, count: int) -> np.ndarray:
  """``slots_BxM``: run indices per budget, padded with -1."""
  members = [np.flatnonzero(index_R == b) for b in range(count)]
  width = max(len(m) for m in members)
  slots = np.full((count, width), -1, dtype=np.int64)
  for b, m in enumerate(members):
    slots[b, : len(m)] = m
  return slots


# --- Approach 2 ---------------------------------------------------------------------------


def fit_parabolas(x_BxM: np.ndarray, y_BxM: np.ndarray, weights_SxBxM: np.ndarray) -> np.ndarray:
  """Weighted least-squares parabolas ``y = c0 + c1 x + c2 x^2``, batched.

  Args:
    x_BxM, y_BxM: abscissae and values per budget (padding has weight 0).
    weights_SxBxM: weights per replicate ``S`` (use ``S = 1`` for a plain fit).

  Returns:
    ``coefficients_SxBx3``; NaN where a budget has fewer than three distinct
    abscissae of positive weight (the parabola is undetermined).
  """
  basis_BxMx3 = np.stack([np.ones_like(x_BxM), x_BxM, x_BxM**2], axis=-1)
  normal_SxBx3x3 = np.einsum("sbm,bmi,bmj->sbij", weights_SxBxM, basis_BxMx3, basis_BxMx3)
  rhs_SxBx3 = np.einsum("sbm,bmi,bm->sbi", weights_SxBxM, basis_BxMx3, y_BxM)
  # Distinct abscissae with weight: rank of the Vandermonde system, counted exactly.
  distinct_SxB = np.zeros(weights_SxBxM.shape[:2], dtype=np.int64)
  for b in range(x_BxM.shape[0]):
    values, inverse = np.unique(x_BxM[b], return_inverse=True)
    per_value = np.zeros((weights_SxBxM.shape[0], values.size))
    np.add.at(per_value, (slice(None), inverse), weights_SxBxM[:, b, :])
    distinct_SxB[:, b] = np.count_nonzero(per_value > 0, axis=1)
  solvable = distinct_SxB >= MIN_SIZES
  normal_SxBx3x3 = np.where(solvable[..., None, None], normal_SxBx3x3, np.eye(3))
  coefficients = np.linalg.solve(normal_SxBx3x3, rhs_SxBx3[..., None])[..., 0]
  return np.where(solvable[..., None], coefficients, np.nan)


def _line_slopes(x_SxB: np.ndarray, y_SxB: np.ndarray, mask_SxB: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Least-squares ``y = intercept + slope x`` per row over ``mask``; returns ``(slope_S, intercept_S)``."""
  m = np.ones_like(x_SxB) if mask_SxB is None else mask_SxB.astype(np.float64)
  x_SxB, y_SxB = np.where(m > 0, x_SxB, 0.0), np.where(m > 0, y_SxB, 0.0)
  count = m.sum(axis=-1, keepdims=True)
  x_mean = (m * x_SxB).sum(axis=-1, keepdims=True) / count
  y_mean = (m * y_SxB).sum(axis=-1, keepdims=True) / count
  slope = np.sum(m * (x_SxB - x_mean) * (y_SxB - y_mean), axis=-1) / np.sum(m * (x_SxB - x_mean) ** 2, axis=-1)
  return slope, y_mean[..., 0] - slope * x_mean[..., 0]


def _power_law(log_C_B, log_y_B, exponent_samples=None) -> PowerLaw:
  slope, intercept = _line_slopes(log_C_B[None], log_y_B[None])
  ci, se = None, None
  if exponent_samples is not None and exponent_samples.size:
    lo, hi = np.quantile(exponent_samples, [0.025, 0.975])
    ci, se = (float(lo), float(hi)), float(np.std(exponent_samples, ddof=1)) if exponent_samples.size > 1 else None
  return PowerLaw(coefficient=float(np.exp(intercept[0])), exponent=float(slope[0]), exponent_ci95=ci, exponent_se=se)


def approach2(
    runs: Any,
    *,
    bootstrap: int = 0,
    seed: int = 0,
    tolerance: float = DEFAULT_TOLERANCE,
    min_sizes: int = MIN_SIZES,
    columns=None,
) -> IsoFLOPResult:
  """Chinchilla's Approach 2: a parabola per IsoFLOP budget, then power laws in C.

  Args:
    runs: a path, DataFrame, dict or :class:`~jaxscale.runs.RunSet` with N, C
      (or D) and loss; a ``group`` column names the budgets.
    bootstrap: replicates for the exponents' CIs (runs resampled within each
      budget, every parabola refitted); 0 for none.
    seed: seed of the bootstrap (a ``numpy.random.Generator``).
    tolerance: budget clustering gap in dex of C, without a ``group`` column.
    min_sizes: distinct model sizes a budget needs (at least 3).
    columns: column mapping when ``runs`` is a path.

  Returns:
    An :class:`IsoFLOPResult` with ``approach=2``.

  Example:
    >>> result = approach2("runs.csv")  # doctest: +SKIP
    >>> result.a, result.b  # doctest: +SKIP
  """
  runs = runs_lib.load(runs, columns=columns)
  if min_sizes < MIN_SIZES:
    raise ValueError(f"min_sizes must be >= {MIN_SIZES} (a parabola has three coefficients), got {min_sizes}")
  if bootstrap < 0:
    raise ValueError(f"bootstrap must be >= 0, got {bootstrap}")
  index_R, labels, C_B = assign_budgets(runs, tolerance)
  weight_R = runs.weight
  log_N, log_D, loss = np.log(runs.N), np.log(runs.D), runs.loss

  skipped, kept, too_few = [], [], []
  for b, label in enumerate(labels):
    members = (index_R == b) & (weight_R > 0)
    sizes = np.unique(log_N[members]).size
    if sizes < min_sizes:
      too_few.append(f"{label} ({sizes})")
    else:
      kept.append(b)
  if too_few:
    shown = ", ".join(too_few[:6]) + (f" and {len(too_few) - 6} more" if len(too_few) > 6 else "")
    skipped.append(f"{len(too_few)} budget(s) with fewer than {min_sizes} distinct model sizes skipped: {shown}")
  if len(kept) < 2:
    raise ValueError(
        f"{runs.source}: only {len(kept)} compute budget(s) have >= {min_sizes} model sizes, and the power laws need 2; "
        "add runs at more sizes per budget, add a 'group' column naming budgets, or raise tolerance "
        f"(now {tolerance} dex) if one budget's runs were split ({'; '.join(skipped[:3])})"
    )
  slots_BxM = _pad_by_budget(index_R, len(labels))[kept]
  labels, C_B = [labels[b] for b in kept], C_B[kept]
  valid_BxM = slots_BxM >= 0
  take = np.where(valid_BxM, slots_BxM, 0)
  weights_BxM = np.where(valid_BxM, weight_R[take], 0.0)
  # Centre log N per budget: keeps the 3x3 normal equations well conditioned.
  center_B = np.sum(weights_BxM * log_N[take], axis=1) / np.sum(weights_BxM, axis=1)
  x_BxM = np.where(valid_BxM, log_N[take] - center_B[:, None], 0.0)
  y_BxM = np.where(valid_BxM, loss[take], 0.0)
  logD_BxM = np.where(valid_BxM, log_D[take], 0.0)

  coefficients_Bx3 = fit_parabolas(x_BxM, y_BxM, weights_BxM[None])[0]
  convex = coefficients_Bx3[:, 2] > 0
  for b in np.flatnonzero(~convex):
    skipped.append(f"budget {labels[b]}: the losses do not curve upwards in log N (no minimum); skipped")
  if np.count_nonzero(convex) < 2:
    raise ValueError(
        f"{runs.source}: fewer than 2 budgets have a loss minimum over model size; spread sizes on both sides "
        "of the optimum (e.g. tokens per parameter from ~2 to ~200)"
    )
  keep_B = np.flatnonzero(convex)
  x_opt_B = _vertex(coefficients_Bx3[keep_B])
  log_N_opt = center_B[keep_B] + x_opt_B
  log_D_opt = _log_tokens_at(x_BxM[keep_B], logD_BxM[keep_B], weights_BxM[keep_B][None], x_opt_B[None])[0]
  log_C = np.log(C_B[keep_B])

  points = []
  for i, b in enumerate(keep_B):
    members = valid_BxM[b] & (weights_BxM[b] > 0)
    x = x_BxM[b][members]
    interior = bool(x.min() <= x_opt_B[i] <= x.max())
    if not interior:
      skipped.append(f"budget {labels[b]}: the minimum lies outside the sizes tried (extrapolated); kept, but add sizes beyond it")
    c = coefficients_Bx3[b]
    points.append({
        "label": labels[b],
        "C": float(C_B[b]),
        "runs": int(np.count_nonzero(members)),
        "sizes": int(np.unique(x).size),
        "N_opt": float(np.exp(log_N_opt[i])),
        "D_opt": float(np.exp(log_D_opt[i])),
        "loss_opt": float(c[0] - c[1] ** 2 / (4 * c[2])),
        "center": float(center_B[b]),
        "coefficients": [float(v) for v in c],
        "interior": interior,
    })

  a_samples = b_samples = None
  boot = None
  if bootstrap and max(point["sizes"] for point in points) <= MIN_SIZES:
    # A parabola through 3 sizes fits them exactly: a replicate either redraws all 3 (the same
    # parabola) or loses the budget, so the spread would reflect which budgets survive, not the
    # noise. No resampling, and no interval rather than a misleading one.
    skipped.append(
        f"bootstrap: every budget has only {MIN_SIZES} model sizes, which a parabola fits exactly, so resampling "
        "cannot measure the uncertainty and no confidence interval is reported; use >= 4 sizes per budget"
    )
  elif bootstrap:
    rng = np.random.default_rng(seed)
    sub_slots = slots_BxM[keep_B]
    counts_SxBxM = np.zeros((bootstrap, keep_B.size, sub_slots.shape[1]))
    for i in range(keep_B.size):
      size = int(np.count_nonzero(sub_slots[i] >= 0))
      draws = rng.integers(0, size, size=(bootstrap, size))
      np.add.at(counts_SxBxM[:, i, :], (np.arange(bootstrap)[:, None], draws), 1.0)
    replicate_weights = counts_SxBxM * weights_BxM[keep_B][None]
    coefficients_SxBx3 = fit_parabolas(x_BxM[keep_B], y_BxM[keep_B], replicate_weights)
    # A replicate's budget can lose its minimum (or drop below 3 sizes); the
    # replicate's power laws then use its remaining budgets, as a rerun would.
    ok_SxB = np.isfinite(coefficients_SxBx3[..., 2]) & (coefficients_SxBx3[..., 2] > 0)
    ok_S = np.count_nonzero(ok_SxB, axis=1) >= 2
    ok_SxB = ok_SxB[ok_S]
    safe = np.where(ok_SxB[..., None], coefficients_SxBx3[ok_S], 1.0)
    x_opt_SxB = _vertex(safe)
    log_N_SxB = center_B[keep_B][None] + x_opt_SxB
    log_D_SxB = _log_tokens_at(x_BxM[keep_B], logD_BxM[keep_B], replicate_weights[ok_S], x_opt_SxB)
    log_C_SxB = np.broadcast_to(log_C, log_N_SxB.shape)
    a_samples, _ = _line_slopes(log_C_SxB, log_N_SxB, ok_SxB)
    b_samples, _ = _line_slopes(log_C_SxB, log_D_SxB, ok_SxB)
    boot = {"n": int(bootstrap), "seed": int(seed), "valid": int(np.count_nonzero(ok_S))}
    lost = int(ok_SxB.size - np.count_nonzero(ok_SxB)) + (bootstrap - boot["valid"]) * keep_B.size
    if lost:
      skipped.append(
          f"bootstrap: {lost} of {bootstrap * keep_B.size} replicate budgets lost their minimum or fell below 3 sizes "
          f"and were left out of their replicate; {bootstrap - boot['valid']} replicates dropped"
      )
  for message in skipped:
    warnings.warn(message, IsoFLOPWarning, stacklevel=2)
  return IsoFLOPResult(
      approach=2,
      points=points,
      N_opt=_power_law(log_C, log_N_opt, a_samples),
      D_opt=_power_law(log_C, log_D_opt, b_samples),
      bootstrap=boot,
      skipped=skipped,
  )


def _vertex(coefficients):
  return -coefficients[..., 1] / (2.0 * coefficients[..., 2])


def _log_tokens_at(x_BxM, log_D_BxM, weights_SxBxM, x_SxB):
  """log D at ``x`` from a weighted line of log D on log N within each budget.

  Exactly ``log(C / 6) - log N`` for IsoFLOP runs with C = 6 N D, and still
  right when the runs' C counts FLOPs another way (e.g. attention included).
  """
  w = weights_SxBxM
  # A replicate budget that drew a single size gives NaN here; its parabola is unsolvable too, so it is masked later.
  with np.errstate(invalid="ignore", divide="ignore"):
    total = w.sum(-1)
    x_mean = (w * x_BxM).sum(-1) / total
    y_mean = (w * log_D_BxM).sum(-1) / total
    dx = x_BxM - x_mean[..., None]
    slope = (w * dx * (log_D_BxM - y_mean[..., None])).sum(-1) / (w * dx**2).sum(-1)
    return y_mean + slope * (x_SxB - x_mean)


# --- Approach 1 ---------------------------------------------------------------------------

CURVE_COLUMNS = ("run_id", "tokens", "loss")


def read_curves(curves: Any, runs: Any = None) -> pd.DataFrame:
  """Loads a curves table (``run_id, tokens, loss`` plus ``N``; ``C_so_far`` or ``C`` optional).

  ``N`` may come from ``runs`` (joined on ``run_id``) instead; without a
  compute column, ``C = 6 N tokens``.
  """
  if isinstance(curves, (str, os.PathLike)):
    path = os.fspath(curves)
    if not os.path.exists(path):
      raise ValueError(f"{path}: no such curves file; check the path (the sweep writes curves.csv next to runs.csv)")
    frame, source = pd.read_csv(path), path
  elif isinstance(curves, pd.DataFrame):
    frame, source = curves.copy(), "<curves>"
  else:
    frame, source = pd.DataFrame(dict(curves)), "<curves>"
  if "tokens" not in frame.columns and "D" in frame.columns:
    frame = frame.rename(columns={"D": "tokens"})
  missing = [c for c in CURVE_COLUMNS if c not in frame.columns]
  if missing:
    raise ValueError(f"{source}: curves need columns {', '.join(CURVE_COLUMNS)} (and N); missing {', '.join(missing)}")
  if "N" not in frame.columns:
    if runs is None:
      raise ValueError(f"{source}: curves lack column 'N'; add it or pass the runs table to join on run_id")
    runs = runs_lib.load(runs)
    if "run_id" not in runs.frame.columns:
      raise ValueError(f"{runs.source}: has no run_id column to join the curves on")
    sizes = dict(zip(runs.frame["run_id"].astype(str), runs.N))
    frame["N"] = frame["run_id"].astype(str).map(sizes)
    if frame["N"].isna().any():
      row = int(np.flatnonzero(frame["N"].isna().to_numpy())[0])
      raise ValueError(f"{source}: row {row} has run_id {frame['run_id'].iloc[row]!r}, which is not in the runs table")
  for name in ("tokens", "loss", "N") + tuple(c for c in ("C_so_far", "C") if c in frame.columns):
    values = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~(np.isfinite(values) & (values > 0))
    if bad.any():
      row = int(np.flatnonzero(bad)[0])
      raise ValueError(f"{source}: column {name!r} row {row} is {frame[name].iloc[row]!r}; it must be a positive number")
    frame[name] = values
  compute = "C_so_far" if "C_so_far" in frame.columns else ("C" if "C" in frame.columns else None)
  frame["C_curve"] = frame[compute] if compute else runs_lib.FLOPS_PER_PARAM_TOKEN * frame["N"] * frame["tokens"]
  frame["run_id"] = frame["run_id"].astype(str)
  return frame


def approach1(curves: Any, runs: Any = None, *, grid: int = DEFAULT_GRID) -> IsoFLOPResult:
  """Chinchilla's Approach 1: the lowest-loss envelope of training curves.

  Each run's loss curve is interpolated linearly in ``log C`` onto ``grid``
  log-spaced compute values (only inside the span the run covers). At each
  value the run with the lowest loss gives ``N_opt`` and its tokens there give
  ``D_opt``. Grid points where no covering run is larger (or none smaller)
  than the winner are dropped: there the envelope is pinned to the edge of the
  sizes tried, not to the optimum.

  Args:
    curves: path or DataFrame with ``run_id, tokens, loss, N`` and optionally
      ``C_so_far`` (the sweep's curves.csv) or ``C``.
    runs: the runs table, to supply ``N`` by ``run_id`` when curves lack it.
    grid: number of compute values.

  Returns:
    An :class:`IsoFLOPResult` with ``approach=1``; ``points`` holds the kept
    envelope points.
  """
  frame = read_curves(curves, runs)
  if grid < 2:
    raise ValueError(f"grid must be >= 2 compute values, got {grid}")
  run_ids = list(dict.fromkeys(frame["run_id"]))
  if len(run_ids) < 3:
    raise ValueError(f"curves hold {len(run_ids)} run(s); the envelope needs runs of at least 3 sizes")
  per_run = [frame[frame["run_id"] == r].sort_values("C_curve") for r in run_ids]
  log_C_runs = [np.log(g["C_curve"].to_numpy()) for g in per_run]
  sizes_R = np.array([g["N"].iloc[0] for g in per_run])
  log_C_G = np.linspace(min(c[0] for c in log_C_runs), max(c[-1] for c in log_C_runs), grid)
  loss_RxG = np.full((len(run_ids), grid), np.inf)
  log_tokens_RxG = np.full((len(run_ids), grid), np.nan)
  for r, (g, log_c) in enumerate(zip(per_run, log_C_runs)):
    inside = (log_C_G >= log_c[0]) & (log_C_G <= log_c[-1])
    loss_RxG[r, inside] = np.interp(log_C_G[inside], log_c, g["loss"].to_numpy())
    log_tokens_RxG[r, inside] = np.interp(log_C_G[inside], log_c, np.log(g["tokens"].to_numpy()))
  best_G = np.argmin(loss_RxG, axis=0)
  covered_RxG = np.isfinite(loss_RxG)
  winner_N = sizes_R[best_G]
  larger = np.any(covered_RxG & (sizes_R[:, None] > winner_N[None]), axis=0)
  smaller = np.any(covered_RxG & (sizes_R[:, None] < winner_N[None]), axis=0)
  keep = larger & smaller
  skipped = []
  if np.count_nonzero(~keep):
    skipped.append(f"{np.count_nonzero(~keep)} of {grid} compute values dropped: the lowest loss there is at the smallest or largest size covering them")
  if len(np.unique(winner_N[keep])) < 2:
    raise ValueError(
        "the loss envelope has fewer than 2 distinct optimal sizes inside the range of sizes; train more sizes, "
        "spanning both sides of the optimum at each compute"
    )
  columns = np.arange(grid)
  points = [
      {
          "C": float(np.exp(log_C_G[g])),
          "N_opt": float(winner_N[g]),
          "D_opt": float(np.exp(log_tokens_RxG[best_G[g], g])),
          "loss_opt": float(loss_RxG[best_G[g], g]),
          "run_id": run_ids[best_G[g]],
      }
      for g in columns[keep]
  ]
  log_C = log_C_G[keep]
  log_N_opt = np.log(winner_N[keep])
  log_D_opt = log_tokens_RxG[best_G[keep], columns[keep]]
  for message in skipped:
    warnings.warn(message, IsoFLOPWarning, stacklevel=2)
  return IsoFLOPResult(
      approach=1, points=points, N_opt=_power_law(log_C, log_N_opt), D_opt=_power_law(log_C, log_D_opt), skipped=skipped
  )


def optimal_exponents(natural: dict[str, float]) -> tuple[float, float]:
  """Chinchilla's analytic ``(a, b) = (beta, alpha) / (alpha + beta)`` for comparison."""
  alpha, beta = float(natural["alpha"]), float(natural["beta"])
  return beta / (alpha + beta), alpha / (alpha + beta)


__all__: Sequence[str] = (
    "IsoFLOPResult",
    "IsoFLOPWarning",
    "PowerLaw",
    "approach1",
    "approach2",
    "assign_budgets",
    "fit_parabolas",
    "optimal_exponents",
    "read_curves",
)
