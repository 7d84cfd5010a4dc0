"""Which runs to train next: experimental design for a scaling study, and the risk of the decision.

A scaling study spends a compute budget ``S`` on ``K`` small runs to decide how to spend a large
budget ``C_target``. This module places those runs where they pin the decision down best: it
minimises the expected width of the 95% interval of a target (``N*(C_target)``,
``D*(C_target)`` or the loss there) by gradient.

How the width is computed (all pure JAX, float64, one compiled program):

* the Fisher information of a design is ``sum_k J_k J_k^T / sigma^2``, with ``J_k`` the
  gradient of the law's log loss with respect to its fit-space parameters at run ``k`` and
  ``sigma`` the noise of a run's log loss (from a fit's residuals); runs already trained add
  their own information;
* the delta method turns it into the target's variance, ``g^T F^-1 g`` with ``g`` the gradient
  of the log target;
* the expected 95% width is ``2 t sd``, with Student's ``t`` on the study's ``K - P`` degrees of
  freedom (:func:`t95`): the quantile its t-scaled interval will be formed with;
* that is averaged over samples of the prior (a fit's bootstrap, or a preset plus ranges), so
  the design is good for every law the data so far allow, not just the point estimate.

The design is continuous: each run has a compute share (a softmax, so the shares of ``S`` sum
to it exactly, above a floor of the smallest allowed run) and a position between the smallest
and the largest model its compute allows within the N range and the tokens-per-parameter
range (a sigmoid), so every point of the search space respects the constraints. Adam
(``optax``) follows ``jax.grad`` from several starts at once (``vmap``); the best design is
snapped to the realisable sizes, keeping each run's compute.

Example:
  >>> from jaxscale import design
  >>> prior = design.prior_from_preset("chinchilla", "besiroglu2024", seed=0)
  >>> plan = design.design(prior, study_compute=1e21, target_compute=1e24, runs=16)  # doctest: +SKIP
  >>> plan.expected_ci95_width < plan.baseline["expected_ci95_width"]  # doctest: +SKIP
  True

References:
  Atkinson, Donev & Tobias 2007, "Optimum Experimental Designs, with SAS" (c-optimality,
  Bayesian designs averaged over a prior).
  Hoffmann et al. 2022, "Training Compute-Optimal Large Language Models" (Eq. 4).
  Besiroglu et al. 2024, "Chinchilla Scaling: A replication attempt".
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
import types
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxscale import fitting
from jaxscale import laws as laws_lib
from jaxscale import runs as runs_lib

TARGETS = ("N_opt", "D_opt", "loss")
Z95 = 1.959963984540054
FLOPS = runs_lib.FLOPS_PER_PARAM_TOKEN
DEFAULT_RUNS = 16
DEFAULT_N_RANGE = (1e7, math.inf)
DEFAULT_TOKENS_PER_PARAM = (2.0, 200.0)  # the span of Chinchilla's IsoFLOP grids
DEFAULT_NOISE = 0.01  # log-loss noise of a run when neither residuals nor a fit say otherwise
DEFAULT_PRIOR_SAMPLES = 64
FRONTIER_POINTS = 5  # a target over a range of budgets averages the width at this many (log-spaced)
GRID_SPAN = 100.0  # the IsoFLOP baseline's largest budget over its smallest
# Weak prior precision on every fit-space parameter, in units of the noise: keeps F invertible
# for a degenerate design (all runs at one point) without informing a good one.
RIDGE = 1e-8
# Penalty on a run's compute above the largest allowed run (only when the N range is bounded).
OVERSIZE_PENALTY = 100.0


# --- The prior ------------------------------------------------------------------------------


class Prior(NamedTuple):
  """What is known before the new runs: samples of a law's parameters.

  Attributes:
    law: the law (Chinchilla's form).
    theta_BxP: fit-space parameter samples (``law.param_names`` order).
    estimate_P: the point estimate in fit space.
    noise: standard deviation of one run's log loss, or None if unknown.
    source: where it came from, for reports.
  """

  law: laws_lib.Law
  theta_BxP: np.ndarray
  estimate_P: np.ndarray
  noise: float | None
  source: str


def _check_law(law: laws_lib.Law) -> None:
  if set(law.natural_names) != {"E", "A", "B", "alpha", "beta"} or law.variables != ("N", "D"):
    raise ValueError(
        f"design needs a law of Chinchilla's form E + A/N^alpha + B/D^beta (law 'chinchilla'); got {law.name!r}"
    )


def _fit_space(law: laws_lib.Law, natural: Mapping[str, Any]) -> np.ndarray:
  with fitting.precision("float64"):
    theta = law.from_natural({k: jnp.asarray(np.asarray(v, np.float64)) for k, v in natural.items()})
    return np.stack([np.asarray(theta[n], np.float64) for n in law.param_names], axis=-1)


def _usable(law: laws_lib.Law, theta_BxP: np.ndarray) -> np.ndarray:
  """Samples with finite parameters and positive exponents (others have no optimum)."""
  alpha = theta_BxP[:, law.param_names.index("alpha")]
  beta = theta_BxP[:, law.param_names.index("beta")]
  return np.all(np.isfinite(theta_BxP), axis=1) & (alpha > 1e-3) & (beta > 1e-3)


def noise_from_fit(fit: fitting.FitResult) -> float:
  """The noise of one run's log loss implied by a fit's objective.

  For ``loss="mse"`` the objective is ``sum r^2 / 2``. For the Huber loss with a small
  threshold (Hoffmann et al.'s 1e-3, far below a run's noise) it is ``~ delta (sum |r| -
  R delta / 2)``, so the mean absolute residual follows, and Gaussian noise has
  ``sigma = sqrt(pi / 2) mean|r|``.
  """
  runs_used = max(int(fit.runs_used), 1)
  per_run = float(fit.objective) / runs_used
  if not (math.isfinite(per_run) and per_run > 0):
    return DEFAULT_NOISE
  if fit.loss == "mse" or per_run <= fit.delta**2 / 2:
    return math.sqrt(2.0 * per_run)
  return math.sqrt(math.pi / 2.0) * (per_run / fit.delta + fit.delta / 2.0)


def prior_from_fit(fit: fitting.FitResult | str, *, max_samples: int = DEFAULT_PRIOR_SAMPLES, seed: int = 0) -> Prior:
  """A prior from a fit with a bootstrap section (``jaxscale fit --bootstrap B --out fit.json``).

  Args:
    fit: a :class:`~jaxscale.fitting.FitResult` or the path of its JSON.
    max_samples: at most this many bootstrap samples are kept (a random subset).
    seed: seed of that subset.

  Returns:
    A :class:`Prior` whose noise comes from the fit's objective (:func:`noise_from_fit`).
  """
  from jaxscale import allocation

  source = fit if isinstance(fit, str) else f"fit of {getattr(fit, 'law', '?')}"
  if isinstance(fit, str):
    fit = fitting.FitResult.from_json(fit)
  law = fit.law_object
  _check_law(law)
  samples = allocation.bootstrap_params(fit, law)
  if samples is None:
    raise ValueError(
        f"{source}: the prior fit has no bootstrap, and a design averages over the bootstrap's samples; "
        "re-create it with `jaxscale fit RUNS --bootstrap 200 --out fit.json`, or use --preset with ranges"
    )
  theta = _fit_space(law, samples)
  theta = theta[_usable(law, theta)]
  if len(theta) < 2:
    raise ValueError(f"{source}: fewer than 2 usable bootstrap samples (finite, alpha and beta > 0); refit with more replicates")
  if len(theta) > max_samples:
    theta = theta[np.sort(np.random.default_rng(seed).choice(len(theta), max_samples, replace=False))]
  estimate = np.asarray([fit.fit_params[n] for n in law.param_names], np.float64)
  return Prior(law, theta, estimate, noise_from_fit(fit), source)


def prior_from_preset(
    law: str | laws_lib.Law,
    preset: str | Mapping[str, float],
    *,
    ranges: Mapping[str, tuple[float, float]] | None = None,
    spread: float = 0.1,
    samples: int = DEFAULT_PRIOR_SAMPLES,
    noise: float | None = None,
    seed: int = 0,
) -> Prior:
  """A prior of uniform draws around published parameters.

  Args:
    law: the law (Chinchilla's form).
    preset: a preset name of the law (e.g. ``"besiroglu2024"``) or natural parameters.
    ranges: ``{natural name: (low, high)}`` to draw uniformly from; names left out are drawn
      within ``spread``: ``value * exp(U(-spread, spread))`` (``alpha`` and ``beta`` too).
    spread: the default relative range.
    samples: prior draws ``B``.
    noise: noise of one run's log loss (None: :data:`DEFAULT_NOISE` is used).
    seed: seed of the draws.

  Returns:
    A :class:`Prior` (its point estimate is the preset itself).
  """
  law = laws_lib.get(law)
  _check_law(law)
  natural = dict(laws_lib.preset(law, preset) if isinstance(preset, str) else preset)
  missing = [k for k in law.natural_names if k not in natural]
  if missing:
    raise ValueError(f"the prior preset lacks {', '.join(missing)}; give all of {', '.join(law.natural_names)}")
  ranges = dict(ranges or {})
  unknown = sorted(set(ranges) - set(law.natural_names))
  if unknown:
    raise ValueError(f"prior ranges name unknown parameters {unknown}; use {', '.join(law.natural_names)}")
  if samples < 2:
    raise ValueError(f"a prior needs at least 2 samples, got {samples}")
  if not spread >= 0:
    raise ValueError(f"spread must be >= 0, got {spread}")
  rng = np.random.default_rng(seed)
  draws = {}
  for name in law.natural_names:
    if name in ranges:
      low, high = (float(x) for x in ranges[name])
      if not (0 < low <= high and math.isfinite(high)):
        raise ValueError(f"prior range of {name} must be 0 < low <= high, got ({low}, {high})")
      draws[name] = rng.uniform(low, high, samples)
    else:
      draws[name] = float(natural[name]) * np.exp(rng.uniform(-spread, spread, samples))
  theta = _fit_space(law, draws)
  label = preset if isinstance(preset, str) else "given parameters"
  return Prior(law, theta, _fit_space(law, natural), noise, f"preset {label} (spread {spread:g})")


# --- Pure JAX core --------------------------------------------------------------------------


def _natural(law: laws_lib.Law, theta_P):
  p = law.unflatten(theta_P)
  return p["a"], p["b"], p["e"], p["alpha"], p["beta"]


def log_optimum(law: laws_lib.Law, theta_P, log_compute):
  """``(log N*, log D*, log L*)`` of Chinchilla's closed form at ``log C`` (C = 6 N D).

  ``N* = G (C/6)^(beta/(alpha+beta))`` with ``G = (alpha A / (beta B))^(1/(alpha+beta))``.
  Pure JAX, differentiable in ``theta_P`` (fit space: ``a = log A``, ...).
  """
  a, b, e, alpha, beta = _natural(law, theta_P)
  log_c = log_compute - jnp.log(FLOPS)
  log_G = (jnp.log(alpha) + a - jnp.log(beta) - b) / (alpha + beta)
  log_N = log_G + beta / (alpha + beta) * log_c
  log_D = log_c - log_N
  log_L = law.log_loss(law.unflatten(theta_P), {"N": log_N, "D": log_D})
  return log_N, log_D, log_L


def closed_form_N(natural: Mapping[str, float], compute: float) -> float:
  """``N*(C)`` of Chinchilla's closed form from natural parameters (NumPy; for reports and checks)."""
  E, A, B, alpha, beta = (float(natural[k]) for k in ("E", "A", "B", "alpha", "beta"))
  G = (alpha * A / (beta * B)) ** (1.0 / (alpha + beta))
  return G * (compute / FLOPS) ** (beta / (alpha + beta))


def log_target(law: laws_lib.Law, theta_P, log_compute, target: str):
  """The log of the target at ``log C``: ``N_opt``, ``D_opt`` or ``loss`` (at the optimum)."""
  log_N, log_D, log_L = log_optimum(law, theta_P, log_compute)
  return {"N_opt": log_N, "D_opt": log_D, "loss": log_L}[target]


def log_compute_for_loss(law: laws_lib.Law, theta_P, log_loss):
  """The least ``log C`` whose optimal run reaches ``log_loss`` (inf below E).

  On Chinchilla's frontier ``L*(C) - E = k (C/6)^(-alpha beta/(alpha+beta))`` with
  ``k = A G^-alpha + B G^beta``.
  """
  a, b, e, alpha, beta = _natural(law, theta_P)
  log_G = (jnp.log(alpha) + a - jnp.log(beta) - b) / (alpha + beta)
  log_k = jnp.logaddexp(a - alpha * log_G, b + beta * log_G)
  gap = jnp.exp(log_loss) - jnp.exp(e)
  log_gap = jnp.log(jnp.where(gap > 0, gap, 1.0))
  log_c = (log_k - log_gap) * (alpha + beta) / (alpha * beta)
  return jnp.where(gap > 0, log_c + jnp.log(FLOPS), jnp.inf)


def fisher(law: laws_lib.Law, theta_P, log_N_K, log_D_K, weights_K):
  """Fisher information ``sum_k w_k J_k J_k^T`` of runs at ``(log N, log D)``, unit noise. ``(P, P)``."""

  def one(x, y):
    return jax.grad(lambda t: law.log_loss(law.unflatten(t), {"N": x, "D": y}))(theta_P)

  jacobian_KxP = jax.vmap(one)(log_N_K, log_D_K)
  return (jacobian_KxP * weights_K[:, None]).T @ jacobian_KxP


def target_sd(law: laws_lib.Law, theta_P, information_PxP, log_compute, target: str):
  """Delta-method standard deviation of the log target given the information (in noise units)."""
  g_P = jax.grad(lambda t: log_target(law, t, log_compute, target))(theta_P)
  ridge = RIDGE * jnp.eye(g_P.shape[0], dtype=g_P.dtype)
  return jnp.sqrt(g_P @ jnp.linalg.solve(information_PxP + ridge, g_P))


def range_sd(law: laws_lib.Law, theta_P, information_PxP, log_compute, target: str):
  """:func:`target_sd` at one ``log C`` (shape ``()``), or its mean over a frontier's budgets (shape ``(T,)``)."""
  log_compute = jnp.atleast_1d(log_compute)
  return jnp.mean(jax.vmap(lambda c: target_sd(law, theta_P, information_PxP, c, target))(log_compute))


class Setup(NamedTuple):
  """The numbers of a design problem (a pytree: new values reuse the compiled program)."""

  log_study: Any  # log S, shape=()
  log_min_run: Any  # log of the smallest allowed run's compute, shape=()
  log_max_run: Any  # log of the largest allowed run's compute (inf: none), shape=()
  log_N_range: Any  # (log N_min, log N_max), shape=(2,)
  log_ratio_range: Any  # (log r_min, log r_max) tokens per parameter, shape=(2,)
  log_min_tokens: Any  # log of the fewest tokens a run may train (-inf: no floor), shape=()
  log_compute: Any  # log C_target, shape=(), or the budgets of a frontier range, shape=(T,)
  existing_N: Any  # log N of runs already trained, shape=(R,)
  existing_D: Any  # log D of those runs, shape=(R,)
  existing_w: Any  # 1 for a trained run, 0 for padding, shape=(R,)


def runs_of(params, setup: Setup):
  """``(log N_K, log D_K, log C_K)`` of a continuous design; compute sums to S exactly.

  ``params = (share_logits_K, position_K)``: run ``k`` gets ``C_min + (S - K C_min)
  softmax(z)_k`` and sits at ``lo_k + (hi_k - lo_k) sigmoid(u_k)`` in log N, where ``[lo_k,
  hi_k]`` are the sizes its compute allows within the N and tokens-per-parameter ranges.
  """
  logits_K, position_K = params
  K = logits_K.shape[0]
  spare = jnp.log(jnp.exp(setup.log_study) - K * jnp.exp(setup.log_min_run))
  log_C_K = jnp.logaddexp(setup.log_min_run, spare + jax.nn.log_softmax(logits_K))
  log_c_K = log_C_K - jnp.log(FLOPS)
  lo_K = jnp.maximum(setup.log_N_range[0], 0.5 * (log_c_K - setup.log_ratio_range[1]))
  hi_K = jnp.minimum(setup.log_N_range[1], 0.5 * (log_c_K - setup.log_ratio_range[0]))
  hi_K = jnp.minimum(hi_K, log_c_K - setup.log_min_tokens)  # D = c / N >= D_min
  hi_K = jnp.maximum(hi_K, lo_K)
  log_N_K = lo_K + (hi_K - lo_K) * jax.nn.sigmoid(position_K)
  return log_N_K, log_c_K - log_N_K, log_C_K


def expected_sd(law: laws_lib.Law, theta_BxP, log_N_K, log_D_K, setup: Setup, target: str):
  """Mean over prior samples of the target's delta-method sd (noise units), and the per-sample sds."""

  def one(theta_P):
    information = fisher(law, theta_P, log_N_K, log_D_K, jnp.ones_like(log_N_K))
    information += fisher(law, theta_P, setup.existing_N, setup.existing_D, setup.existing_w)
    return range_sd(law, theta_P, information, setup.log_compute, target)

  sd_B = jax.vmap(one)(theta_BxP)
  return jnp.mean(sd_B), sd_B


def objective(params, law: laws_lib.Law, theta_BxP, setup: Setup, target: str):
  """The design objective: expected sd of the log target, plus a penalty on oversized runs."""
  log_N_K, log_D_K, log_C_K = runs_of(params, setup)
  mean_sd, _ = expected_sd(law, theta_BxP, log_N_K, log_D_K, setup, target)
  excess = jnp.where(jnp.isfinite(setup.log_max_run), jax.nn.relu(log_C_K - setup.log_max_run), 0.0)
  return mean_sd * (1.0 + OVERSIZE_PENALTY * jnp.sum(excess**2))


@functools.partial(jax.jit, static_argnames=("law", "target", "steps"))
def _optimise(law, starts, theta_BxP, setup, *, target: str, steps: int, learning_rate):
  """Adam on :func:`objective` from every start at once; returns final params and objectives."""
  optimiser = optax.adam(learning_rate)
  value_and_grad = jax.value_and_grad(objective)

  def run(params):
    def step(carry, _):
      params, state = carry
      value, grads = value_and_grad(params, law, theta_BxP, setup, target)
      updates, state = optimiser.update(grads, state, params)
      return (optax.apply_updates(params, updates), state), value

    (params, _), _ = jax.lax.scan(step, (params, optimiser.init(params)), None, length=steps)
    return params, objective(params, law, theta_BxP, setup, target)

  return jax.vmap(run)(starts)


@functools.partial(jax.jit, static_argnames=("law", "target"))
def _evaluate(law, theta_BxP, log_N_K, log_D_K, setup, *, target: str):
  return expected_sd(law, theta_BxP, log_N_K, log_D_K, setup, target)


# --- Constraints and the baseline -------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Constraints:
  """Where runs may go.

  Attributes:
    n_range: ``(N_min, N_max)`` parameters (``N_max`` may be ``inf``).
    tokens_per_param: ``(low, high)`` range of ``D / N``.
    sizes: realisable model sizes; the design is snapped to them (and ``n_range`` is their span).
    min_tokens: the fewest tokens any run may train (0: no floor), e.g. enough steps for the
      law to describe the run.
  """

  n_range: tuple[float, float] = DEFAULT_N_RANGE
  tokens_per_param: tuple[float, float] = DEFAULT_TOKENS_PER_PARAM
  sizes: tuple[float, ...] | None = None
  min_tokens: float = 0.0

  def checked(self) -> Constraints:
    sizes = None
    n_low, n_high = (float(x) for x in self.n_range)
    if self.sizes is not None:
      sizes = tuple(sorted(float(s) for s in self.sizes))
      if not sizes or not all(math.isfinite(s) and s > 0 for s in sizes):
        raise ValueError(f"sizes must be positive finite parameter counts, got {list(self.sizes)}")
      n_low, n_high = max(n_low, sizes[0]), min(n_high, sizes[-1])
      if n_low > n_high:
        raise ValueError(f"impossible constraints: no size in {list(sizes)} lies in the N range {self.n_range}")
    if not (0 < n_low <= n_high) or math.isnan(n_high):
      raise ValueError(f"impossible constraints: the N range must be 0 < N_min <= N_max, got {self.n_range}")
    r_low, r_high = (float(x) for x in self.tokens_per_param)
    if not (0 < r_low <= r_high and math.isfinite(r_high)):
      raise ValueError(f"impossible constraints: tokens per parameter must be 0 < low <= high < inf, got {self.tokens_per_param}")
    min_tokens = float(self.min_tokens)
    if not (math.isfinite(min_tokens) and min_tokens >= 0):
      raise ValueError(f"impossible constraints: min_tokens must be a finite number >= 0, got {self.min_tokens}")
    if min_tokens > r_high * n_high:
      raise ValueError(
          f"impossible constraints: at least {min_tokens:.3g} tokens per run, but the largest model "
          f"({n_high:.3g}) at {r_high:g} tokens per parameter trains only {r_high * n_high:.3g}")
    return Constraints((n_low, n_high), (r_low, r_high), sizes, min_tokens)

  @property
  def min_run_compute(self) -> float:
    return FLOPS * self.n_range[0] * max(self.n_range[0] * self.tokens_per_param[0], self.min_tokens)

  @property
  def max_run_compute(self) -> float:
    return FLOPS * self.n_range[1] ** 2 * self.tokens_per_param[1]


def isoflop_grid(study_compute: float, runs: int, tokens_per_param=DEFAULT_TOKENS_PER_PARAM, span: float = GRID_SPAN):
  """A Chinchilla-style IsoFLOP grid that spends exactly ``study_compute`` on ``runs`` runs.

  ``round(sqrt(runs))`` budgets geometric over ``span``, the runs shared out among them (the
  largest budgets get any extra), each budget's sizes spanning ``tokens_per_param``.

  Returns:
    ``(N_K, D_K, C_K)`` NumPy arrays.
  """
  if runs < 2:
    raise ValueError(f"an IsoFLOP grid needs at least 2 runs, got {runs}")
  budgets = max(1, min(runs // 2, round(math.sqrt(runs))))
  per_budget = np.full(budgets, runs // budgets)
  per_budget[budgets - runs % budgets:] += 1 if runs % budgets else 0
  shape = np.geomspace(1.0, span, budgets) if budgets > 1 else np.ones(1)
  scale = study_compute / float(np.sum(shape * per_budget))
  N, D, C = [], [], []
  for budget, count in zip(shape * scale, per_budget):
    ratios = np.geomspace(tokens_per_param[1], tokens_per_param[0], count)
    n = np.sqrt(budget / (FLOPS * ratios))
    N += list(n)
    D += list(n * ratios)
    C += [budget] * count
  return np.asarray(N), np.asarray(D), np.asarray(C)


# --- The public entry point ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Plan:
  """A proposed batch of runs and what it is expected to buy.

  Attributes:
    N, D, C: the proposed runs, shape ``(K,)`` each (``C = 6 N D``; sums to the study compute).
    target: ``"N_opt"``, ``"D_opt"`` or ``"loss"``; ``target_compute``: ``C_target``.
    estimate: the target under the prior's point estimate.
    expected_ci95_width: expected width of the 95% interval of the *log* target (natural log;
      0.1 is about +-5%) after fitting the existing and proposed runs, averaged over the prior.
    expected_ci95_ratio: ``exp`` of it, the interval's high over low end.
    baseline: the same figures for an IsoFLOP grid of equal compute and runs (and its runs).
    existing: how many runs were already trained; ``existing_ci95_width``: their width alone (inf
      when they cannot identify the law).
    noise: the noise of one run's log loss used.
    decision: the risk of the allocation (see :func:`decision_risk`).
    prior: where the prior came from.
    target_range: ``(low, high)`` for a frontier target: the widths are then averaged over
      :data:`FRONTIER_POINTS` log-spaced budgets of the range, and ``target_compute``,
      ``estimate`` and ``decision`` are at its high end.
  """

  N: np.ndarray
  D: np.ndarray
  C: np.ndarray
  target: str
  target_compute: float
  study_compute: float
  estimate: float
  expected_ci95_width: float
  expected_ci95_ratio: float
  baseline: dict[str, Any]
  existing: int
  existing_ci95_width: float
  noise: float
  decision: dict[str, Any]
  prior: str
  constraints: Constraints
  target_range: tuple[float, float] | None = None

  def runs(self) -> list[dict[str, float]]:
    return [{"N": float(n), "D": float(d), "C": float(c)} for n, d, c in zip(self.N, self.D, self.C)]

  def to_dict(self) -> dict[str, Any]:
    return {
        "target": self.target,
        "target_compute": self.target_compute,
        "target_range": None if self.target_range is None else list(self.target_range),
        "study_compute": self.study_compute,
        "estimate": self.estimate,
        "runs": self.runs(),
        "expected_ci95_width": self.expected_ci95_width,
        "expected_ci95_ratio": self.expected_ci95_ratio,
        "baseline": self.baseline,
        "width_ratio_vs_baseline": self.baseline["expected_ci95_width"] / self.expected_ci95_width,
        "existing_runs": self.existing,
        "existing_ci95_width": self.existing_ci95_width,
        "noise": self.noise,
        "decision": self.decision,
        "prior": self.prior,
        "constraints": {
            "n_range": list(self.constraints.n_range),
            "tokens_per_param": list(self.constraints.tokens_per_param),
            "sizes": None if self.constraints.sizes is None else list(self.constraints.sizes),
        },
    }


def _setup(constraints: Constraints, study_compute, target_compute, existing_N, existing_D) -> Setup:
  # Trained runs are padded (weight 0) to a power of two, at least 8: one compiled program serves
  # a first design and the next batches after a few trained runs.
  R = max(8, 1 << max(len(existing_N) - 1, 0).bit_length())
  pad = R - len(existing_N)
  n_max = constraints.n_range[1]
  return Setup(
      log_study=jnp.log(study_compute),
      log_min_run=jnp.log(constraints.min_run_compute),
      log_max_run=jnp.asarray(math.log(constraints.max_run_compute) if math.isfinite(n_max) else math.inf),
      log_N_range=jnp.log(jnp.asarray(constraints.n_range)),
      log_ratio_range=jnp.log(jnp.asarray(constraints.tokens_per_param)),
      log_min_tokens=jnp.asarray(math.log(constraints.min_tokens) if constraints.min_tokens > 0 else -math.inf),
      log_compute=jnp.log(jnp.asarray(target_compute, jnp.float64)),
      existing_N=jnp.asarray(np.concatenate([np.log(existing_N), np.zeros(pad)])),
      existing_D=jnp.asarray(np.concatenate([np.log(existing_D), np.zeros(pad)])),
      existing_w=jnp.asarray(np.concatenate([np.ones(len(existing_N)), np.zeros(pad)])),
  )


def _snap(constraints: Constraints, N_K, C_K):
  """Each run's N moved to the nearest realisable size whose tokens per parameter stay in range."""
  sizes = np.asarray(constraints.sizes)
  r_low, r_high = constraints.tokens_per_param
  snapped = np.empty_like(N_K)
  for k, (n, c) in enumerate(zip(N_K, C_K)):
    ratio = c / (FLOPS * sizes**2)
    ok = (ratio >= r_low * (1 - 1e-9)) & (ratio <= r_high * (1 + 1e-9)) & (c / (FLOPS * sizes) >= constraints.min_tokens * (1 - 1e-9))
    if not ok.any():
      raise ValueError(
          f"impossible constraints: run {k} has {c:.3g} FLOPs but no size in {sizes.tolist()} trains it at "
          f"{r_low:g} to {r_high:g} tokens per parameter"
          + (f" and at least {constraints.min_tokens:.3g} tokens" if constraints.min_tokens else "")
          + "; add sizes or widen --tokens-per-param"
      )
    candidates = sizes[ok]
    snapped[k] = candidates[np.argmin(np.abs(np.log(candidates) - math.log(n)))]
  return snapped


def _existing_runs(existing, law) -> tuple[np.ndarray, np.ndarray]:
  if existing is None:
    return np.zeros(0), np.zeros(0)
  existing = runs_lib.load(existing)
  keep = existing.weight > 0
  return existing.N[keep], existing.D[keep]


def noise_from_runs(prior: Prior, existing) -> float:
  """Robust noise of one run's log loss from residuals under the prior's estimate (1.4826 MAD)."""
  existing = runs_lib.load(existing)
  with fitting.precision("float64"):
    predicted = np.asarray(prior.law.log_loss(prior.law.unflatten(jnp.asarray(prior.estimate_P)), {
        "N": jnp.asarray(np.log(existing.N)), "D": jnp.asarray(np.log(existing.D))}))
  residuals = np.log(existing.loss) - predicted
  return float(1.4826 * np.median(np.abs(residuals - np.median(residuals))))


def design(
    prior: Prior | fitting.FitResult | str,
    *,
    study_compute: float,
    target_compute: float,
    runs: int = DEFAULT_RUNS,
    target: str = "N_opt",
    constraints: Constraints | None = None,
    existing: Any = None,
    noise: float | None = None,
    starts: int = 8,
    steps: int = 400,
    learning_rate: float = 0.05,
    seed: int = 0,
) -> Plan:
  """Proposes ``runs`` runs spending ``study_compute`` that best pin down ``target`` at ``target_compute``.

  Args:
    prior: a :class:`Prior`, or a bootstrapped fit (object or ``fit.json`` path).
    study_compute: ``S``, the FLOPs of the new runs together (``6 N D`` each).
    target_compute: ``C_target``, the budget the study decides about; or ``(low, high)``: the
      frontier over that range, whose average interval width (over :data:`FRONTIER_POINTS`
      log-spaced budgets) the design minimises.
    runs: ``K`` new runs.
    target: ``"N_opt"`` (default), ``"D_opt"`` or ``"loss"`` (at the optimum), all at ``C_target``.
    constraints: N range, tokens-per-parameter range, realisable sizes (see :class:`Constraints`).
    existing: runs already trained (a path, DataFrame or RunSet with N, D; ``loss`` too to
      estimate the noise); their information is added, so the batch complements them.
    noise: noise of one run's log loss; default: the existing runs' residuals, else the
      prior's (a fit's objective), else :data:`DEFAULT_NOISE`.
    starts, steps, learning_rate: Adam restarts (vmapped), steps and step size.
    seed: seed of the random starts.

  Returns:
    A :class:`Plan` with the runs, the expected 95% width, the IsoFLOP baseline's and the
    decision risk.

  Example:
    >>> prior = prior_from_preset("chinchilla", "besiroglu2024")
    >>> plan = design(prior, study_compute=1e21, target_compute=1e24)  # doctest: +SKIP
    >>> plan.runs()[0]  # doctest: +SKIP
    {'N': 1.2e+08, 'D': 2.4e+10, 'C': 1.7e+19}
  """
  if not isinstance(prior, Prior):
    prior = prior_from_fit(prior)
  law = prior.law
  if target not in TARGETS:
    raise ValueError(f"unknown target {target!r}; use one of {', '.join(TARGETS)}")
  constraints = (constraints or Constraints()).checked()
  target_range = None
  if isinstance(target_compute, (tuple, list)):
    if len(target_compute) != 2:
      raise ValueError(f"a target range is (low, high) FLOPs, got {target_compute!r}")
    target_range = tuple(float(x) for x in target_compute)
    if not (all(math.isfinite(x) and x > 0 for x in target_range) and target_range[0] < target_range[1]):
      raise ValueError(f"a target range must be 0 < low < high FLOPs, got {target_compute!r}")
    target_compute = target_range[1]
  for name, value in (("study compute", study_compute), ("target compute", target_compute)):
    if not (isinstance(value, (int, float, np.floating)) and math.isfinite(value) and value > 0):
      raise ValueError(f"{name} must be a positive finite number of FLOPs, got {value!r}")
  if isinstance(runs, bool) or not isinstance(runs, (int, np.integer)) or runs < 1:
    raise ValueError(f"runs must be a positive integer, got {runs!r}")
  if starts < 1 or steps < 1:
    raise ValueError(f"starts and steps must be >= 1, got starts={starts}, steps={steps}")
  existing_N, existing_D = _existing_runs(existing, law)
  smallest = constraints.min_run_compute
  if study_compute < runs * smallest:
    raise ValueError(
        f"study compute {study_compute:.3g} FLOPs is less than {runs} runs of the smallest allowed size "
        f"({smallest:.3g} FLOPs each: N={constraints.n_range[0]:.3g} at {constraints.tokens_per_param[0]:g} tokens "
        "per parameter); raise the budget, lower N_min, or ask for fewer runs"
    )
  if study_compute > runs * constraints.max_run_compute:
    raise ValueError(
        f"impossible constraints: {runs} runs of at most {constraints.max_run_compute:.3g} FLOPs each (N_max "
        f"{constraints.n_range[1]:.3g} at {constraints.tokens_per_param[1]:g} tokens per parameter) cannot spend "
        f"{study_compute:.3g} FLOPs; raise N_max or ask for more runs"
    )
  largest_data = max([study_compute / runs] + list(FLOPS * existing_N * existing_D))
  if (target_range[0] if target_range else target_compute) <= max(largest_data, study_compute):
    raise ValueError(
        f"target compute {target_compute:.3g} FLOPs is inside the data (the study spends {study_compute:.3g} and "
        f"its largest run may cost up to that); a design is for extrapolation: choose a target above the study compute"
    )
  if noise is None:
    noise = noise_from_runs(prior, existing) if existing is not None and len(existing_N) >= 3 else prior.noise
    noise = DEFAULT_NOISE if noise is None or not noise > 0 else noise
  if not (math.isfinite(noise) and noise > 0):
    raise ValueError(f"noise must be a positive standard deviation of log loss, got {noise}")

  with fitting.precision("float64"):
    points = np.geomspace(*target_range, FRONTIER_POINTS) if target_range else target_compute
    setup = _setup(constraints, study_compute, points, existing_N, existing_D)
    theta_BxP = jnp.asarray(prior.theta_BxP)
    key_logits, key_position = jax.random.split(jax.random.key(seed))
    logits = jnp.concatenate([jnp.zeros((1, runs)), 1.5 * jax.random.normal(key_logits, (starts - 1, runs))])
    alternating = jnp.where(jnp.arange(runs) % 2 == 0, -3.0, 3.0)[None]
    position = jnp.concatenate([alternating, 2.0 * jax.random.normal(key_position, (starts - 1, runs))])
    final, values = _optimise(law, (logits, position), theta_BxP, setup, target=target, steps=steps, learning_rate=learning_rate)
    values = np.where(np.isfinite(np.asarray(values)), np.asarray(values), np.inf)
    best = int(np.argmin(values))
    log_N, log_D, log_C = (np.asarray(x) for x in runs_of(jax.tree.map(lambda x: x[best], final), setup))
    N, C = np.exp(log_N), np.exp(log_C)
    C = C * (study_compute / C.sum())  # exact to rounding
    if constraints.sizes is not None:
      N = _snap(constraints, N, C)
    D = C / (FLOPS * N)
    quantile = t95(len(existing_N) + runs, law.num_params)
    width = lambda N_K, D_K, s: 2 * quantile * noise * float(  # noqa: E731
        _evaluate(law, theta_BxP, jnp.log(jnp.asarray(N_K)), jnp.log(jnp.asarray(D_K)), s, target=target)[0])
    designed = width(N, D, setup)
    grid_N, grid_D, grid_C = isoflop_grid(study_compute, runs, constraints.tokens_per_param)
    baseline = width(grid_N, grid_D, setup)
    alone = math.inf
    if len(existing_N) >= law.num_params:
      alone = _existing_width(law, theta_BxP, setup, target, noise)
    estimate = float(np.exp(log_target(law, jnp.asarray(prior.estimate_P), jnp.log(target_compute), target)))
    risk = decision_risk(prior, target_compute, shrink=None)
    risk_after = decision_risk(prior, target_compute, shrink=_shrink(prior, N, D, setup, target, noise))
  decision = {**risk, "after_batch": risk_after, "value_of_batch": {
      "expected_wasted_compute_reduction": risk["wasted_compute"]["mean"] - risk_after["wasted_compute"]["mean"],
      "expected_loss_given_up_reduction": risk["loss_given_up"]["mean"] - risk_after["loss_given_up"]["mean"],
  }}
  return Plan(
      N=N, D=D, C=C, target=target, target_compute=float(target_compute), study_compute=float(study_compute),
      estimate=estimate, expected_ci95_width=designed, expected_ci95_ratio=_ratio(designed),
      baseline={
          "design": "isoflop_grid", "expected_ci95_width": baseline, "expected_ci95_ratio": _ratio(baseline),
          "runs": [{"N": float(n), "D": float(d), "C": float(c)} for n, d, c in zip(grid_N, grid_D, grid_C)],
      },
      existing=len(existing_N), existing_ci95_width=alone, noise=float(noise), decision=decision,
      prior=prior.source, constraints=constraints, target_range=target_range,
  )


def t95(runs: int, num_params: int) -> float:
  """The two-sided 95% quantile the study's interval will be formed with: Student's t on its
  ``runs - num_params`` degrees of freedom, as the t-scaled fixed-design interval
  (:mod:`jaxscale.fixed_bootstrap`) widens its percentiles (z where no degree is left).

  Example:
    >>> round(t95(16, 5), 3)  # 11 degrees of freedom, against z = 1.96
    2.201
  """
  from scipy import stats

  dof = runs - num_params
  return float(stats.t.ppf(0.975, dof)) if dof >= 1 else Z95


def _ratio(width: float) -> float:
  """``exp(width)``, the interval's high over low end; inf past a float (a prior that barely knows the law)."""
  return math.exp(width) if width < 700 else math.inf


def _existing_width(law, theta_BxP, setup: Setup, target: str, noise: float) -> float:
  """The expected width from the trained runs alone (no new runs)."""

  @jax.vmap
  def one(theta_P):
    information = fisher(law, theta_P, setup.existing_N, setup.existing_D, setup.existing_w)
    return range_sd(law, theta_P, information, setup.log_compute, target)

  return 2 * t95(int(np.count_nonzero(setup.existing_w)), law.num_params) * noise * float(jnp.mean(one(theta_BxP)))


def expected_width(prior: Prior, N, D, *, target_compute: float, target: str = "N_opt", existing=None, noise: float | None = None) -> float:
  """Expected 95% width of the log target for any design ``(N, D)`` (e.g. a grid, a random design).

  ``target_compute`` may be ``(low, high)``: the width averaged over the frontier's range, as :func:`design`.
  """
  N, D = np.asarray(N, np.float64), np.asarray(D, np.float64)
  existing_N, existing_D = _existing_runs(existing, prior.law)
  noise = noise or prior.noise or DEFAULT_NOISE
  with fitting.precision("float64"):
    points = np.geomspace(*target_compute, FRONTIER_POINTS) if isinstance(target_compute, (tuple, list)) else target_compute
    setup = _setup(Constraints().checked(), float(np.sum(FLOPS * N * D)), points, existing_N, existing_D)
    sd = _evaluate(prior.law, jnp.asarray(prior.theta_BxP), jnp.log(jnp.asarray(N)), jnp.log(jnp.asarray(D)), setup, target=target)[0]
  return 2 * t95(len(existing_N) + N.size, prior.law.num_params) * noise * float(sd)


# --- The risk of the decision -------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("law",))
def _waste(law, theta_BxP, estimate_P, log_compute, shrink):
  """Per prior sample taken as the truth: wasted compute fraction and loss given up by following the estimate.

  ``shrink`` scales every sample's deviation of log N* from the estimate's (1: as now).
  """
  log_N_hat, _, _ = log_optimum(law, estimate_P, log_compute)

  def one(theta_P):
    log_N_true, _, log_L_true = log_optimum(law, theta_P, log_compute)
    log_N = log_N_true + shrink * (log_N_hat - log_N_true)
    log_D = log_compute - jnp.log(FLOPS) - log_N
    log_L = law.log_loss(law.unflatten(theta_P), {"N": log_N, "D": log_D})
    needed = log_compute_for_loss(law, theta_P, log_L)
    return -jnp.expm1(needed - log_compute), jnp.exp(log_L) - jnp.exp(log_L_true)

  return jax.vmap(one)(theta_BxP)


def _summary(values: np.ndarray) -> dict[str, float]:
  values = values[np.isfinite(values)]
  return {
      "mean": float(np.mean(values)), "median": float(np.median(values)),
      "p90": float(np.percentile(values, 90)), "p95": float(np.percentile(values, 95)),
  }


def decision_risk(prior: Prior, target_compute: float, *, shrink: float | None = None) -> dict[str, Any]:
  """The bootstrap distribution of the cost of following the point estimate's allocation.

  Each prior sample is taken in turn as the truth. ``wasted_compute`` is the fraction of
  ``C_target`` beyond what the truth's optimum needs to reach the loss that the estimate's
  allocation reaches; ``loss_given_up`` is that loss minus the truth's optimal loss at
  ``C_target``. ``shrink`` (0 to 1) scales the misallocation, to value a batch that narrows
  the interval of ``log N*`` by that factor.

  Returns:
    ``{"wasted_compute": {mean, median, p90, p95}, "loss_given_up": {...}, "shrink": s}``.
  """
  shrink = 1.0 if shrink is None else float(shrink)
  with fitting.precision("float64"):
    waste, loss = _waste(prior.law, jnp.asarray(prior.theta_BxP), jnp.asarray(prior.estimate_P), jnp.log(target_compute), shrink)
  return {"wasted_compute": _summary(np.asarray(waste)), "loss_given_up": _summary(np.asarray(loss)), "shrink": shrink}


def _shrink(prior: Prior, N, D, setup: Setup, target: str, noise: float) -> float:
  """How much a batch narrows the prior's spread of log N*: posterior sd over prior sd.

  The prior's information is the inverse of its samples' covariance (fit space); the batch's
  Fisher information is added at the point estimate.
  """
  law = prior.law
  theta_BxP = jnp.asarray(prior.theta_BxP)
  log_c = jnp.atleast_1d(setup.log_compute)[-1]  # a frontier range: its largest budget
  log_N_B = jax.vmap(lambda t: log_optimum(law, t, log_c)[0])(theta_BxP)
  prior_sd = float(jnp.std(log_N_B))
  covariance = np.cov(np.asarray(prior.theta_BxP), rowvar=False)
  information = np.linalg.pinv(covariance)
  estimate = jnp.asarray(prior.estimate_P)
  information = jnp.asarray(information) + fisher(law, estimate, jnp.log(jnp.asarray(N)), jnp.log(jnp.asarray(D)), jnp.ones(len(N))) / noise**2
  post_sd = float(target_sd(law, estimate, information, log_c, "N_opt"))
  del target
  if not (prior_sd > 0 and math.isfinite(post_sd)):
    return 1.0
  return float(min(1.0, post_sd / prior_sd))


# --- The figure ---------------------------------------------------------------------------------


def frontier_band(prior: Prior, compute_C, level: float = 0.95):
  """``(N*_estimate, N*_low, N*_high)`` of the frontier at budgets ``compute_C`` over the prior's samples."""
  log_c = np.log(np.asarray(compute_C, np.float64))
  with fitting.precision("float64"):
    at = jax.vmap(lambda t: jax.vmap(lambda c: log_optimum(prior.law, t, c)[0])(jnp.asarray(log_c)))
    estimate = np.exp(np.asarray(at(jnp.asarray(prior.estimate_P)[None]))[0])
    samples = np.exp(np.asarray(at(jnp.asarray(prior.theta_BxP))))
  tail = 100 * (1 - level) / 2
  return estimate, np.nanpercentile(samples, tail, axis=0), np.nanpercentile(samples, 100 - tail, axis=0)


def plot_plan(plan: Plan, prior: Prior, path=None, *, existing=None):
  """The proposed runs on the (N, D) plane with IsoFLOP lines, trained runs, the grid and the frontier's band.

  Args:
    plan: from :func:`design`.
    prior: the prior the plan was made with (for the frontier's band).
    path: write a PNG here when given.
    existing: the runs already trained, if any.

  Returns:
    The :class:`matplotlib.figure.Figure` (built without pyplot).
  """
  from matplotlib.figure import Figure

  figure = Figure(figsize=(6.4, 4.8), layout="constrained")
  axes = figure.add_subplot()
  points = [plan.N, plan.D] + [np.asarray([r["N"] for r in plan.baseline["runs"]]), np.asarray([r["D"] for r in plan.baseline["runs"]])]
  existing_N, existing_D = _existing_runs(existing, prior.law)
  compute = np.geomspace(np.min(np.concatenate([plan.C, FLOPS * existing_N * existing_D])) / 3, plan.target_compute * 3, 80)
  estimate, low, high = frontier_band(prior, compute)
  n_all = np.concatenate([points[0], points[2], existing_N, estimate])
  d_all = np.concatenate([points[1], points[3], existing_D, compute / (FLOPS * estimate)])
  n_lim = (n_all.min() / 3, n_all.max() * 3)
  d_lim = (d_all.min() / 3, d_all.max() * 3)
  n_line = np.geomspace(*n_lim, 50)
  for c in np.geomspace(10.0 ** math.floor(math.log10(compute[0])), 10.0 ** math.ceil(math.log10(compute[-1])),
                        math.ceil(math.log10(compute[-1])) - math.floor(math.log10(compute[0])) + 1):
    axes.plot(n_line, c / (FLOPS * n_line), color="0.85", lw=0.8, zorder=0)
  axes.plot(estimate, compute / (FLOPS * estimate), color="#d62728", lw=1.5, label="frontier N*(C), D*(C) (estimate)")
  band_N = np.concatenate([low, high[::-1]])
  band_D = np.concatenate([compute / (FLOPS * low), (compute / (FLOPS * high))[::-1]])
  axes.fill(band_N, band_D, color="#d62728", alpha=0.2, lw=0, label="frontier, 95% of the prior")
  if len(existing_N):
    axes.scatter(existing_N, existing_D, s=18, color="0.4", marker="o", label=f"trained runs ({len(existing_N)})")
  axes.scatter(points[2], points[3], s=30, facecolor="none", edgecolor="#1f77b4", label="IsoFLOP grid (baseline)")
  axes.scatter(plan.N, plan.D, s=50, color="#2ca02c", marker="*", zorder=3, label=f"proposed runs ({len(plan.N)})")
  target_N = plan.estimate if plan.target == "N_opt" else estimate[np.argmin(np.abs(np.log(compute / plan.target_compute)))]
  axes.scatter([target_N], [plan.target_compute / (FLOPS * target_N)], marker="X", s=60, color="black",
               label=f"target C = {plan.target_compute:.0e}")
  axes.set(xscale="log", yscale="log", xlim=n_lim, ylim=d_lim, xlabel="parameters N", ylabel="tokens D",
           title=f"Design: 95% width of ln {plan.target} {plan.expected_ci95_width:.2f} vs grid {plan.baseline['expected_ci95_width']:.2f}")
  axes.legend(fontsize=7, loc="upper left")
  if path is not None:
    figure.savefig(path, dpi=120)
  return figure


class _CallableModule(types.ModuleType):
  """Lets ``jaxscale.design(...)`` call :func:`design` while ``jaxscale.design.Constraints`` etc. stay reachable."""

  def __call__(self, *args, **kwargs):
    return design(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
