"""Bootstrapped run sets: parameter uncertainty from refitting resampled runs.

A bootstrap replicate resamples the runs with replacement. Here a replicate is
an integer *weight vector* over the same runs (how many times each run was
drawn, times the run's own weight), so every replicate has the same shape and
one compiled program refits them all: the batched Levenberg-Marquardt solver
of :mod:`jaxscale.solver`, ``vmap``-ped over replicates.

Each replicate starts from the full-data fit (its optimum is nearby), runs a
short, fixed number of solver steps, and only the replicates whose gradient
has not yet vanished get more rounds; the few still unconverged after that are
refitted from the best grid starts of the full-data search as well. Replicate
``i``'s weights come from ``jax.random.fold_in(key(seed), i)``, so the answer
depends on ``seed`` alone, not on the chunk size or the device count.

A cluster bootstrap (``cluster="group"`` or any column) draws whole groups,
e.g. every run of one IsoFLOP budget at once, for runs that share more than
their law.

Example:
  >>> from jaxscale import resampling
  >>> boot = resampling.bootstrap("chinchilla", "runs.csv", n=4000, seed=0)  # doctest: +SKIP
  >>> boot.ci95["alpha"]  # doctest: +SKIP
  (0.316, 0.372)

References:
  Efron & Tibshirani 1993, "An Introduction to the Bootstrap".
  Besiroglu et al. 2024, "Chinchilla Scaling: A replication attempt" (4,000
  i.i.d. resamples of the runs).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxscale import devices as devices_lib
from jaxscale import estimation, fitting
from jaxscale import laws as laws_lib
from jaxscale import runs as runs_lib
from jaxscale import solver as solver_lib

DEFAULT_REPLICATES = 4000
# Replicates per compiled call on an accelerator, whose lanes run in parallel.
DEFAULT_CHUNK = 500
# Solver steps per round; a warm-started replicate needs 20-100 steps of this
# near-L1 problem, so most finish in one or two rounds.
STEPS_PER_ROUND = 30
MAX_ROUNDS = 10
# A replicate counts as converged when its gradient norm is below this times
# (1 + objective). Looser than a single fit's 1e-6: on the Chinchilla data it
# bounds each replicate's parameter error by < 0.5% of the bootstrap standard
# deviation, far below the Monte-Carlo noise of a 4,000-replicate percentile.
GRADIENT_TOLERANCE = {"float64": 1e-5, "float32": 2e-2}
CI_LEVEL = 0.95
# Replicates per compiled call once only a few are still unconverged.
TAIL_CHUNK = 64
# Replicates per compiled call on a CPU. A chunk's solve runs until its slowest lane stops,
# and 500 lanes' Jacobians outgrow the caches: 64 lanes refitted 1,000 Chinchilla
# replicates a round in ~1.0 s against ~2.0 s for 500 (2-core CPU, under load). Being the
# tail's width too, it leaves a first bootstrap one refit program to compile, not two.
CPU_CHUNK = TAIL_CHUNK
INTERVAL_METHODS = ("percentile", "basic")
# Above this share of unconverged replicates the bootstrap warns: the intervals rest on a selected few.
UNCONVERGED_WARN_SHARE = 0.1


# --- Replicate weights ----------------------------------------------------------------------


def resample_weights(key: jax.Array, replicate_ids_K, unit_of_run_R, num_units, *, max_units: int | None = None):
  """Multinomial resampling counts per run for replicates ``replicate_ids_K``.

  Replicate ``i`` draws ``num_units`` units (runs, or whole clusters) with
  replacement using ``fold_in(key, i)``; a run's count is its unit's count.

  Args:
    key: the bootstrap's base key (from its seed).
    replicate_ids_K: replicate indices, shape ``(K,)``.
    unit_of_run_R: which unit (``0 .. num_units - 1``) each run belongs to.
    num_units: how many units are resampled: a static int, or (with
      ``max_units``) a traced one, so run sets of any size share a program.
    max_units: a static bound on ``num_units``: the draws are made over
      ``max_units`` slots and those past ``num_units`` count for nothing.

  Returns:
    Counts of shape ``(K, R)`` in the dtype of ``unit_of_run_R``'s float twin.
  """

  def one(replicate_id):
    width = num_units if max_units is None else max_units
    draws = jax.random.randint(jax.random.fold_in(key, replicate_id), (width,), 0, num_units)
    units = jnp.asarray(num_units)
    live_U = jnp.arange(width, dtype=units.dtype) < units  # slots past num_units count for nothing
    counts_U = jnp.zeros(width, jnp.int32).at[draws].add(live_U.astype(jnp.int32))
    return counts_U[unit_of_run_R]

  return jax.vmap(one)(replicate_ids_K)


@functools.partial(jax.jit, static_argnames=("law", "options"))
def _refit(law, theta0_KxP, replicate_ids_K, key, unit_of_run_R, num_units, log_inputs, log_loss_R, weights_R, *, options):
  """Refits ``K`` replicates from ``theta0_KxP``; returns (theta, objective, gradient norm)."""

  def residual_fn(theta):
    return law.log_loss(law.unflatten(theta), log_inputs) - log_loss_R

  def one(theta0, counts_R):
    replicate_weights_R = counts_R.astype(weights_R.dtype) * weights_R
    state = solver_lib.minimize(residual_fn, theta0, replicate_weights_R, options)
    gradient = solver_lib.gradient_norm(residual_fn, state.theta, replicate_weights_R, options)
    return state.theta, state.objective, gradient

  # The padded run set bounds the units (runs or clusters), so the program depends on its bucket alone.
  counts_KxR = resample_weights(key, replicate_ids_K, unit_of_run_R, num_units, max_units=unit_of_run_R.shape[0])
  return jax.vmap(one)(theta0_KxP, counts_KxR)


@functools.partial(jax.jit, static_argnames=("law", "options", "count"))
def _best_starts(law, starts_SxP, log_inputs, log_loss_R, weights_R, *, options, count):
  """The ``count`` starts with the lowest full-data objective."""

  def residual_fn(theta):
    return law.log_loss(law.unflatten(theta), log_inputs) - log_loss_R

  objectives_S = jax.lax.map(lambda theta: solver_lib._objective(residual_fn, theta, weights_R, options), starts_SxP, batch_size=1024)
  _, best = jax.lax.top_k(-objectives_S, count)
  return starts_SxP[best]


@functools.partial(jax.jit, static_argnames=("problem", "keep"))
def _refit_problem(problem, starts_SxF, replicate_ids_K, key, unit_of_run_R, num_units, log_inputs, log_loss_R, weights_R, *, keep):
  """Refits ``K`` replicates under any objective (:class:`~jaxscale.estimation.Problem`) from shared starts.

  The replicate is a weight vector, so this is :func:`jaxscale.estimation.fit_weights`'s
  search (LM or Optax, every start refined, the best kept) vmapped over replicates.

  Returns:
    ``(theta_KxP, objective_K, gradient_norm_K)``, ``theta`` in the law's fit space.
  """
  counts_KxR = resample_weights(key, replicate_ids_K, unit_of_run_R, num_units, max_units=unit_of_run_R.shape[0])
  weights_KxR = counts_KxR.astype(weights_R.dtype) * weights_R
  solution = jax.vmap(lambda w: estimation._search(problem, starts_SxF, log_inputs, log_loss_R, w, keep))(weights_KxR)
  return problem.theta(solution.z), solution.objective, solution.gradient_norm


@functools.partial(jax.jit, static_argnames=("problem", "count"))
def _best_free_starts(problem, starts_SxF, log_inputs, log_loss_R, weights_R, *, count):
  """The ``count`` free starts with the lowest full-data objective."""
  objectives_S = jax.lax.map(
      lambda u: problem.value(problem.start(u, log_inputs, log_loss_R, weights_R), log_inputs, log_loss_R, weights_R),
      starts_SxF, batch_size=1024,
  )
  _, best = jax.lax.top_k(-objectives_S, count)
  return starts_SxF[best]


def _general_problem(fit: fitting.FitResult, objective, solver, optimizer):
  """The fit's :class:`~jaxscale.estimation.Problem` when the log-loss LM bootstrap cannot refit it, else None.

  That fast path refits Huber or MSE on log loss with every parameter free on
  the LM engine; any other objective (raw loss, a likelihood with a fitted
  scale, Student-t, the asymmetric penalty, a user function), an Optax solver,
  or pinned or bounded parameters go through the general replicate search.
  """
  if objective is None and solver is None and optimizer is None:
    section = fit.extras.get("objective")
    if section is None:
      return None
    plain = section["name"] in ("huber_log", "mse_log") and section.get("solver") == "lm"
    if plain and not section.get("fixed") and not section.get("bounds"):
      return None
  return estimation.problem_of(fit, objective=objective, solver=solver, optimizer=optimizer)


def _converged(gradient_K, objective_K, tolerance: float) -> np.ndarray:
  """Replicates whose gradient norm has vanished relative to ``1 + |objective|``."""
  return gradient_K <= tolerance * (1.0 + np.abs(objective_K))


def _in_chunks(fn, theta0_KxP, ids_K, width: int, sharding):
  """Calls ``fn(theta0, ids)`` on fixed-width chunks (the last padded) so it compiles once.

  Each chunk's batch axis is split over ``sharding``'s devices. On a CPU, chunks also run
  side by side in :func:`jaxscale.devices.host_workers` threads: one solve keeps one core
  busy, and XLA runs calls from different threads at once (calls from one thread queue up).
  Every chunk is the same program on the same inputs whatever runs beside it, so the
  answer does not depend on the thread count.
  """
  def one(start):
    ids, theta0 = ids_K[start : start + width], theta0_KxP[start : start + width]
    placed = jax.device_put([devices_lib.pad_rows(theta0, width), devices_lib.pad_rows(ids, width)], sharding)
    return [np.asarray(x)[: len(ids)] for x in fn(*placed)]

  outputs = devices_lib.side_by_side(one, range(0, len(ids_K), width), devices_lib.host_workers(sharding))
  return [np.concatenate(parts) for parts in zip(*outputs)]


# --- Result -----------------------------------------------------------------------------------


def _interval(values, estimate: float, method: str, level: float = CI_LEVEL) -> tuple[float, float]:
  tail = 100.0 * (1.0 - level) / 2.0
  low, high = np.percentile(values, [tail, 100.0 - tail])
  if method == "percentile":
    return float(low), float(high)
  if method == "basic":  # reflect the bootstrap distribution about the estimate
    return float(2.0 * estimate - high), float(2.0 * estimate - low)
  raise ValueError(f"unknown interval method {method!r}; use one of {', '.join(INTERVAL_METHODS)}")


def derived_quantities(law: laws_lib.Law, natural: Mapping[str, Any]) -> dict[str, Any]:
  """Quantities computed from a law's natural parameters (works on arrays).

  For Chinchilla-type laws (with ``alpha`` and ``beta``), the compute-optimal
  exponents ``N_opt ~ C^a`` with ``a = beta / (alpha + beta)`` and
  ``D_opt ~ C^b`` with ``b = alpha / (alpha + beta)`` (Hoffmann et al. 2022).
  """
  del law  # the parameters decide; kept for laws whose derived quantities differ
  if "alpha" in natural and "beta" in natural:
    alpha, beta = np.asarray(natural["alpha"]), np.asarray(natural["beta"])
    return {"a": beta / (alpha + beta), "b": alpha / (alpha + beta)}
  return {}


class BootstrapWarning(UserWarning):
  """A bootstrap whose replicates did not all converge (they are left out of every interval)."""


@dataclasses.dataclass(frozen=True, eq=False)
class BootstrapResult:
  """Bootstrap replicates of a fit and the intervals they give.

  Replicates whose gradient did not vanish (``converged`` False) or whose
  parameters are not finite are left out of every interval, standard error,
  band and allocation by default: an unconverged replicate is a point the
  solver stopped at, not a sample of the estimator. :attr:`num_used` says how
  many remain; pass ``include_unconverged=True`` to :meth:`natural` to see them all.

  Attributes:
    law: the law's registry name.
    names: natural parameter names, the column order of ``samples``.
    samples: natural parameters per replicate, shape ``(B, P)``.
    fit_samples: fit-space parameters per replicate, shape ``(B, P)``
      (``law.param_names`` order).
    estimate: the full-data fit's natural parameters.
    n: replicates ``B``.
    seed: the seed that determines every replicate.
    cluster: the column whose groups were resampled, or None (runs i.i.d.).
    converged: per replicate, whether its gradient vanished, shape ``(B,)``.
    method: how :attr:`ci95` is formed from the samples (``"percentile"``).
  """

  law: str
  names: tuple[str, ...]
  samples: np.ndarray
  fit_samples: np.ndarray
  estimate: dict[str, float]
  n: int
  seed: int
  cluster: str | None
  converged: np.ndarray
  method: str = "percentile"

  @property
  def law_object(self) -> laws_lib.Law:
    return laws_lib.get(self.law)

  @property
  def num_converged(self) -> int:
    return int(np.count_nonzero(self.converged))

  def used(self, *, include_unconverged: bool = False) -> np.ndarray:
    """Which replicates the intervals use, shape ``(B,)``: finite, and converged unless asked otherwise."""
    finite = np.all(np.isfinite(self.samples), axis=1)
    return finite if include_unconverged else finite & np.asarray(self.converged, bool)

  @property
  def num_used(self) -> int:
    """Replicates behind every interval: converged with finite parameters."""
    return int(np.count_nonzero(self.used()))

  @property
  def unconverged_share(self) -> float:
    return 1.0 - self.num_converged / max(self.n, 1)

  def describe(self) -> str:
    """How many replicates the intervals rest on, e.g. ``"389 of 1000 replicates (611 unconverged left out)"``."""
    left_out = self.n - self.num_used
    return f"{self.num_used} of {self.n} replicates" + (f" ({left_out} unconverged or failed, left out)" if left_out else "")

  def natural(self, *, include_unconverged: bool = False) -> dict[str, np.ndarray]:
    """``{name: (B_used,) array}`` of natural parameters of the replicates in use.

    Example:
      >>> samples = fit.bootstrap.natural()  # doctest: +SKIP
      >>> samples["alpha"].shape  # doctest: +SKIP
      (3998,)
    """
    rows = self.samples[self.used(include_unconverged=include_unconverged)]
    return {name: rows[:, i] for i, name in enumerate(self.names)}

  def interval(self, name: str, *, level: float = CI_LEVEL, method: str | None = None, include_unconverged: bool = False) -> tuple[float, float]:
    """A two-sided interval for one natural parameter or derived quantity (NaN when no replicate is usable)."""
    natural = self.natural(include_unconverged=include_unconverged)
    if name in self.names:
      values, estimate = natural[name], self.estimate[name]
    else:
      derived = derived_quantities(self.law_object, natural)
      if name not in derived:
        raise ValueError(f"no parameter or derived quantity {name!r}; choose one of {', '.join(self.names + tuple(derived))}")
      values = derived[name][np.isfinite(derived[name])]
      estimate = float(derived_quantities(self.law_object, self.estimate)[name])
    if values.size == 0:
      return math.nan, math.nan
    return _interval(values, estimate, method or self.method, level)

  @property
  def ci95(self) -> dict[str, tuple[float, float]]:
    return {name: self.interval(name) for name in self.names}

  def _used_matrix(self) -> np.ndarray:
    return self.samples[self.used()]

  @property
  def se(self) -> dict[str, float]:
    """Bootstrap standard errors (standard deviation over the replicates in use)."""
    rows = self._used_matrix()
    if len(rows) < 2:
      return {name: math.nan for name in self.names}
    with np.errstate(over="ignore", invalid="ignore"):  # see covariance
      spread = np.std(rows, axis=0, ddof=1)
    return {name: float(s) for name, s in zip(self.names, spread)}

  @property
  def covariance(self) -> np.ndarray:
    """Covariance of the natural parameters over the replicates in use, shape ``(P, P)``."""
    rows = self._used_matrix()
    if len(rows) < 2:
      return np.full((len(self.names), len(self.names)), np.nan)
    # Replicates far out in a flat direction (A ~ 1e150) overflow it: inf entries, honestly, without a warning.
    with np.errstate(over="ignore", invalid="ignore"):
      return np.atleast_2d(np.cov(rows, rowvar=False))

  @property
  def derived(self) -> dict[str, dict[str, Any]]:
    """Derived quantities (e.g. compute-optimal exponents) with estimate, CI and SE."""
    law = self.law_object
    samples = derived_quantities(law, self.natural())
    estimates = derived_quantities(law, self.estimate)
    out = {}
    for name, values in samples.items():
      values = values[np.isfinite(values)]
      estimate = float(estimates[name])
      out[name] = {
          "estimate": estimate,
          "ci95": list(_interval(values, estimate, self.method)) if values.size else [math.nan, math.nan],
          "se": float(np.std(values, ddof=1)) if values.size > 1 else math.nan,
      }
    return out

  # --- The one JSON codec -----------------------------------------------------------------

  def to_dict(self) -> dict[str, Any]:
    """The JSON-ready ``bootstrap`` section of a fit file.

    ``samples`` and the per-replicate ``converged`` flags are what
    :meth:`from_dict` reads; ``ci95``, ``se``, ``covariance`` and ``derived``
    are written for readers of the file and recomputed on load.
    """
    return {
        "n": self.n,
        "seed": self.seed,
        "cluster": self.cluster,
        "method": self.method,
        "names": list(self.names),
        "replicates_used": self.num_used,
        "num_converged": self.num_converged,
        "ci95": {name: list(interval) for name, interval in self.ci95.items()},
        "se": self.se,
        "covariance": self.covariance.tolist(),
        "derived": self.derived,
        "converged": [bool(c) for c in self.converged],
        "samples": self.samples.tolist(),
    }

  @classmethod
  def from_dict(
      cls, data: Mapping[str, Any], law: str | laws_lib.Law, estimate: Mapping[str, float], *, source: str = "<dict>"
  ) -> BootstrapResult:
    """Rebuilds a result from :meth:`to_dict`'s section (``estimate``: the fit's params).

    Reads sections of format 1 too (``extras.bootstrap`` with a count of
    converged replicates) when every replicate converged; one with a smaller
    count cannot say which replicates to leave out and is refused. A section
    without ``converged`` (written by hand) counts every replicate as converged.
    """
    law = laws_lib.get(law)
    fix = "re-create the fit with `jaxscale fit RUNS --bootstrap B --out FIT`"
    if not isinstance(data, Mapping) or "samples" not in data:
      raise ValueError(f"{source}: not a bootstrap section: expected the `bootstrap` object written by `jaxscale fit --bootstrap`; {fix}")
    try:
      samples = np.asarray(data["samples"], np.float64)
    except (TypeError, ValueError):
      raise ValueError(f"{source}: bootstrap samples must be a B x P list of numbers; {fix}") from None
    names = data.get("names", law.natural_names)
    if not isinstance(names, Sequence) or isinstance(names, str):
      raise ValueError(f"{source}: bootstrap names must be a list of parameter names, got {type(names).__name__}; {fix}")
    names = tuple(names)
    if set(names) != set(law.natural_names) or len(names) != len(law.natural_names):
      raise ValueError(
          f"{source}: bootstrap names {list(names)} are not the parameters of law {law.name!r} "
          f"({', '.join(law.natural_names)}); {fix}"
      )
    if samples.ndim != 2 or samples.shape[1] != len(names):
      raise ValueError(
          f"{source}: bootstrap samples must be B x {len(names)} (one column per name: {', '.join(names)}), got "
          f"shape {samples.shape}; {fix}"
      )
    count = len(samples)
    flags = data.get("converged", None)
    if flags is None:
      converged = np.ones(count, bool)
    elif isinstance(flags, bool) or isinstance(flags, (int, np.integer)):
      # Format 1 kept the count only: "k converged" cannot say which k.
      if int(flags) != count:
        raise ValueError(
            f"{source}: this fit file (format 1) records that {int(flags)} of {count} bootstrap replicates converged "
            f"but not which ones, so the unconverged ones cannot be left out; {fix}"
        )
      converged = np.ones(count, bool)
    else:
      converged = np.asarray(flags)
      if converged.shape != (count,) or converged.dtype != bool:
        raise ValueError(f"{source}: bootstrap `converged` must be {count} true/false flags, one per replicate; {fix}")
    natural = {name: samples[:, i] for i, name in enumerate(names)}
    fit_samples = _to_fit_space(law, natural)
    n = data.get("n", count)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or int(n) != count:
      raise ValueError(f"{source}: bootstrap `n` is {n!r} but it holds {count} replicates; {fix}")
    method = str(data.get("method", "percentile"))
    if method not in INTERVAL_METHODS:
      raise ValueError(f"{source}: unknown bootstrap interval method {method!r}; use one of {', '.join(INTERVAL_METHODS)}")
    cluster = data.get("cluster")
    if cluster is not None and not isinstance(cluster, str):
      raise ValueError(f"{source}: bootstrap `cluster` must be a column name or null, got {cluster!r}")
    return cls(
        law=law.name,
        names=names,
        samples=samples,
        fit_samples=fit_samples,
        estimate={k: float(v) for k, v in estimate.items()},
        n=count,
        seed=int(data.get("seed", 0)),
        cluster=cluster,
        converged=converged,
        method=method,
    )


def _to_fit_space(law: laws_lib.Law, natural: Mapping[str, np.ndarray]) -> np.ndarray:
  with fitting.precision("float64"):
    fit_space = law.from_natural({k: jnp.asarray(v, jnp.float64) for k, v in natural.items()})
    return np.stack([np.asarray(fit_space[name], np.float64) for name in law.param_names], axis=-1)


def _to_natural(law: laws_lib.Law, theta_BxP: np.ndarray) -> np.ndarray:
  with fitting.precision("float64"):
    # Columns split on the host: slicing a device array costs a dispatched op (and a compile) per parameter.
    natural = law.to_natural({k: jnp.asarray(v) for k, v in law.unflatten(np.asarray(theta_BxP, np.float64)).items()})
    return np.stack([np.asarray(natural[name], np.float64) for name in law.natural_names], axis=-1)


# --- The bootstrap --------------------------------------------------------------------------


def _units(runs: runs_lib.RunSet, cluster: str | None) -> tuple[np.ndarray, int]:
  """Which resampling unit each run belongs to, and how many units there are."""
  positive = runs.weight > 0
  if cluster is None:
    unit_of_run = np.cumsum(positive) - 1
    return np.where(positive, unit_of_run, 0).astype(np.int32), int(positive.sum())
  if cluster not in runs.frame.columns:
    raise ValueError(
        f"{runs.source}: cannot cluster the bootstrap by {cluster!r}: no such column; columns are "
        f"{list(runs.frame.columns)} (e.g. --cluster group, or --cluster C for one IsoFLOP budget at a time)"
    )
  labels = runs.frame[cluster].to_numpy()
  if runs.frame[cluster].isna().any():
    row = int(np.flatnonzero(runs.frame[cluster].isna().to_numpy())[0])
    raise ValueError(f"{runs.source}: cluster column {cluster!r} row {row} is empty; give every run a {cluster}")
  _, unit_of_run = np.unique(labels[positive], return_inverse=True)
  num_units = int(unit_of_run.max()) + 1
  if num_units < 2:
    raise ValueError(
        f"{runs.source}: cluster column {cluster!r} has a single value, so a cluster bootstrap would redraw the "
        "same runs every time; cluster by a column with several groups, or drop --cluster"
    )
  full = np.zeros(len(runs), np.int32)
  full[positive] = unit_of_run
  return full, num_units


def bootstrap(
    law: str | laws_lib.Law,
    runs: Any,
    *,
    n: int = DEFAULT_REPLICATES,
    seed: int = 0,
    fit: fitting.FitResult | None = None,
    cluster: str | None = None,
    extra_starts: int = 4,
    loss: str | None = None,
    delta: float | None = None,
    objective: Any = None,
    solver: str | None = None,
    optimizer: Any = None,
    dtype: str = "float64",
    chunk: int | None = None,
    steps_per_round: int = STEPS_PER_ROUND,
    max_rounds: int = MAX_ROUNDS,
    columns: Mapping[str, str] | None = None,
    devices: int | Sequence[jax.Device] | None = None,
) -> BootstrapResult:
  """Refits ``law`` to ``n`` resampled copies of ``runs``, all in one compiled program.

  Args:
    law: a law name or :class:`~jaxscale.laws.Law`.
    runs: a path, DataFrame, dict of arrays or :class:`~jaxscale.runs.RunSet`.
    n: replicates ``B`` (Besiroglu et al. use 4,000).
    seed: determines every replicate's resampled runs, whatever ``chunk``.
    fit: the full-data fit (computed with :func:`jaxscale.fitting.fit` when None);
      every replicate starts from it, and its ``loss``/``delta`` are reused.
    cluster: resample whole groups of this column (e.g. ``"group"``, or ``"C"``
      for one IsoFLOP budget at a time) instead of single runs.
    extra_starts: replicates not converged after ``max_rounds`` rounds are also
      refitted from this many of the best grid starts of the full-data search (and
      from where they stand), for up to ``max_rounds`` more rounds; the lowest
      objective wins.
    loss, delta: the objective; default to the fit's.
    objective, solver, optimizer: any objective of :mod:`jaxscale.objectives`
      (default the fit's own, from its ``extras["objective"]``; a user function
      must be passed again) and its solver. Huber or MSE on log loss with free
      parameters refit on the LM rounds below; anything else (``mse_raw``,
      ``gaussian``, ``student_t``, ``asymmetric``, a user function, pins or
      bounds) refits every replicate with the fit's own search
      (:func:`jaxscale.estimation.fit_weights`) from the full-data optimum and
      the ``extra_starts`` best grid starts.
    dtype: ``"float64"`` (default, scoped) or ``"float32"``.
    chunk: replicates refitted per compiled call; memory is ``chunk x runs``. None:
      :data:`CPU_CHUNK` on a CPU, :data:`DEFAULT_CHUNK` on an accelerator.
    steps_per_round: solver steps per round; unconverged replicates get more rounds.
    max_rounds: rounds before the extra starts are tried.
    columns: ``{their_name: canonical}`` column mapping when ``runs`` is a path.
    devices: local devices each chunk is split over: ``None`` for all, ``k`` for
      the first ``k``; the answer is the same on any number.

  Returns:
    A :class:`BootstrapResult`.

  Example:
    >>> boot = bootstrap("chinchilla", runs, n=4000, seed=0)  # doctest: +SKIP
    >>> fit = attach(fitting.fit("chinchilla", runs), boot)  # doctest: +SKIP
  """
  law = laws_lib.get(law)
  runs = runs_lib.load(runs, columns=columns)
  if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
    raise ValueError(f"bootstrap needs n >= 1 replicates, got {n!r} (Besiroglu et al. use 4000)")
  if (chunk is not None and chunk <= 0) or steps_per_round <= 0 or max_rounds <= 0 or extra_starts < 0:
    raise ValueError(
        f"chunk, steps_per_round and max_rounds must be >= 1 and extra_starts >= 0; got chunk={chunk}, "
        f"steps_per_round={steps_per_round}, max_rounds={max_rounds}, extra_starts={extra_starts}"
    )
  if fit is None and (objective is not None or solver is not None or optimizer is not None):
    fit = estimation.fit(law, runs, objective=objective, solver=solver, optimizer=optimizer, delta=delta, dtype=dtype)
  elif fit is None:
    fit = fitting.fit(law, runs, loss=loss or "huber", delta=1e-3 if delta is None else delta, dtype=dtype)
  elif fit.law != law.name:
    raise ValueError(f"the fit is of law {fit.law!r} but the bootstrap was asked for {law.name!r}; pass the matching fit")
  theta, _, converged = refit_replicates(
      law, runs, np.arange(n), fit=fit, seed=seed, cluster=cluster, extra_starts=extra_starts, loss=loss,
      delta=delta, objective=objective, solver=solver, optimizer=optimizer, dtype=dtype, chunk=chunk,
      steps_per_round=steps_per_round, max_rounds=max_rounds, devices=devices,
  )
  return bootstrap_result(law, fit, theta, converged, seed=seed, cluster=cluster)


def refit_replicates(
    law: laws_lib.Law,
    runs: runs_lib.RunSet,
    replicate_ids: np.ndarray,
    *,
    fit: fitting.FitResult,
    seed: int,
    cluster: str | None = None,
    extra_starts: int = 4,
    loss: str | None = None,
    delta: float | None = None,
    objective: Any = None,
    solver: str | None = None,
    optimizer: Any = None,
    dtype: str = "float64",
    chunk: int | None = None,
    steps_per_round: int = STEPS_PER_ROUND,
    max_rounds: int = MAX_ROUNDS,
    devices: int | Sequence[jax.Device] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Refits bootstrap replicates ``replicate_ids`` of ``fit``, each chunk split over local devices.

  Replicate ``i``'s weights come from ``fold_in(key(seed), i)``, so any subset
  of ids, on any number of devices or processes, gives the same rows
  (:func:`jaxscale.distributed.bootstrap` splits the ids over processes).

  Args:
    law, runs, fit, seed, cluster, extra_starts, loss, delta, objective, solver,
      optimizer, dtype, chunk, steps_per_round, max_rounds: as for :func:`bootstrap`.
    replicate_ids: ``(K,)`` integer replicate numbers.
    devices: ``None`` for every local device, ``k`` for the first ``k``.

  Returns:
    ``(theta_KxP, objective_K, converged_K)``, in fit space.
  """
  replicate_ids = np.asarray(replicate_ids, np.int32)
  devices = devices_lib.local_devices(devices)
  sharding = devices_lib.batch_sharding(devices)
  loss = fit.loss if loss is None else loss
  delta = fit.delta if delta is None else delta
  unit_of_run, num_units = _units(runs, cluster)
  key = jax.random.key(int(seed))
  count = len(replicate_ids)
  if chunk is None:
    chunk = CPU_CHUNK if devices[0].platform == "cpu" else DEFAULT_CHUNK
  chunk = int(min(chunk, count))  # a bootstrap smaller than a chunk is one chunk, of its own size
  # Chunk widths are multiples of the device count so every device gets an equal share.
  width_of = lambda width: len(devices) * math.ceil(width / len(devices))  # noqa: E731

  with fitting.precision(dtype) as float_dtype:
    log_inputs, log_loss_R, weights_R = fitting.prepare(law, runs, float_dtype, pad=True)
    unit_of_run_R = fitting.pad_rows(unit_of_run, weights_R.shape[0], fill=0)  # padding rows weigh 0 whatever their unit
    data = dict(
        key=key, unit_of_run_R=jnp.asarray(unit_of_run_R), num_units=jnp.asarray(num_units, jnp.int32),
        log_inputs=log_inputs, log_loss_R=log_loss_R, weights_R=weights_R,
    )
    tolerance = GRADIENT_TOLERANCE[dtype]
    problem = _general_problem(fit, objective, solver, optimizer)
    if problem is not None:
      return _refit_general(problem, law, runs, fit, replicate_ids, data, extra_starts=extra_starts, chunk=chunk,
                            width_of=width_of, sharding=sharding, float_dtype=float_dtype, tolerance=tolerance)
    options = solver_lib.SolverOptions(loss=loss, delta=float(delta), max_steps=int(steps_per_round), patience=3, ftol=1e-10)

    def refit(theta0, ids):
      return _refit(law, theta0, ids, **data, options=options)

    def rounds(theta_KxP, ids_K):
      """Warm-started rounds of the one compiled program until every lane's gradient vanishes."""
      theta_KxP = np.array(theta_KxP, np.float64)
      objective_K, gradient_K = np.full(len(ids_K), np.inf), np.full(len(ids_K), np.inf)
      pending = np.arange(len(ids_K))
      for _ in range(max_rounds):
        # A narrower program for the few stragglers: a padded full-width chunk would cost as much as a full one.
        # (A small chunk keeps its one program: compiling a second would cost more than it saves.)
        width = chunk if pending.size > chunk // 4 or chunk <= 2 * TAIL_CHUNK else TAIL_CHUNK
        theta_KxP[pending], objective_K[pending], gradient_K[pending] = _in_chunks(
            refit, np.asarray(theta_KxP[pending], float_dtype), ids_K[pending], width_of(width), sharding
        )
        pending = np.flatnonzero(~_converged(gradient_K, objective_K, tolerance))
        if pending.size == 0:
          break
      return theta_KxP, objective_K, gradient_K

    warm = np.asarray([fit.fit_params[name] for name in law.param_names], np.float64)
    theta, objective, gradient = rounds(np.tile(warm, (count, 1)), replicate_ids)
    converged = _converged(gradient, objective, tolerance)
    pending = np.flatnonzero(~converged)

    if pending.size and extra_starts:
      # The stragglers may sit in a poor basin: refit each from where it stands and from the best grid starts,
      # as more rounds of the same program (a program of their own cost a compile as long as the bootstrap).
      grid = law.starts(runs.log_inputs(law.variables))  # placed from the runs, not the padding
      starts_ExP = np.asarray(_best_starts(
          law, jnp.asarray(grid, float_dtype), log_inputs, log_loss_R, weights_R,
          options=options, count=int(min(extra_starts, len(grid))),
      ), np.float64)
      candidates = 1 + len(starts_ExP)
      theta0 = np.concatenate([theta[pending][:, None], np.broadcast_to(starts_ExP, (pending.size, *starts_ExP.shape))], axis=1)
      # A replicate's resampled runs follow from its id alone, so its candidates share its id.
      new_theta, new_objective, new_gradient = rounds(theta0.reshape(-1, law.num_params), np.repeat(replicate_ids[pending], candidates))
      new_objective = np.where(np.isfinite(new_objective), new_objective, np.inf)
      pick = np.arange(pending.size) * candidates + np.argmin(new_objective.reshape(pending.size, candidates), axis=1)
      better = new_objective[pick] < objective[pending]  # each replicate's best candidate, if it beats where it stood
      theta[pending[better]] = new_theta[pick[better]]
      objective[pending[better]] = new_objective[pick[better]]
      gradient[pending[better]] = new_gradient[pick[better]]
      converged = _converged(gradient, objective, tolerance)

  theta[~np.isfinite(objective)] = np.nan
  return theta, objective, converged


