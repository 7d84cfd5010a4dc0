"""How precisely a set of runs can pin a law's parameters, and which noise sets that.

A fit's bootstrap says how wide its intervals are; this module says why, and what would
narrow them. For runs at ``x_k`` (``log N``, ``log D``, ...) with independent noise
``sigma`` on log loss, the Fisher information is ``J^T J / sigma^2``, with ``J_kp`` the
derivative of the law's log loss at run ``k`` with respect to fit-space parameter ``p``.
The delta method turns its inverse into each natural parameter's variance, and the
expected 95% width is ``2 t sd``, with Student's ``t`` on the fit's ``K - P`` degrees of
freedom (:func:`jaxscale.design.t95`, as the experimental design uses). A width is
proportional to ``sigma``, so the noise a target width needs follows by division.

Two noise scales say where a study's width comes from:

* :func:`residual_scale`: the runs' scatter about the fitted law (noise and misfit);
* :func:`seed_scale`: the scatter between seeds of the same ``(N, D)``, where a study
  repeats runs: what training alone contributes.

When the first is well above the second, the law misfits the runs (a learning rate that
suits some runs better than others, a form that bends differently), and more seeds
will not help; when they agree, more runs or a wider span will.

The widths are for the linearised law: the bootstrap's intervals, which also see the
law's curvature, are wider where the data determine a parameter weakly.

Example:
  >>> import numpy as np
  >>> from jaxscale import fitting, identifiability, simulate
  >>> runs = simulate.simulate("chinchilla", "hoffmann2022", noise=0.01, seed=0)  # doctest: +SKIP
  >>> fit = fitting.fit("chinchilla", runs)  # doctest: +SKIP
  >>> identifiability.expected_widths(fit, runs, noise=0.01)["alpha"]  # doctest: +SKIP
  0.05...
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxscale import fitting
from jaxscale import runs as runs_lib


def _linearised(fit: fitting.FitResult, runs: runs_lib.RunSet, names: Sequence[str]):
  """``(residual_K, jacobian_KxP, gradient_NxP)`` at the fit.

  ``residual_K`` is log loss minus log law; ``jacobian_KxP`` is the log law's Jacobian
  in fit space; ``gradient_NxP`` holds the natural parameters' gradients. It uses
  diagnostics' compiled residual-and-Jacobian program, padded to the run set's bucket,
  so one program serves every study of a bucket.
  """
  from jaxscale import diagnostics

  law = fit.law_object
  with fitting.precision("float64") as dtype:
    log_inputs, log_loss_R, _ = fitting.prepare(law, runs, dtype, pad=True)
    theta_P = jnp.asarray([fit.fit_params[n] for n in law.param_names], dtype)
    jacobian_RxP, residual_R = diagnostics._residuals_and_jacobian(law, theta_P, log_inputs, log_loss_R)
    gradient_NxP = (jax.jacfwd(lambda t: jnp.stack([law.to_natural(law.unflatten(t))[n] for n in names]))(theta_P)
                    if names else jnp.zeros((0, law.num_params)))
  K = len(runs.loss)
  return (-np.asarray(residual_R, np.float64)[:K], np.asarray(jacobian_RxP, np.float64)[:K],
          np.asarray(gradient_NxP, np.float64))


OUTLIER_SCALES = 4.0  # residuals beyond this many mean-based scales are left out of the rms


def residual_scale(fit: fitting.FitResult, runs: runs_lib.RunSet) -> float:
  """The runs' scatter about the fitted law, on log loss: ``sqrt(sum r^2 / (K - P))``.

  Runs more than :data:`OUTLIER_SCALES` first-guess scales (``sqrt(pi / 2) mean |r|``)
  off the law are left out, as the Huber fit down-weights them: one seed stuck in a
  worse mode (the lab's d8x1 does this) would otherwise set the scale of every run. (A
  median reads low after a Huber fit, which puts several residuals at zero.)

  Example:
    >>> residual_scale(fit, runs)  # doctest: +SKIP
    0.0043
  """
  return _scale(_linearised(fit, runs, ())[0], fit.law_object.num_params)


def _scale(residuals: np.ndarray, num_params: int) -> float:
  """:func:`residual_scale` of the residuals themselves (``fitting.prepare`` has already
  refused a run set with no degree of freedom)."""
  first_guess = math.sqrt(math.pi / 2) * np.mean(np.abs(residuals))
  kept = residuals[np.abs(residuals) <= OUTLIER_SCALES * first_guess] if first_guess > 0 else residuals
  if len(kept) - num_params < 1:
    kept = residuals
  return float(math.sqrt(np.sum(kept**2) / (len(kept) - num_params)))


def seed_scale(N: Sequence[float], D: Sequence[float], loss: Sequence[float]) -> dict[str, float] | None:
  """How far runs of the same ``(N, D)`` (other seeds) differ in log loss.

  ``sigma`` is median-based (``1.4826 median |deviation|``, each deviation from its
  group's mean scaled by ``sqrt(n / (n - 1))``), so one run whose seeds fall into two
  modes does not set the scale of all; ``widest`` is the largest spread of log loss in
  one group. None when no ``(N, D)`` is repeated.

  Returns:
    ``{"sigma", "widest", "groups"}``.

  Example:
    >>> facts = seed_scale([1e3, 1e3, 2e3, 2e3], [1e6, 1e6, 1e6, 1e6], [2.0, 2.002, 1.9, 1.9019])
    >>> round(facts["sigma"], 5), round(facts["widest"], 4), facts["groups"]
    (0.00105, 0.001, 2)
  """
  log_loss = np.log(np.asarray(loss, np.float64))
  groups: dict[tuple[float, float], list[float]] = {}
  for key, value in zip(zip(np.asarray(N, np.float64), np.asarray(D, np.float64)), log_loss):
    groups.setdefault(key, []).append(value)
  repeated = [np.asarray(g) for g in groups.values() if len(g) > 1]
  if not repeated:
    return None
  deviations = np.concatenate([(g - g.mean()) * math.sqrt(len(g) / (len(g) - 1)) for g in repeated])
  return {"sigma": float(1.4826 * np.median(np.abs(deviations))),
          "widest": float(max(np.ptp(g) for g in repeated)), "groups": len(repeated)}


def _checked_names(law, names: Sequence[str] | None) -> list[str]:
  names = list(names or law.natural_names)
  unknown = sorted(set(names) - set(law.natural_names))
  if unknown:
    raise ValueError(f"law {law.name!r} has no parameters {unknown}; it has {list(law.natural_names)}.")
  return names


def _natural_sds(jacobian_KxP: np.ndarray, gradient_NxP: np.ndarray) -> np.ndarray:
  """Delta-method standard deviations of natural parameters at unit noise, ``(N,)``."""
  covariance_PxP = np.linalg.pinv(jacobian_KxP.T @ jacobian_KxP)
  return np.sqrt(np.maximum(np.einsum("np,pq,nq->n", gradient_NxP, covariance_PxP, gradient_NxP), 0.0))


def expected_widths(fit: fitting.FitResult, runs: runs_lib.RunSet, *, noise: float,
                    names: Sequence[str] | None = None) -> dict[str, float]:
  """Expected 95% widths of natural parameters for these runs at log-loss noise ``noise``.

  Args:
    fit: the law and the point at which to linearise it.
    runs: the design: where the runs are (their losses are not used).
    noise: standard deviation of one run's log loss.
    names: natural parameters (default: all of the law's).

  Returns:
    ``{name: width}``, in the parameter's own units.

  Example:
    >>> expected_widths(fit, runs, noise=0.004, names=["alpha", "beta"])  # doctest: +SKIP
    {'alpha': 0.34, 'beta': 0.67}
  """
  from jaxscale import design

  law = fit.law_object
  names = _checked_names(law, names)
  if not noise > 0:
    raise ValueError(f"noise must be positive, got {noise!r}.")
  _, jacobian_KxP, gradient_NxP = _linearised(fit, runs, names)
  t = design.t95(len(runs.loss), law.num_params)
  return {name: 2 * t * noise * float(sd) for name, sd in zip(names, _natural_sds(jacobian_KxP, gradient_NxP))}


def assess(fit: fitting.FitResult, runs: runs_lib.RunSet, *, names: Sequence[str] = ("alpha", "beta"),
           target_width: float = 0.25) -> dict[str, Any]:
  """Both noise scales, the widths each allows, and the noise that ``target_width`` needs.

  Returns a JSON-able dict: ``residual_scale``; ``seed_scale``, ``seed_widest`` and
  ``seed_groups`` (:func:`seed_scale`; None without repeated runs); ``widths`` at each scale (``{"residual": {...}, "seed": {...}}``);
  ``target_width`` and ``noise_for_target``, the noise at which the widest of ``names``
  would be ``target_width``.

  Example:
    >>> facts = assess(fit, runs)  # doctest: +SKIP
    >>> facts["noise_for_target"] < facts["residual_scale"]  # doctest: +SKIP
    True
  """
  from jaxscale import design

  law = fit.law_object
  names = _checked_names(law, names)
  residuals, jacobian_KxP, gradient_NxP = _linearised(fit, runs, names)
  sigma = _scale(residuals, law.num_params)
  seeds = seed_scale(runs.N, runs.D, runs.loss) if set(law.variables) == {"N", "D"} else None
  t = design.t95(len(residuals), law.num_params)
  unit = {n: 2 * t * float(sd) for n, sd in zip(names, _natural_sds(jacobian_KxP, gradient_NxP))}
  widths = {"residual": {n: w * sigma for n, w in unit.items()}}
  if seeds is not None:
    widths["seed"] = {n: w * seeds["sigma"] for n, w in unit.items()}
  widest = max(unit.values())
  return {"names": list(names), "residual_scale": sigma,
          "seed_scale": seeds["sigma"] if seeds else None,
          "seed_widest": seeds["widest"] if seeds else None,
          "seed_groups": seeds["groups"] if seeds else None,
          "widths": widths, "target_width": float(target_width),
          "noise_for_target": float(target_width / widest) if widest > 0 else None}


def describe(facts: dict[str, Any], bootstrap_widths: dict[str, float] | None = None) -> str:
  """The paragraph a report prints for :func:`assess`'s facts."""
  names = facts["names"]

  def listed(widths):
    return ", ".join(f"{n} {widths[n]:.2f}" for n in names)

  text = (f"How precise these runs can be: they scatter about the fitted law by "
          f"{100 * facts['residual_scale']:.2f}% of log loss (sigma), and at that noise their "
          f"design allows 95% widths of {listed(facts['widths']['residual'])} (Fisher "
          "information, delta method")
  if bootstrap_widths:
    text += f"; the bootstrap's, which also see the law's curvature: {listed(bootstrap_widths)}"
  text += "). Widths scale with sigma"
  if facts.get("noise_for_target"):
    text += (f": widths of {facts['target_width']:g} would need sigma <= "
             f"{100 * facts['noise_for_target']:.2f}% with these runs (at best: the bootstrap's "
             "widths are wider than the linear ones), or runs over a wider span")
  text += "."
  if facts.get("seed_scale") is not None:
    seed = facts["seed_scale"]
    ratio = facts["residual_scale"] / seed if seed > 0 else math.inf
    text += (f" Runs repeated with another seed ({facts['seed_groups']} sizes and budgets) differ "
             f"by sigma = {100 * seed:.2f}% (median-based; the widest pair of seeds is "
             f"{100 * facts['seed_widest']:.2f}% apart), which alone would allow "
             f"{listed(facts['widths']['seed'])}.")
    if ratio > 1.5:
      text += (f" The law misses the runs by {ratio:.1f}x what seeds explain: part of the scatter "
               "is misfit (a training setting that suits some runs better than others, or a law "
               "that bends differently from the runs), which more seeds will not remove.")
    else:
      text += " The scatter is what seeds explain: more runs, or a wider span, narrow the widths."
  return text
