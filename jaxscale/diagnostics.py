"""Diagnostics: checks that catch a fit which looks fine but cannot be trusted.

A scaling-law fit always returns numbers. Whether they mean anything depends on
the design of the runs and on the optimum found. :func:`diagnose` looks for the
common ways to be wrong and says, in each :class:`Diagnostic`, what to do:

- ``collinear_inputs``: the law's variables move together across the runs
  (e.g. every run at ~20 tokens per parameter), so the N and D terms cannot be
  told apart. Measured by the correlation of the logged variables.
- ``singular_jacobian``: the residuals' Jacobian at the optimum (rows weighted
  as the robust fit weights them, columns scaled to unit norm so parameter
  units do not matter) has a condition number above ``1e6``: some combination
  of parameters barely changes the predictions, so the data do not pin it
  down. The message names the parameters in that combination, by the natural
  names a user reads in ``fit.params`` (E, not the fitted e = log E).
- ``wide_intervals``: a bootstrap (``fit.bootstrap``) whose 95% interval spans
  more than a factor 100 for a positive coefficient (or reaches down to 0), or
  more than 1 for an exponent.
- ``estimate_outside_interval``: the point estimate lies outside its own
  bootstrap interval.
- ``unconverged_replicates``: bootstrap replicates that did not converge (left
  out of the intervals); a warning above 10% of them.
- ``not_converged``: the solver stopped before the gradient vanished.
- ``extrapolation``: a query point (``at=``) beyond the range of the runs, by
  more than a factor 10 (warning) or at all (info).

Example:
  >>> from jaxscale import diagnostics, fitting
  >>> result = fitting.fit("chinchilla", runs)  # doctest: +SKIP
  >>> for d in diagnostics.diagnose(result, runs, at={"N": 7e10, "D": 1.4e12}):  # doctest: +SKIP
  ...   print(d)
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from jaxscale import laws as laws_lib
from jaxscale import runs as runs_lib

# |correlation| of two logged variables above which their terms are not separable in practice.
COLLINEAR_CORRELATION = 0.99
# Condition number of the column-scaled, weighted Jacobian above which the optimum is a valley.
SINGULAR_CONDITION = 1e6
# A bootstrap interval is "exploded" beyond these widths.
WIDE_RATIO = 100.0
WIDE_EXPONENT_SPAN = 1.0
# Query points this far (as a factor) beyond the runs' range draw a warning, not just a note.
FAR_EXTRAPOLATION = 10.0
# Natural parameters that are exponents (compared by span, not ratio).
EXPONENT_PREFIXES = ("alpha", "beta", "gamma", "c0", "c1", "c2", "c3")


@dataclasses.dataclass(frozen=True)
class Diagnostic:
  """One finding: ``code`` (stable, for programs), ``severity`` and a message saying what to do."""

  code: str
  severity: str  # "warning" or "info"
  message: str
  details: dict[str, Any] = dataclasses.field(default_factory=dict)

  def __str__(self) -> str:
    return f"{self.severity}: [{self.code}] {self.message}"

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


def diagnose(
    fit,
    runs: Any,
    *,
    law: laws_lib.Law | None = None,
    at: Mapping[str, Any] | None = None,
    columns: Mapping[str, str] | None = None,
) -> list[Diagnostic]:
  """Checks a fit for designs that cannot identify it and optima that are not trustworthy.

  Args:
    fit: a :class:`~jaxscale.fitting.FitResult`.
    runs: the runs it was fitted to (a path, DataFrame, dict or RunSet).
    law: the law object, needed when ``fit.law`` names an unregistered custom law.
    at: raw query inputs (e.g. ``{"N": 7e10, "D": 1.4e12}``; arrays allowed) to
      check for extrapolation.
    columns: column mapping when ``runs`` is a path.

  Returns:
    A list of :class:`Diagnostic`, empty when nothing is wrong.
  """
  law = law if law is not None else laws_lib.get(fit.law)
  runs = runs_lib.load(runs, columns=columns)
  runs_lib.check_for_law(runs, law)
  found: list[Diagnostic] = []
  if not fit.converged:
    found.append(Diagnostic("not_converged", "warning", f"the fit did not converge ({fit.status}); do not use its parameters as they are"))
  found += _collinearity(law, runs)
  found += _jacobian(fit, law, runs)
  found += _bootstrap_intervals(fit)
  if at is not None:
    found += _extrapolation(law, runs, at)
  return found


def _used(runs: runs_lib.RunSet) -> np.ndarray:
  return runs.weight > 0


def _collinearity(law: laws_lib.Law, runs: runs_lib.RunSet) -> list[Diagnostic]:
  varying = [v for v in law.variables if v != "U"]
  if len(varying) < 2:
    return []
  used = _used(runs)
  logs = {v: np.log(runs.column(v))[used] for v in varying}
  found = []
  for i, first in enumerate(varying):
    for second in varying[i + 1 :]:
      x, y = logs[first], logs[second]
      if np.ptp(x) == 0 or np.ptp(y) == 0:
        continue  # check_for_law already rejects a constant column
      correlation = float(np.corrcoef(x, y)[0, 1])
      if abs(correlation) < COLLINEAR_CORRELATION:
        continue
      ratio = np.exp(y - x)
      hint = ""
      if {first, second} == {"N", "D"}:
        tokens_per_param = np.exp(logs["D"] - logs["N"])
        hint = (
            f" (tokens per parameter D/N spans only {tokens_per_param.min():.3g} to {tokens_per_param.max():.3g})"
        )
      found.append(
          Diagnostic(
              "collinear_inputs",
              "warning",
              f"log {first} and log {second} move together across the runs (correlation {correlation:.4f}){hint}, so "
              f"the law cannot separate the effect of {first} from that of {second}: its exponents and coefficients "
              f"are arbitrary along a trade-off. Add runs that vary {second}/{first} independently, e.g. several "
              "model sizes at each compute budget (an IsoFLOP sweep).",
              {"variables": [first, second], "correlation": correlation, "ratio_range": [float(ratio.min()), float(ratio.max())]},
          )
      )
  return found


def jacobian_spectrum(fit, runs: Any, *, law: laws_lib.Law | None = None) -> dict[str, Any]:
  """Singular values of the weighted, column-normalised residual Jacobian at the optimum.

  Rows are scaled by ``sqrt(weight x IRLS weight)`` so runs the robust loss
  treats as outliers count as little as they do in the fit. Columns are scaled
  to unit norm, which makes the condition number independent of parameter
  units and offsets (``a = log A`` near 6 and ``alpha`` near 0.3 alike).

  Returns:
    ``{"singular_values": (P,), "condition": float, "weakest": {param: loading}}``
    where ``weakest`` is the parameter combination of the smallest singular value.
  """
  import jax.numpy as jnp

  from jaxscale import fitting

  law = law if law is not None else laws_lib.get(fit.law)
  runs = runs_lib.load(runs)
  with fitting.precision("float64") as dtype:
    # Padded (rows of weight 0, dropped below) so one compiled program serves every run set of a bucket.
    log_inputs, log_loss_R, weights_R = fitting.prepare(law, runs, dtype, pad=True)
    theta = jnp.asarray([fit.fit_params[n] for n in law.param_names], dtype)
    jacobian_RxP, residual_R = (np.asarray(x, np.float64)[: len(runs)] for x in _residuals_and_jacobian(law, theta, log_inputs, log_loss_R))
  weights = np.asarray(weights_R, dtype=np.float64)[: len(runs)]
  if fit.loss == "huber":
    weights = weights * np.minimum(1.0, fit.delta / np.maximum(np.abs(residual_R), fit.delta))
  weighted = jacobian_RxP * np.sqrt(weights)[:, None]
  norms = np.linalg.norm(weighted, axis=0)
  if not np.all(np.isfinite(weighted)):
    return {"singular_values": [], "condition": math.inf, "weakest": {}, "dead": list(law.param_names)}
  dead = [n for n, v in zip(law.param_names, norms) if v <= 1e-12 * max(norms.max(), 1e-300)]
  scaled = weighted / np.where(norms > 0, norms, 1.0)
  _, singular, vt = np.linalg.svd(scaled, full_matrices=False)
  condition = float(singular[0] / singular[-1]) if singular[-1] > 0 else math.inf
  weakest = {n: float(v) for n, v in zip(law.param_names, vt[-1])}
  return {"singular_values": singular.tolist(), "condition": condition, "weakest": weakest, "dead": dead}


@functools.partial(jax.jit, static_argnames=("law",))
def _residuals_and_jacobian(law: laws_lib.Law, theta_P, log_inputs, log_loss_R):
  """``(jacobian_RxP, residual_R)`` of the log-loss residuals at ``theta_P``."""

  def residuals(t):
    return law.log_loss(law.unflatten(t), log_inputs) - log_loss_R

  return jax.jacfwd(residuals)(theta_P), residuals(theta_P)


def natural_labels(law: laws_lib.Law, fit_params: Mapping[str, float] | None = None) -> dict[str, str]:
  """The name a user knows each fit-space parameter by: ``{"e": "E", "a": "A", "alpha": "alpha", ...}``.

  The Jacobian is fitted in fit space (``e = log E``), but messages speak of the natural
  parameters a user reads in ``fit.params``. A fit-space parameter is labelled with the
  one natural parameter that depends on it (``law.to_natural``'s Jacobian, at the fit
  and at a generic point so that a vanished term, e.g. ``E = exp(-800)``, still counts);
  one that feeds several natural parameters, or none, keeps its own name, marked
  ``(fit space)``.

  Example:
    >>> natural_labels(laws_lib.get("chinchilla"))["e"]
    'E'
  """
  import jax.numpy as jnp

  from jaxscale import fitting

  natural_names = tuple(law.natural_names)

  def natural(theta_P):
    values = law.to_natural(law.unflatten(theta_P))
    return jnp.stack([jnp.asarray(values[n], theta_P.dtype) for n in natural_names])

  try:
    with fitting.precision("float64") as dtype:
      points = [jnp.full(law.num_params, 0.37, dtype)]
      if fit_params is not None:
        points.append(jnp.asarray([fit_params[n] for n in law.param_names], dtype))
      depends_QxP = sum(np.nan_to_num(np.abs(np.asarray(jax.jacfwd(natural)(t), np.float64)), nan=1.0) > 0 for t in points)
  except Exception:  # a custom to_natural that does not trace: say the fit-space names
    depends_QxP = None
  labels = {}
  for j, name in enumerate(law.param_names):
    users = [] if depends_QxP is None else [natural_names[i] for i in np.flatnonzero(depends_QxP[:, j])]
    labels[name] = users[0] if len(users) == 1 else (name if name in natural_names else f"{name} (fit space)")
  return labels


def _jacobian(fit, law: laws_lib.Law, runs: runs_lib.RunSet) -> list[Diagnostic]:
  spectrum = jacobian_spectrum(fit, runs, law=law)
  if spectrum["dead"] or spectrum["condition"] >= SINGULAR_CONDITION:
    label = natural_labels(law, fit.fit_params)
  if spectrum["dead"]:
    names = ", ".join(label[n] for n in spectrum["dead"])
    return [
        Diagnostic(
            "singular_jacobian",
            "warning",
            f"the predictions do not change with {names} at the optimum (its term has vanished or saturated), so "
            "the data say nothing about it; fix it to a known value, use a simpler law, or add runs where that term matters.",
            spectrum,
        )
    ]
  if spectrum["condition"] < SINGULAR_CONDITION:
    return []
  loadings = spectrum["weakest"]
  involved = [label[n] for n, v in sorted(loadings.items(), key=lambda kv: -abs(kv[1])) if abs(v) >= 0.2]
  return [
      Diagnostic(
          "singular_jacobian",
          "warning",
          f"the fit is not identifiable from these runs: the residuals' Jacobian is near-singular (condition number "
          f"{spectrum['condition']:.2g}), so {' and '.join(involved)} can change together without changing the "
          "predictions. Reparameterise or drop a redundant parameter, fix one to a known value, or add runs that "
          "separate them; do not interpret those parameters individually.",
          spectrum,
      )
  ]


def _bootstrap_intervals(fit) -> list[Diagnostic]:
  boot = getattr(fit, "bootstrap", None)
  if boot is None:
    return []
  found = []
  if boot.num_converged < boot.n:
    share = boot.unconverged_share
    from jaxscale import resampling

    high = share > resampling.UNCONVERGED_WARN_SHARE
    found.append(
        Diagnostic(
            "unconverged_replicates",
            "warning" if high else "info",
            (resampling.unconverged_message(boot) if high else
             f"{boot.n - boot.num_converged} of {boot.n} bootstrap replicates did not converge and are left out of "
             f"the intervals, which use {boot.num_used}."),
            {"converged": boot.num_converged, "n": boot.n, "used": boot.num_used},
        )
    )
  counted = f" (from {boot.describe()})"
  for name, (lo, hi) in boot.ci95.items():
    is_exponent = str(name).lower().startswith(EXPONENT_PREFIXES)
    estimate = float(fit.params.get(name, math.nan))
    if math.isfinite(lo) and math.isfinite(hi) and math.isfinite(estimate) and not lo <= estimate <= hi:
      found.append(
          Diagnostic(
              "estimate_outside_interval",
              "warning",
              f"the estimate {name} = {estimate:.4g} lies outside its own 95% bootstrap interval [{lo:.4g}, {hi:.4g}]"
              f"{counted}: the replicates settle elsewhere than the full-data fit, so neither can be trusted. The "
              "law is likely unidentifiable from these runs (see singular_jacobian), or the replicates stopped "
              "early; do not quote this interval.",
              {"param": name, "estimate": estimate, "ci95": [lo, hi]},
          )
      )
    if not (math.isfinite(lo) and math.isfinite(hi)):
      reason = "is not finite"
    elif is_exponent and hi - lo > WIDE_EXPONENT_SPAN:
      reason = f"spans {hi - lo:.3g} (more than {WIDE_EXPONENT_SPAN:g})"
    elif not is_exponent and lo <= 0 < hi:
      reason = "reaches down to 0 (the data cannot tell this term from none)"
    elif not is_exponent and lo > 0 and hi / lo > WIDE_RATIO:
      reason = f"spans a factor {hi / lo:.3g} (more than {WIDE_RATIO:g})"
    else:
      continue
    found.append(
        Diagnostic(
            "wide_intervals",
            "warning",
            f"the 95% bootstrap interval of {name} [{lo:.4g}, {hi:.4g}]{counted} {reason}: the runs do not determine "
            f"{name}. Do not quote it; add runs over a wider range of the variable it governs, or fix it to a "
            "published value.",
            {"param": name, "ci95": [lo, hi]},
        )
    )
  return found


def _extrapolation(law: laws_lib.Law, runs: runs_lib.RunSet, at: Mapping[str, Any]) -> list[Diagnostic]:
  found = []
  used = _used(runs)
  for variable in law.variables:
    if variable not in at:
      continue
    query = np.atleast_1d(np.asarray(at[variable], dtype=np.float64))
    if not np.all(np.isfinite(query) & (query > 0)):
      raise ValueError(f"at[{variable!r}] must hold positive finite numbers, got {query.tolist()}")
    data = runs.column(variable)[used]
    low, high = float(data.min()), float(data.max())
    factor = float(max(np.max(query) / high, low / np.min(query), 1.0))
    if factor <= 1.0:
      continue
    far = factor > FAR_EXTRAPOLATION
    found.append(
        Diagnostic(
            "extrapolation",
            "warning" if far else "info",
            f"{variable} = {np.max(query) if np.max(query) > high else np.min(query):.3g} lies a factor {factor:.3g} "
            f"outside the runs' range [{low:.3g}, {high:.3g}]"
            + (
                "; predictions that far out rest on the law's form alone. Quote them with the bootstrap band, and "
                "check the law by `jaxscale validate` (fit small budgets, predict large ones)."
                if far
                else "; a modest extrapolation, but prefer the bootstrap band to the point estimate."
            ),
            {"variable": variable, "factor": factor, "range": [low, high]},
        )
    )
  return found