def _refit_general(problem, law, runs, fit, replicate_ids, data, *, extra_starts, chunk, width_of, sharding, float_dtype, tolerance):
  """Every replicate refitted by the fit's own search under its objective: ``(theta_KxP, objective_K, converged_K)``.

  The starts are the full-data optimum (free coordinates) and the
  ``extra_starts`` grid starts with the lowest full-data objective, shared by
  every replicate, all refined; one compiled program per chunk width.
  """
  parameters = problem.parameters
  warm_F = parameters.to_free(np.asarray([[fit.fit_params[n] for n in law.param_names]], np.float64))
  starts_SxF = warm_F
  if extra_starts:
    grid_SxF = parameters.starts(law.starts(runs.log_inputs(law.variables)))  # placed from the runs, not the padding
    best = _best_free_starts(
        problem, jnp.asarray(grid_SxF, float_dtype), data["log_inputs"], data["log_loss_R"], data["weights_R"],
        count=int(min(extra_starts, len(grid_SxF))),
    )
    starts_SxF = np.concatenate([warm_F, np.asarray(best, np.float64)])
  starts_SxF = jnp.asarray(starts_SxF, float_dtype)

  def refit(theta0, ids):
    del theta0  # every replicate starts from the same shared points
    return _refit_problem(problem, starts_SxF, ids, **data, keep=int(starts_SxF.shape[0]))

  count = len(replicate_ids)
  theta0 = np.zeros((count, law.num_params), float_dtype)
  theta, objective, gradient = _in_chunks(refit, theta0, replicate_ids, width_of(chunk), sharding)
  theta = np.asarray(theta, np.float64)
  converged = np.isfinite(objective) & _converged(gradient, objective, tolerance)
  theta[~np.isfinite(objective)] = np.nan
  return theta, objective, converged


