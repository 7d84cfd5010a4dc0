"""Honest intervals: confidence for the mean law, prediction for a new run, and profile likelihood.

Three different questions, three intervals, each saying which it is:

* **confidence** (``kind="confidence"``): where the *mean* law lies at a point.
  From the fit's bootstrap samples when it has them, else the delta method:
  the covariance of the parameters at the optimum pushed through the law's
  gradient, with a Student-t quantile on ``R - P`` degrees of freedom. For
  least squares that is the Gauss-Newton ``sigma^2 (J^T W J)^-1``; for Huber
  (the default) Huber's sandwich, since a near-median estimator scatters more
  than least squares would (``pi / 2`` in variance under Gaussian noise).
* **prediction** (``kind="prediction"``): where the loss of a *new run* at that
  point will land. The confidence spread plus the run-to-run noise ``sigma``
  estimated from the residuals (``sqrt(sum w r^2 / (R - P))``), so it does not
  shrink to zero with more runs. This is the interval to hold a new training
  run against.
* **profile likelihood** (:func:`profile`): for one parameter or a derived
  quantity such as the compute-optimal exponent ``a = beta / (alpha + beta)``,
  the values ``v`` whose best constrained fit is not significantly worse than
  the best fit: ``(SSE(v) - SSE) / s^2 <= F_{1, R-P}(level)`` with
  ``s^2 = SSE / (R - P)``, the likelihood-ratio test under Gaussian noise on the
  objective's residuals (log loss, or raw loss for ``mse_raw``) with the noise
  estimated from the runs (Bates & Watts' profile; ``R log(SSE(v) / SSE)``
  against ``chi2_1`` is its large-sample limit and under-covers with tens of runs). It follows the curved, asymmetric shape of the likelihood
  that the delta method flattens. Every constrained fit of the grid is one
  compiled LM program, the constraint a stiff penalty residual.

Example:
  >>> from jaxscale import fitting, intervals
  >>> fit = intervals.attach(fitting.fit("chinchilla", runs), runs)  # doctest: +SKIP
  >>> intervals.predict(fit, {"N": [7e10], "D": [1.4e12]}, kind="prediction").low  # doctest: +SKIP
  >>> intervals.profile(fit, runs, "a").interval  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from jaxscale import fitting
from jaxscale import laws as laws_lib
from jaxscale import runs as runs_lib
from jaxscale import solver as solver_lib

KINDS = ("confidence", "prediction")
LEVEL = 0.95
PROFILE_POINTS = 41
PROFILE_WIDTH = 5.0  # the profile grid spans +-5 delta-method standard errors
# The constraint's penalty, relative to the curvature of the SSE along the quantity: violations ~1e-8 of the span.
PENALTY = 1e8


def _space(fit: fitting.FitResult) -> str:
  return fit.extras.get("objective", {}).get("space", "log")


def _residual_fn(law, log_inputs, observed_R, space: str):
  def residuals(theta):
    log_predicted = law.log_loss(law.unflatten(theta), log_inputs)
    return (jnp.exp(log_predicted) if space == "raw" else log_predicted) - observed_R

  return residuals


@functools.partial(jax.jit, static_argnames=("law", "space"))
def _residuals_and_jacobian(law, theta_P, log_inputs, observed_R, *, space):
  residual_fn = _residual_fn(law, log_inputs, observed_R, space)
  return residual_fn(theta_P), jax.jacfwd(residual_fn)(theta_P)


@functools.partial(jax.jit, static_argnames=("law", "space"))
def _center_and_gradient(law, theta_P, log_inputs, *, space):
  """The quantity intervals are symmetric in (log loss, or the loss for raw-space fits) and its gradient ``(Q, P)``."""
  def center(theta):
    log_loss = law.log_loss(law.unflatten(theta), log_inputs)
    return jnp.exp(log_loss) if space == "raw" else log_loss

  return center(theta_P), jax.jacfwd(center)(theta_P)


def noise_section(fit: fitting.FitResult, runs: Any) -> dict[str, Any]:
  """The run-to-run noise and parameter covariance at ``fit``'s optimum (JSON-ready).

  Returns:
    ``{"space", "sigma", "dof", "runs", "covariance", "estimator"}``: ``sigma``
    estimates the noise of one run's (log) loss, ``covariance`` is the ``P x P``
    covariance of the fit-space parameters (``law.param_names`` order; pinned
    parameters have zero rows): Gauss-Newton for least squares, Huber's
    sandwich for a Huber fit (``estimator`` says which), ``dof = R - P_free``.
  """
  law = fit.law_object
  runs = runs_lib.load(runs)
  space = _space(fit)
  pinned = set(fit.extras.get("objective", {}).get("fixed", {}))
  free = [i for i, n in enumerate(law.param_names) if n not in pinned]
  with fitting.precision("float64"):
    log_inputs, log_loss_R, weights_R = fitting.prepare(law, runs, jnp.float64)
    observed_R = jnp.exp(log_loss_R) if space == "raw" else log_loss_R
    theta = jnp.asarray([fit.fit_params[n] for n in law.param_names])
    residuals_R, jacobian_RxP = (np.asarray(x) for x in _residuals_and_jacobian(law, theta, log_inputs, observed_R, space=space))
  weights_R = np.asarray(weights_R)
  used = int(np.count_nonzero(weights_R > 0))
  dof = used - len(free)
  if dof < 1:
    raise ValueError(f"{used} runs for {len(free)} free parameters leave no degrees of freedom for the noise; add runs")
  # Weights are relative (mean 1 over used runs), so sigma is the noise of a weight-1 run.
  scale = weights_R / weights_R[weights_R > 0].mean()
  sigma2 = float(np.sum(scale * residuals_R**2) / dof)
  J = jacobian_RxP[:, free]
  normal = (J * scale[:, None]).T @ J
  covariance = np.zeros((law.num_params, law.num_params))
  delta = _huber_delta(fit)
  if delta is None:
    covariance[np.ix_(free, free)] = sigma2 * np.linalg.pinv(normal)
  else:
    covariance[np.ix_(free, free)] = _huber_covariance(residuals_R, scale, J, normal, delta, dof)
  return {"space": space, "sigma": math.sqrt(sigma2), "dof": dof, "runs": used, "covariance": covariance.tolist(),
          "estimator": "least squares" if delta is None else f"huber (delta={delta:g}), sandwich"}


def _huber_delta(fit: fitting.FitResult) -> float | None:
  """The Huber threshold when ``fit`` minimised Huber on log loss, else None (a least-squares covariance)."""
  section = fit.extras.get("objective")
  if section is not None:
    return float(fit.delta) if section["name"] == "huber_log" else None
  return float(fit.delta) if fit.loss == "huber" else None


def _huber_covariance(residuals_R, scale_R, J_RxF, normal_FxF, delta: float, dof: int) -> np.ndarray:
  """Huber's M-estimator (sandwich) covariance ``A^-1 B A^-1`` of the free parameters.

  ``B = sum w psi(r)^2 J^T J`` (``psi`` the clipped residual) scaled by ``R / dof``;
  ``A = E[psi'] J^T W J`` with ``E[psi'] = P(|r| < delta)`` estimated with a Gaussian
  kernel (Silverman's bandwidth on a robust scale): with the default tiny ``delta``
  only a handful of runs fall inside it, and the plain count is too noisy. The
  least-squares covariance ``sigma^2 (J^T W J)^-1`` would understate a
  near-median estimator's spread (by ``pi / 2`` in variance under Gaussian noise).
  """
  used = scale_R > 0
  r, w = residuals_R[used], scale_R[used]
  psi = np.clip(r, -delta, delta)
  meat = (J_RxF[used] * (w * psi**2)[:, None]).T @ J_RxF[used] * (r.size / dof)
  robust = 1.4826 * np.median(np.abs(r - np.median(r)))
  spread = robust if robust > 0 else np.sqrt(np.mean(r**2))
  bandwidth = 1.06 * spread * r.size ** -0.2
  inside = stats.norm.cdf((delta - r) / bandwidth) - stats.norm.cdf((-delta - r) / bandwidth)
  slope = float(np.sum(w * inside) / np.sum(w))
  bread = np.linalg.pinv(slope * normal_FxF)
  return bread @ meat @ bread


def attach(fit: fitting.FitResult, runs: Any) -> fitting.FitResult:
  """The fit with :func:`noise_section` stored as ``extras["noise"]`` (what predict's intervals read)."""
  return dataclasses.replace(fit, extras={**fit.extras, "noise": noise_section(fit, runs)})


@dataclasses.dataclass(frozen=True)
class Interval:
  """Predicted losses at ``Q`` points with a two-sided interval of one kind.

  Attributes:
    kind: ``"confidence"`` (the mean law) or ``"prediction"`` (a new run).
    method: ``"bootstrap"`` or ``"delta"`` (Gauss-Newton covariance).
    level: the nominal coverage, e.g. 0.95.
    estimate, low, high: shape ``(Q,)``.
    meaning: one sentence for the output.
  """

  kind: str
  method: str
  level: float
  estimate: np.ndarray
  low: np.ndarray
  high: np.ndarray
  meaning: str


def _describe(kind: str, method: str, level: float, section: Mapping[str, Any] | None) -> str:
  pct = f"{100 * level:g}%"
  how = "over the bootstrap parameter sets" if method == "bootstrap" else "by the delta method at the optimum"
  if kind == "confidence":
    return f"{pct} confidence interval for the mean law (parameter uncertainty only, {how})"
  noise = f"sigma = {section['sigma']:.3g} on {section['space']} loss" if section else "the fit's noise"
  return f"{pct} prediction interval for one new run (parameter uncertainty {how}, plus run-to-run noise {noise})"


def predict(fit: fitting.FitResult, inputs: Mapping[str, Any], *, kind: str = "confidence", level: float = LEVEL) -> Interval:
  """Losses at raw ``inputs`` with a confidence or a prediction interval.

  Args:
    fit: a fit with ``extras["noise"]`` (see :func:`attach`) and/or a bootstrap section.
    inputs: ``{variable: (Q,) values}``.
    kind: ``"confidence"`` or ``"prediction"``.
    level: nominal coverage in (0, 1).

  Returns:
    An :class:`Interval`.
  """
  from jaxscale import bands

  if kind not in KINDS:
    raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
  if not 0 < level < 1:
    raise ValueError(f"level must be in (0, 1), got {level}")
  law = fit.law_object
  arrays = bands._validated_inputs(law, inputs)
  section = fit.extras.get("noise")
  samples = None if fit.bootstrap is None else fit.bootstrap.natural()  # converged replicates only
  if samples is None and section is None:
    raise ValueError(
        "the fit has neither a bootstrap nor a noise section, so no interval; re-create it with "
        "`jaxscale fit RUNS --out FIT` (writes the noise section) or add --bootstrap B"
    )
  if kind == "prediction" and section is None:
    raise ValueError("a prediction interval needs the fit's noise estimate; re-create it with `jaxscale fit RUNS --out FIT`")
  space = section["space"] if section else "log"
  with fitting.precision("float64"):
    log_inputs = {v: jnp.log(jnp.asarray(a)) for v, a in arrays.items()}
    theta = jnp.asarray([fit.fit_params[n] for n in law.param_names], jnp.float64)
    estimate_Q, gradient_QxP = (np.asarray(x) for x in _center_and_gradient(law, theta, log_inputs, space=space))
  tail = 0.5 * (1 + level)
  if samples is not None:
    method = "bootstrap"
    band = bands.predict(fit, inputs=arrays, quantiles=(1 - tail, tail))
    low_Q, high_Q = (np.log(band.low), np.log(band.high)) if space == "log" else (band.low, band.high)
    half = 0.5 * (high_Q - low_Q)
    middle = 0.5 * (high_Q + low_Q)
    if kind == "prediction":
      z = stats.norm.ppf(tail)
      half = np.sqrt(half**2 + (z * section["sigma"]) ** 2)
  else:
    method = "delta"
    covariance = np.asarray(section["covariance"])
    spread = np.sqrt(np.maximum(np.einsum("qp,pk,qk->q", gradient_QxP, covariance, gradient_QxP), 0.0))
    if kind == "prediction":
      spread = np.sqrt(spread**2 + section["sigma"] ** 2)
    half = stats.t.ppf(tail, section["dof"]) * spread
    middle = estimate_Q
  low_Q, high_Q = middle - half, middle + half
  if space == "log":
    estimate_Q, low_Q, high_Q = np.exp(estimate_Q), np.exp(low_Q), np.exp(high_Q)
  return Interval(kind, method, float(level), estimate_Q, low_Q, high_Q, _describe(kind, method, level, section))


# --- Profile likelihood ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Profile:
  """A profile-likelihood interval for one quantity.

  Attributes:
    quantity: its name.
    estimate: its value at the least-squares optimum.
    interval: ``(low, high)``; an end is ``-inf``/``inf`` where the profile
      stays below the threshold over the grid (the data do not bound it).
    level: nominal coverage.
    values, deviance: the grid and the profile statistic ``(SSE(v) - SSE) / s^2`` on it.
    threshold: ``F_{1, R-P}(level)``.
    wald: the delta-method interval ``estimate -+ t_{R-P} se`` for comparison.
    max_violation: largest ``|g(theta) - v|`` of the constrained fits (should be ~0).
    meaning: one sentence for the output.
  """

  quantity: str
  estimate: float
  interval: tuple[float, float]
  level: float
  values: np.ndarray
  deviance: np.ndarray
  threshold: float
  wald: tuple[float, float]
  max_violation: float
  meaning: str


@functools.lru_cache(maxsize=128)  # one function per (law, quantity): it is a static jit argument, so a new closure recompiles
def _quantity_fn(law: laws_lib.Law, quantity: str | Callable) -> tuple[str, Callable]:
  """``(name, fn(theta_P) -> scalar)`` for a parameter (natural or fit space), ``a``/``b``, or a callable."""
  if callable(quantity):
    return getattr(quantity, "__name__", "quantity"), lambda theta: quantity(law.to_natural(law.unflatten(theta)))
  if quantity in law.natural_names:
    return quantity, lambda theta: law.to_natural(law.unflatten(theta))[quantity]
  if quantity in ("a", "b") and {"alpha", "beta"} <= set(law.natural_names):
    # The derived exponents win over fit-space names (chinchilla's fit-space `a` is log A; ask for "A").
    def exponent(theta):
      natural = law.to_natural(law.unflatten(theta))
      return (natural["beta"] if quantity == "a" else natural["alpha"]) / (natural["alpha"] + natural["beta"])
    return quantity, exponent
  if quantity in law.param_names:
    index = law.param_names.index(quantity)
    return quantity, lambda theta: theta[index]
  derived = " or a / b (the compute-optimal exponents)" if {"alpha", "beta"} <= set(law.natural_names) else ""
  raise ValueError(
      f"no parameter or derived quantity {quantity!r} in law {law.name!r}; choose one of "
      f"{', '.join(law.natural_names)}{derived}, or pass a function of the natural parameters"
  )


@functools.partial(jax.jit, static_argnames=("law", "space", "options"))
def _least_squares(law, theta0_P, log_inputs, observed_R, weights_R, *, space, options):
  """The least-squares optimum near ``theta0_P`` (the profile's reference point)."""
  return solver_lib.minimize(_residual_fn(law, log_inputs, observed_R, space), theta0_P, weights_R, options).theta


@functools.partial(jax.jit, static_argnames=("law", "quantity_fn", "space", "options"))
def _constrained_fits(law, quantity_fn, theta0_P, values_V, penalty, log_inputs, observed_R, weights_R, *, space, options):
  """For each value ``v``, the least-squares fit with ``g(theta) = v`` (a penalty residual): ``(theta_VxP, sse_V)``."""
  residual_fn = _residual_fn(law, log_inputs, observed_R, space)
  augmented_weights = jnp.concatenate([weights_R, penalty[None]])

  def one(value):
    def augmented(theta):
      return jnp.concatenate([residual_fn(theta), (quantity_fn(theta) - value)[None]])

    state = solver_lib.minimize(augmented, theta0_P, augmented_weights, options)
    residuals_R = residual_fn(state.theta)
    return state.theta, jnp.sum(weights_R * residuals_R**2), quantity_fn(state.theta) - value

  return jax.vmap(one)(values_V)


def profile(
    fit: fitting.FitResult,
    runs: Any,
    quantity: str | Callable,
    *,
    level: float = LEVEL,
    points: int = PROFILE_POINTS,
    width: float = PROFILE_WIDTH,
) -> Profile:
  """The profile-likelihood interval of a parameter or derived quantity of ``fit``.

  Args:
    fit: a fit of a law to ``runs`` (any objective; the profile is of the
      Gaussian likelihood on its residual space, so the least-squares optimum
      is refitted first).
    runs: the runs it was fitted to.
    quantity: a natural or fit-space parameter name, ``"a"``/``"b"`` (the
      compute-optimal exponents of Chinchilla-type laws), or a function of the
      natural parameters dict returning a scalar.
    level: nominal coverage.
    points: grid size (one compiled program for all of them).
    width: the grid spans ``estimate -+ width`` delta-method standard errors.

  Returns:
    A :class:`Profile`.

  Example:
    >>> profile(fit, runs, "alpha").interval  # doctest: +SKIP
  """
  if not 0 < level < 1:
    raise ValueError(f"level must be in (0, 1), got {level}")
  if points < 5:
    raise ValueError(f"points must be >= 5, got {points}")
  law = fit.law_object
  runs = runs_lib.load(runs)
  space = _space(fit)
  name, quantity_fn = _quantity_fn(law, quantity)
  if fit.extras.get("objective", {}).get("fixed"):
    raise ValueError("profile intervals of a fit with pinned parameters are not supported; refit without --fix")
  options = solver_lib.SolverOptions(loss="mse", max_steps=200)
  with fitting.precision("float64"):
    log_inputs, log_loss_R, weights_R = fitting.prepare(law, runs, jnp.float64)
    observed_R = jnp.exp(log_loss_R) if space == "raw" else log_loss_R
    start = jnp.asarray([fit.fit_params[n] for n in law.param_names])
    theta = _least_squares(law, start, log_inputs, observed_R, weights_R, space=space, options=options)
    residuals_R, jacobian_RxP = (np.asarray(x) for x in _residuals_and_jacobian(law, theta, log_inputs, observed_R, space=space))
    sse = float(np.sum(np.asarray(weights_R) * residuals_R**2))
    estimate, gradient_P = (np.asarray(x) for x in jax.value_and_grad(quantity_fn)(theta))
    estimate = float(estimate)
    w = np.asarray(weights_R)
    used = int(np.count_nonzero(w > 0))
    dof = max(used - law.num_params, 1)
    sigma2 = sse / dof
    covariance = sigma2 * np.linalg.pinv((jacobian_RxP * w[:, None]).T @ jacobian_RxP)
    se = float(math.sqrt(max(gradient_P @ covariance @ gradient_P, 0.0)))
    if not (math.isfinite(se) and se > 0):
      raise ValueError(f"{name} has no finite standard error at the optimum (the law may be unidentifiable from these runs)")
    values_V = estimate + se * np.linspace(-width, width, points)
    penalty = jnp.asarray(PENALTY * sigma2 / se**2)
    _, sse_V, violation_V = _constrained_fits(
        law, quantity_fn, theta, jnp.asarray(values_V), penalty, log_inputs, observed_R, weights_R, space=space,
        options=options._replace(max_steps=300),
    )
  # A constrained fit can only be worse than the free optimum; a lower SSE is the optimum's own rounding.
  deviance_V = (np.maximum(np.asarray(sse_V), sse) - sse) / sigma2
  threshold = float(stats.f.ppf(level, 1, dof))
  low, high = _crossings(values_V, deviance_V, threshold, points // 2)
  z = stats.t.ppf(0.5 * (1 + level), dof)
  return Profile(
      quantity=name, estimate=estimate, interval=(low, high), level=float(level), values=values_V, deviance=deviance_V,
      threshold=threshold, wald=(estimate - z * se, estimate + z * se),
      max_violation=float(np.max(np.abs(np.asarray(violation_V)))),
      meaning=(f"{100 * level:g}% profile-likelihood interval for {name}: values whose best constrained fit passes the "
               f"likelihood-ratio test (Gaussian noise on {space} loss)"),
  )


def _crossings(values_V, deviance_V, threshold: float, middle: int) -> tuple[float, float]:
  """Where the deviance first rises through ``threshold`` on each side of the grid's centre (linear interpolation)."""
  def walk(indices):
    previous = middle
    for i in indices:
      if deviance_V[i] > threshold:
        d0, d1 = deviance_V[previous], deviance_V[i]
        fraction = (threshold - d0) / (d1 - d0) if d1 != d0 else 0.0
        return float(values_V[previous] + fraction * (values_V[i] - values_V[previous]))
      previous = i
    return None

  low = walk(range(middle - 1, -1, -1))
  high = walk(range(middle + 1, len(values_V)))
  return (-math.inf if low is None else low, math.inf if high is None else high)


def print_prediction(fit: fitting.FitResult, points: Mapping[str, np.ndarray], kind: str, output: str, shown) -> int:
  """``jaxscale predict --interval KIND``: the table (or JSON) of losses with the interval named."""
  from jaxscale import commands

  law = fit.law_object
  interval = predict(fit, {v: points[v] for v in law.variables}, kind=kind)
  fmt = commands.format_number
  if output == "json":
    rows = [
        {**{v: float(points[v][i]) for v in shown}, "loss": float(interval.estimate[i]),
         "interval": [float(interval.low[i]), float(interval.high[i])]}
        for i in range(len(interval.estimate))
    ]
    commands.print_json({"law": fit.law, "interval": {"kind": interval.kind, "method": interval.method,
                                                      "level": interval.level, "meaning": interval.meaning},
                         "points": rows})
    return 0
  rows = [[fmt(float(points[v][i])) for v in shown] + [fmt(float(interval.estimate[i])),
          f"[{fmt(float(interval.low[i]))}, {fmt(float(interval.high[i]))}]"] for i in range(len(interval.estimate))]
  print(f"law  {fit.law}  ({law.formula})")
  print(commands.table(rows, shown + ["loss", f"{100 * interval.level:g}% {kind}"]))
  print(interval.meaning)
  return 0