def bootstrap_result(law: laws_lib.Law, fit: fitting.FitResult, theta_BxP, converged_B, *, seed: int, cluster: str | None) -> BootstrapResult:
  """A :class:`BootstrapResult` from every replicate's fit-space parameters ``theta_BxP``."""
  boot = BootstrapResult(
      law=law.name,
      names=tuple(law.natural_names),
      samples=_to_natural(law, theta_BxP),
      fit_samples=theta_BxP,
      estimate=dict(fit.params),
      n=len(theta_BxP),
      seed=int(seed),
      cluster=cluster,
      converged=np.asarray(converged_B, bool),
  )
  if boot.unconverged_share > UNCONVERGED_WARN_SHARE:
    warnings.warn(unconverged_message(boot), BootstrapWarning, stacklevel=3)
  return boot


def unconverged_message(boot: BootstrapResult) -> str:
  """The warning for a bootstrap with many unconverged replicates, saying what to do."""
  return (
      f"only {boot.num_converged} of {boot.n} bootstrap replicates of law {boot.law!r} converged "
      f"({boot.unconverged_share:.0%} did not); the intervals use those {boot.num_used} alone, which may be a "
      "biased selection. The law may be unidentifiable from these runs (see `diagnose`); try a simpler law, more "
      "runs, or more solver rounds (max_rounds, extra_starts)"
  )


# --- Fit files ------------------------------------------------------------------------------


def attach(fit: fitting.FitResult, boot: BootstrapResult) -> fitting.FitResult:
  """The fit with ``boot`` as its typed ``fit.bootstrap`` (what ``jaxscale fit --bootstrap`` writes)."""
  if boot.law != fit.law:
    raise ValueError(f"cannot attach a bootstrap of law {boot.law!r} to a fit of law {fit.law!r}")
  return dataclasses.replace(fit, bootstrap=boot)
