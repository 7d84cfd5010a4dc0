"""Figures of a fitted law and its runs: loss vs compute, the frontier, IsoFLOPs, the bootstrap.

Every figure function returns a :class:`matplotlib.figure.Figure` built without
``pyplot``, so importing or calling this module never touches the user's
backend or global figure state; :func:`plot_all` writes the PNGs.

Bands come from the fit's bootstrap (``fit.bootstrap``, converged replicates only,
written by ``jaxscale fit --bootstrap B``): each bootstrap parameter set is
pushed through the same computation as the point estimate (the law, or the
compute-optimal allocation) and the band is the equal-tailed 95% quantile
range of the results. Without a bootstrap section the figures draw the point
estimate alone.

Example:
  >>> from jaxscale import fitting, plots
  >>> fit = fitting.FitResult.from_json("fit.json")  # doctest: +SKIP
  >>> plots.plot_all(fit, "runs.csv", "figures/")  # doctest: +SKIP
  [PosixPath('figures/loss_vs_compute.png'), ...]
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from jaxscale import fitting
from jaxscale import runs as runs_lib

DPI = 150
LEVEL = 0.95
EXTEND_DECADES = 2.0  # how far the fitted curves run beyond the largest run's compute
CURVE_POINTS = 60
# Hoffmann et al. 2022: Chinchilla's training FLOPs and what it spent them on; drawn only when asked
# (`frontier(..., reference=CHINCHILLA)`, `jaxscale plot --reference chinchilla`).
CHINCHILLA = {"name": "Chinchilla", "C": 5.76e23, "N": 70e9, "D": 1.4e12}
REFERENCES = {"chinchilla": CHINCHILLA}
COLORMAP = "viridis"
BAND_ALPHA = 0.25
FIT_COLOR = "#d62728"

FIGURES = ("loss_vs_compute", "frontier", "isoflop", "bootstrap")


class PlotWarning(UserWarning):
  """A figure was skipped or drawn without part of its content; the others are fine."""


# --- Helpers ----------------------------------------------------------------------------------


def _figure(width: float, height: float):
  # Figure without pyplot: no global state, no backend switch; savefig uses the Agg canvas.
  from matplotlib.figure import Figure

  return Figure(figsize=(width, height), layout="constrained")


def _fit(fit: fitting.FitResult | str | os.PathLike) -> fitting.FitResult:
  if isinstance(fit, fitting.FitResult):
    return fit
  return fitting.FitResult.from_json(fit)


def check_runs_match(fit: fitting.FitResult, runs: runs_lib.RunSet) -> None:
  """Raises ValueError when ``runs`` is not the run set the fit was made on (by count of runs used).

  A figure of a fit beside other runs (245 shown for a fit on 240) looks like a
  worse fit than it is, or a better one.
  """
  used = int(np.count_nonzero(runs.weight > 0))
  if fit.runs_used and used != fit.runs_used:
    raise ValueError(
        f"the fit was made on {fit.runs_used} runs but {runs.source} gives {used}: pass the run set it was fitted on "
        "(the same file and filters, e.g. --drop-highest 5), or check_runs=False to draw other runs against it"
    )


def _samples(fit: fitting.FitResult) -> dict[str, np.ndarray] | None:
  """Natural-parameter bootstrap samples ``{name: (B,)}``, or None without a bootstrap section."""
  samples = None if fit.bootstrap is None else fit.bootstrap.natural()
  if samples is None or len(next(iter(samples.values()))) < 2:
    return None
  return samples


def _quantile_band(values_BxK: np.ndarray, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
  tails = [(1 - level) / 2, (1 + level) / 2]
  with np.errstate(all="ignore"), warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns stay NaN
    low, high = np.nanquantile(values_BxK, tails, axis=0)
  return low, high


def _law_loss(law, natural: Mapping[str, Any], inputs: Mapping[str, np.ndarray]) -> np.ndarray:
  """The law's loss at raw ``inputs`` (shape ``(K,)``) for natural params of shape ``()`` or ``(B,)``."""
  import jax
  import jax.numpy as jnp

  with fitting.precision("float64"):
    arrays = {v: jnp.asarray(inputs[v], jnp.float64) for v in law.variables}
    params = {k: jnp.asarray(np.asarray(natural[k], np.float64)) for k in law.natural_names}
    if params[law.natural_names[0]].ndim == 0:
      return np.asarray(law.natural_loss(params, arrays), np.float64)
    return np.asarray(jax.vmap(lambda p: law.natural_loss(p, arrays))(params), np.float64)


def _is_allocatable(law) -> bool:
  return {"N", "D"} <= set(law.variables) <= {"N", "D", "U"}


def _compute_grid(runs: runs_lib.RunSet, extend_decades: float, points: int = CURVE_POINTS) -> np.ndarray:
  log_lo, log_hi = math.log10(runs.C.min()), math.log10(runs.C.max()) + extend_decades
  return np.logspace(log_lo, log_hi, points)


def _optimal_curve(fit: fitting.FitResult, compute_K: np.ndarray, samples) -> dict[str, Any]:
  """Point estimate and bands of ``N*, D*, loss`` along the compute-optimal frontier.

  The point estimate rides along as row 0 of the bootstrap batch, and every
  figure asks for ``CURVE_POINTS`` budgets, so one compiled solve serves them all.
  """
  from jaxscale import allocation

  law = fit.law_object
  params = {k: np.atleast_1d(np.asarray(fit.params[k], np.float64)) for k in law.natural_names}
  if samples is not None:
    params = {k: np.concatenate([params[k], np.asarray(samples[k], np.float64)]) for k in law.natural_names}
  solved = allocation.allocate(law, params, compute_K)
  curve = {"N": solved.N[0], "D": solved.D[0], "loss": solved.loss[0], "bands": None}
  if samples is not None:
    curve["bands"] = allocation.bands(allocation.Allocation(*(field[1:] for field in solved)), LEVEL)
  return curve


def _split(curve: dict[str, Any], index) -> dict[str, Any]:
  """The curve (and its bands) at budget ``index`` (an int or a slice)."""
  out = {k: curve[k][index] for k in ("N", "D", "loss")}
  out["bands"] = {k: (low[index], high[index]) for k, (low, high) in curve["bands"].items()} if curve["bands"] else None
  return out


def _loss_along_compute(fit: fitting.FitResult, compute_K: np.ndarray, samples):
  """``(loss_K, band or None, label)`` of the fitted law along compute, or None if it has no such curve."""
  law = fit.law_object
  if _is_allocatable(law):
    curve = _optimal_curve(fit, compute_K, samples)
    band = curve["bands"]["loss"] if curve["bands"] else None
    return curve["loss"], band, "fit at the compute-optimal N*(C), D*(C)"
  if set(law.variables) == {"C"}:
    loss = _law_loss(law, fit.params, {"C": compute_K})
    band = _quantile_band(_law_loss(law, samples, {"C": compute_K})) if samples is not None else None
    return loss, band, f"fit L(C) ({law.name})"
  return None


def _log_colorbar(figure, axes, values: np.ndarray, label: str):
  from matplotlib import cm, colors

  norm = colors.LogNorm(vmin=float(np.min(values)), vmax=float(np.max(values)))
  mappable = cm.ScalarMappable(norm=norm, cmap=COLORMAP)
  figure.colorbar(mappable, ax=axes, label=label, pad=0.01)
  return mappable


def _plain_log_ticks(axis) -> None:
  """Decimal tick labels (2.5, 3, 4) on a log axis that spans less than a decade."""
  from matplotlib import ticker

  axis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0)))
  axis.set_major_formatter(ticker.FormatStrFormatter("%g"))
  axis.set_minor_formatter(ticker.NullFormatter())


def _short(value: float) -> str:
  if value == 0 or not math.isfinite(value):
    return f"{value:g}"
  exponent = int(math.floor(math.log10(abs(value))))
  if -2 <= exponent < 4:
    return f"{value:.4g}"
  mantissa = value / 10**exponent
  return f"{mantissa:.2f}e{exponent}"


def _law_title(fit: fitting.FitResult) -> str:
  shown = ", ".join(f"{k}={_short(v)}" for k, v in fit.params.items())
  return f"{fit.law}: {shown}"


# --- Figures ----------------------------------------------------------------------------------


def loss_vs_compute(fit, runs, *, extend_decades: float = EXTEND_DECADES, log_loss_axis: bool = True):
  """Runs' loss against training compute, coloured by model size, with the fitted law.

  For a law of ``N`` and ``D`` the curve is the loss at the compute-optimal
  ``N*(C), D*(C)`` (the lower envelope of the runs); for a law of ``C`` alone
  it is ``L(C)``. It runs ``extend_decades`` beyond the largest run, with the
  95% bootstrap band when the fit has one.

  Args:
    fit: a :class:`~jaxscale.fitting.FitResult` or the path of its JSON.
    runs: the run set (path, DataFrame or :class:`~jaxscale.runs.RunSet`).
    extend_decades: decades of compute beyond the data for the curve.
    log_loss_axis: log (default) or linear loss axis.

  Returns:
    A matplotlib ``Figure``.
  """
  fit, runs = _fit(fit), runs_lib.load(runs)
  samples = _samples(fit)
  figure = _figure(8.0, 5.5)
  axes = figure.add_subplot()
  mappable = _log_colorbar(figure, axes, runs.N, "parameters N")
  axes.scatter(runs.C, runs.loss, c=mappable.to_rgba(runs.N), s=18, edgecolors="none", alpha=0.85, label=f"runs ({len(runs)})")

  compute_K = _compute_grid(runs, extend_decades)
  along = _loss_along_compute(fit, compute_K, samples)
  if along is None:
    warnings.warn(f"law {fit.law!r} reads {', '.join(fit.law_object.variables)}: no loss-vs-compute curve drawn", PlotWarning, stacklevel=2)
  else:
    loss_K, band, label = along
    axes.plot(compute_K, loss_K, color=FIT_COLOR, lw=2, label=label, zorder=3)
    if band is not None:
      axes.fill_between(compute_K, band[0], band[1], color=FIT_COLOR, alpha=BAND_ALPHA, lw=0, label=f"{LEVEL:.0%} bootstrap band", zorder=2)
    axes.axvline(runs.C.max(), color="0.5", ls=":", lw=1)
    axes.text(runs.C.max(), 0.98, " extrapolation →", transform=axes.get_xaxis_transform(), va="top", ha="left", color="0.35", fontsize=9)
  if "E" in fit.params and fit.params["E"] >= 0.1 * float(np.min(runs.loss)):
    # A vanishing E (an unidentified asymptote) would stretch the axis over decades below the runs.
    axes.axhline(fit.params["E"], color="0.3", ls="--", lw=1, label=f"irreducible loss E = {fit.params['E']:.3f}")

  axes.set_xscale("log")
  if log_loss_axis:
    axes.set_yscale("log")
    _plain_log_ticks(axes.yaxis)
  axes.set_xlabel("training compute C (FLOPs)")
  axes.set_ylabel("loss (nats/token)")
  axes.set_title(f"Loss vs compute\n{_law_title(fit)}", fontsize=10)
  axes.grid(True, which="major", alpha=0.3)
  axes.legend(loc="lower left", fontsize=9)
  return figure


def frontier(
    fit, runs, *, extend_decades: float = EXTEND_DECADES, marker_compute: float | None = None,
    reference: Mapping[str, Any] | str | None = None,
):
  """The compute-optimal frontier ``N*(C)`` and ``D*(C)``, two log-log panels.

  Each panel shows the fitted optimum (with its 95% bootstrap band when the
  fit has one) and the runs' own ``(C, N)`` or ``(C, D)``. On request it also
  marks the fit's optimum at ``marker_compute`` and a published model
  ``reference`` (e.g. :data:`CHINCHILLA`: 70B parameters and 1.4T tokens for
  5.76e23 FLOPs, whose budget is then marked too).

  Args:
    fit: a fit of a law of ``N`` and ``D`` (or the path of its JSON).
    runs: the run set.
    extend_decades: decades beyond the largest run (widened to reach a marked budget).
    marker_compute: a budget at which to mark the fit's optimum, or None (default).
    reference: a model to draw as stars, ``{"name", "C", "N", "D"}`` or a
      name in :data:`REFERENCES` (``"chinchilla"``), or None (default).

  Returns:
    A matplotlib ``Figure``.

  Raises:
    ValueError: when the law is not a law of ``N`` and ``D``, or ``reference`` is unknown.
  """
  fit, runs = _fit(fit), runs_lib.load(runs)
  law = fit.law_object
  if not _is_allocatable(law):
    raise ValueError(f"the frontier needs a law of N and D (e.g. chinchilla); law {law.name!r} reads {', '.join(law.variables)}")
  reference = _reference(reference)
  if reference is not None and marker_compute is None:
    marker_compute = reference["C"]
  if marker_compute is not None and not (math.isfinite(marker_compute) and marker_compute > 0):
    raise ValueError(f"marker_compute must be a positive budget in FLOPs, got {marker_compute}")
  samples = _samples(fit)
  compute_K = _compute_grid(runs, extend_decades, CURVE_POINTS - 1)
  if marker_compute is not None and marker_compute > compute_K[-1]:
    compute_K = np.logspace(math.log10(compute_K[0]), math.log10(marker_compute) + 0.3, CURVE_POINTS - 1)
  budgets = np.append(compute_K, marker_compute if marker_compute is not None else compute_K[-1])
  solved = _optimal_curve(fit, budgets, samples)
  curve = _split(solved, slice(0, -1))
  marked = _split(solved, slice(-1, None)) if marker_compute is not None else None

  figure = _figure(11.0, 4.8)
  panels = figure.subplots(1, 2, sharex=True)
  for axes, name, label, unit in ((panels[0], "N", "parameters N", "parameters"), (panels[1], "D", "training tokens D", "tokens")):
    axes.scatter(runs.C, getattr(runs, name), s=12, color="0.55", edgecolors="none", alpha=0.7, label=f"runs ({len(runs)})")
    axes.plot(compute_K, curve[name], color=FIT_COLOR, lw=2, label=f"fit: {name}*(C)")
    if curve["bands"]:
      low, high = curve["bands"][name]
      axes.fill_between(compute_K, low, high, color=FIT_COLOR, alpha=BAND_ALPHA, lw=0, label=f"{LEVEL:.0%} bootstrap band")
    if marked is not None:
      value = float(marked[name][0])
      text = f"{name}* = {_short(value)}"
      if marked["bands"]:
        low, high = (float(marked["bands"][name][i][0]) for i in (0, 1))
        axes.errorbar([marker_compute], [value], yerr=[[value - low], [high - value]], fmt="none", ecolor="black", capsize=4, lw=1.2)
        text += f"\n[{_short(low)}, {_short(high)}]"
      axes.plot([marker_compute], [value], "o", mfc="none", mec="black", mew=1.5, ms=11, label=f"fit's optimum at C = {_short(marker_compute)}", zorder=4)
      axes.annotate(text, (marker_compute, value), xytext=(-10, 10), textcoords="offset points", ha="right", fontsize=9)
    if reference is not None:
      star = f"{reference['name']}: {_short(reference[name])} {unit}"
      axes.plot([reference["C"]], [reference[name]], "*", color="tab:blue", ms=13, label=star, zorder=5)
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("training compute C (FLOPs)")
    axes.set_ylabel(label)
    axes.grid(True, which="major", alpha=0.3)
    axes.legend(loc="upper left", fontsize=8.5)
  panels[0].set_title("compute-optimal model size N*(C)")
  panels[1].set_title("compute-optimal training tokens D*(C)")
  figure.suptitle(f"Compute-optimal frontier (C = 6ND)   {_law_title(fit)}", fontsize=10)
  return figure


def _reference(reference) -> dict[str, Any] | None:
  if reference is None:
    return None
  if isinstance(reference, str):
    if reference not in REFERENCES:
      raise ValueError(f"unknown reference model {reference!r}; known: {', '.join(REFERENCES)}")
    return dict(REFERENCES[reference])
  missing = [k for k in ("name", "C", "N", "D") if k not in reference]
  if missing:
    raise ValueError(f"reference needs name, C, N and D; missing {', '.join(missing)}")
  return dict(reference)


def isoflop_curves(runs, *, fit=None, tolerance: float | None = None, min_sizes: int = 3):
  """IsoFLOP profiles: loss against model size per compute budget, with Approach 2's parabolas.

  Left: each budget's runs (the ``group`` column, else runs clustered by
  compute as in :mod:`jaxscale.isoflop`), its parabola in ``log N`` and its
  minimum (hollow where it lies outside the sizes tried, i.e. extrapolated).
  Right: the minima ``N_opt`` against compute with the power law
  ``N_opt = k C^a`` through them (and, given ``fit``, the law's ``N*(C)``).
  What Approach 2 warned about (skipped budgets, extrapolated minima) is
  printed under the panels, so the figure does not hide it.

  Args:
    runs: the run set.
    fit: optionally a fit of a law of ``N`` and ``D`` to compare with.
    tolerance: budget clustering gap in dex of C (default: jaxscale.isoflop's).
    min_sizes: distinct sizes a budget needs.

  Returns:
    A matplotlib ``Figure``.

  Raises:
    ValueError: when the runs are not IsoFLOP-shaped (fewer than 2 budgets
      with ``min_sizes`` sizes and a loss minimum).
  """
  from jaxscale import isoflop as isoflop_lib

  runs = runs_lib.load(runs)
  tolerance = isoflop_lib.DEFAULT_TOLERANCE if tolerance is None else tolerance
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", isoflop_lib.IsoFLOPWarning)  # result.skipped holds them; drawn below
    result = isoflop_lib.approach2(runs, tolerance=tolerance, min_sizes=min_sizes)
  index_R, labels, _ = isoflop_lib.assign_budgets(runs, tolerance)
  budgets = [p["C"] for p in result.points]

  figure = _figure(12.0, 5.0)
  left, right = figure.subplots(1, 2, width_ratios=(1.5, 1))
  figure.get_layout_engine().set(wspace=0.08)  # room between the colorbar's label and the right panel's
  from matplotlib import cm, colors

  norm = colors.LogNorm(vmin=min(budgets), vmax=max(budgets))
  mappable = cm.ScalarMappable(norm=norm, cmap="plasma_r")
  kept = {p["label"]: p for p in result.points}
  in_kept = np.isin(np.asarray(labels)[index_R], list(kept))
  if (~in_kept).any():
    left.scatter(runs.N[~in_kept], runs.loss[~in_kept], s=10, color="0.75", edgecolors="none", label=f"runs not in a fitted budget ({int((~in_kept).sum())})")
  for point in result.points:
    color = mappable.to_rgba(point["C"])
    members = np.asarray(labels)[index_R] == point["label"]
    left.scatter(runs.N[members], runs.loss[members], s=14, color=color, edgecolors="none", alpha=0.8)
    x = np.log(runs.N[members]) - point["center"]
    x_grid = np.linspace(x.min() - 0.15, x.max() + 0.15, 100)
    c0, c1, c2 = point["coefficients"]
    left.plot(np.exp(x_grid + point["center"]), c0 + c1 * x_grid + c2 * x_grid**2, color=color, lw=1.5)
    if point["interior"]:
      left.plot([point["N_opt"]], [point["loss_opt"]], "D", color=color, mec="black", mew=0.8, ms=6, zorder=4)
    else:  # hollow, in the budget's colour: the parabola's vertex lies beyond the sizes tried
      left.plot([point["N_opt"]], [point["loss_opt"]], "D", mfc="white", mec=color, mew=1.6, ms=6, zorder=4)
  # Legend proxies: colours say the budget (colorbar); the shapes say what is drawn.
  left.scatter([], [], s=14, color="0.3", label="runs")
  left.plot([], [], color="0.3", lw=1.5, label="parabola in log N (Approach 2)")
  left.plot([], [], "D", color="0.3", mec="black", mew=0.8, label="minimum N_opt")
  extrapolated = [p for p in result.points if not p["interior"]]
  if extrapolated:
    left.plot([], [], "D", mfc="white", mec="0.3", mew=1.6, label=f"minimum outside the sizes tried ({len(extrapolated)})")
  figure.colorbar(mappable, ax=left, label="compute budget C (FLOPs)", pad=0.01)
  left.set_xscale("log")
  left.set_xlabel("parameters N")
  left.set_ylabel("loss (nats/token)")
  left.set_title(f"IsoFLOP profiles: {len(result.points)} budgets of >= {min_sizes} sizes (Approach 2)")
  left.grid(True, which="major", alpha=0.3)
  left.legend(loc="best", fontsize=8.5)  # parabolas rise on both sides: let matplotlib find the gap

  C_B = np.asarray(budgets)
  N_opt_B = np.asarray([p["N_opt"] for p in result.points])
  interior_B = np.asarray([p["interior"] for p in result.points])
  face_B = np.where(interior_B[:, None], mappable.to_rgba(C_B), (1.0, 1.0, 1.0, 1.0))
  edge_B = np.where(interior_B[:, None], (0.0, 0.0, 0.0, 1.0), mappable.to_rgba(C_B))
  right.scatter(C_B, N_opt_B, c=face_B, marker="D", edgecolors=edge_B, linewidths=np.where(interior_B, 0.8, 1.6), s=40, zorder=3, label="IsoFLOP minima")
  grid_C = np.logspace(math.log10(C_B.min()) - 0.3, math.log10(C_B.max()) + 0.3, CURVE_POINTS)
  right.plot(grid_C, result.N_opt(grid_C), color="black", lw=1.5, label=f"N_opt ∝ C^{result.a:.3f} (Approach 2)")
  if fit is not None:
    fit = _fit(fit)
    if _is_allocatable(fit.law_object):
      curve = _optimal_curve(fit, grid_C, _samples(fit))
      share = ""
      if {"alpha", "beta"} <= set(fit.params):
        share = f", a = {fit.params['beta'] / (fit.params['alpha'] + fit.params['beta']):.3f}"
      right.plot(grid_C, curve["N"], color=FIT_COLOR, lw=1.5, ls="--", label=f"fitted {fit.law} law N*(C){share}")
      if curve["bands"]:
        low, high = curve["bands"]["N"]
        right.fill_between(grid_C, low, high, color=FIT_COLOR, alpha=BAND_ALPHA, lw=0, label=f"{LEVEL:.0%} bootstrap band")
  right.set_xscale("log")
  right.set_yscale("log")
  right.set_xlabel("compute budget C (FLOPs)")
  right.set_ylabel("compute-optimal parameters N_opt")
  right.set_title("IsoFLOP minima vs compute")
  right.grid(True, which="major", alpha=0.3)
  right.legend(loc="upper left", fontsize=8.5)
  for axis in (left.xaxis, right.xaxis, right.yaxis):
    _sparse_log_ticks(axis)
  if result.skipped:
    _footnote(figure, ["Approach 2 warnings:"] + [f"- {message}" for message in result.skipped])
  return figure


def _sparse_log_ticks(axis) -> None:
  """Short labels at 1, 2 and 5 per decade on a log axis that spans under 3 decades; decades only beyond.

  Matplotlib labels every minor tick (2x10^10, 3x10^10, 4x10^10, ...) when a
  log axis spans about a decade, and on a narrow panel those long labels run
  into each other. ``2e10`` at 1, 2, 5 steps stays readable.
  """
  from matplotlib import ticker

  low, high = sorted(axis.get_view_interval())
  if not (low > 0 and math.isfinite(high)):
    return
  subs = (1.0,) if math.log10(high / low) >= 3 else (1.0, 2.0, 5.0)
  axis.set_major_locator(ticker.LogLocator(base=10, subs=subs))
  axis.set_major_formatter(ticker.FuncFormatter(_tick_label))
  axis.set_minor_locator(ticker.LogLocator(base=10, subs=np.arange(2, 10)))
  axis.set_minor_formatter(ticker.NullFormatter())


def _tick_label(value: float, _position=None) -> str:
  if value <= 0 or not math.isfinite(value):
    return ""
  exponent = math.floor(math.log10(value) + 1e-9)
  mantissa = round(value / 10**exponent, 6)
  if -2 <= exponent <= 3:
    return f"{value:g}"
  return f"{mantissa:g}e{exponent}"


def _footnote(figure, lines: list[str], width: int = 150) -> None:
  """Wrapped text under the panels (the constrained layout makes room for it)."""
  import textwrap

  wrapped = [textwrap.fill(line, width, subsequent_indent="  ") for line in lines]
  figure.supxlabel("\n".join(wrapped), fontsize=8, ha="left", x=0.01, color="0.25")


def bootstrap_histograms(fit, *, bins: int = 40):
  """One histogram per natural parameter's bootstrap distribution, with estimate and 95% CI.

  Parameters spread over more than a factor of 3 (A and B of Chinchilla) get a
  log axis and log-spaced bins.

  Args:
    fit: a fit with a bootstrap section (``jaxscale fit --bootstrap B``).
    bins: bins per histogram.

  Returns:
    A matplotlib ``Figure``.

  Raises:
    ValueError: when the fit has no bootstrap section.
  """
  fit = _fit(fit)
  boot = fit.bootstrap
  if boot is None:
    raise ValueError(f"fit of law {fit.law!r} has no bootstrap section; create it with `jaxscale fit RUNS --bootstrap 1000 --out FIT_JSON`")
  samples = boot.natural()
  ci = boot.ci95
  names = list(boot.names)
  columns = min(len(names), 3)
  rows = math.ceil(len(names) / columns)
  figure = _figure(4.0 * columns, 3.2 * rows)
  panels = np.atleast_1d(figure.subplots(rows, columns)).ravel()
  for axes, name in zip(panels, names):
    values = samples[name]
    estimate = float(fit.params[name])
    low, high = ci[name]
    log_axis = bool(values.min() > 0 and values.max() / values.min() > 3.0)
    # A few replicates far out in a flat direction (A ~ 1e150) would squeeze the rest into one bin:
    # the axis spans the central 98% (and the interval and estimate), and the title counts the rest.
    shown_lo, shown_hi = np.quantile(values, [0.01, 0.99], method="nearest")
    shown_lo, shown_hi = min(shown_lo, low, estimate), max(shown_hi, high, estimate)
    span = np.log if log_axis else (lambda v: v)
    if span(values.max()) - span(values.min()) <= 3.0 * (span(shown_hi) - span(shown_lo)):
      shown_lo, shown_hi = values.min(), values.max()  # no far-out tail: show every replicate
    outside = int(np.count_nonzero((values < shown_lo) | (values > shown_hi)))
    if log_axis:
      edges = np.geomspace(shown_lo, shown_hi, bins + 1)
    else:
      edges = np.linspace(shown_lo, shown_hi, bins + 1) if shown_hi > shown_lo else bins
    axes.axvspan(low, high, color="tab:orange", alpha=0.12, lw=0, zorder=0)
    axes.hist(values, bins=edges, color="tab:blue", alpha=0.8, zorder=1, label="bootstrap replicates")
    for bound in (low, high):
      axes.axvline(bound, color="tab:orange", ls="--", lw=1.4, zorder=2)
    axes.axvline(estimate, color="black", lw=2, zorder=3, label="full-data estimate")
    if log_axis:
      axes.set_xscale("log")
    axes.set_xlabel(f"{name}" + (" (log scale)" if log_axis else ""))
    axes.set_ylabel("replicates")
    beyond = f"\n({outside} replicates beyond the axis)" if outside else ""
    axes.set_title(f"{name} = {_short(estimate)}   95% CI [{_short(low)}, {_short(high)}]{beyond}", fontsize=10)
  for axes in panels[len(names):]:
    axes.set_visible(False)
  from matplotlib.patches import Patch

  handles, labels = panels[0].get_legend_handles_labels()
  handles.append(Patch(facecolor="tab:orange", alpha=0.3, edgecolor="tab:orange", linestyle="--", label=f"{LEVEL:.0%} percentile interval"))
  figure.legend(handles=handles, loc="outside lower center", ncols=3, fontsize=9)
  cluster = f", clusters of {boot.cluster!r}" if boot.cluster else ""
  figure.suptitle(f"Bootstrap of {fit.law}: {boot.describe()}{cluster}", fontsize=11)
  return figure


# --- All at once -----------------------------------------------------------------------------


def plot_all(
    fit, runs, out_dir: str | os.PathLike, *, dpi: int = DPI, extend_decades: float = EXTEND_DECADES,
    marker_compute: float | None = None, reference: Mapping[str, Any] | str | None = None, check_runs: bool = True,
) -> list[Path]:
  """Writes every figure that applies as a PNG in ``out_dir`` and returns their paths.

  ``loss_vs_compute.png`` always; ``frontier.png`` for laws of ``N`` and
  ``D``; ``isoflop.png`` when the runs hold at least 2 budgets of 3 or more
  sizes; ``bootstrap.png`` when the fit has a bootstrap section. A figure that
  does not apply is skipped with a :class:`PlotWarning` saying why.

  Args:
    fit: a :class:`~jaxscale.fitting.FitResult` or the path of its JSON.
    runs: the run set the law was fitted to.
    out_dir: created if missing.
    dpi: resolution of the PNGs.
    extend_decades: decades of compute beyond the data for the fitted curves.
    marker_compute, reference: marks on ``frontier.png`` (see :func:`frontier`); none by default.
    check_runs: refuse runs that are not the ones fitted (:func:`check_runs_match`).

  Returns:
    The written paths, in the order above.
  """
  fit, runs = _fit(fit), runs_lib.load(runs)
  runs_lib.check_for_law(runs, fit.law_object)
  if check_runs:
    check_runs_match(fit, runs)
  out = Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  written = []

  def save(figure, name):
    path = out / f"{name}.png"
    from jaxscale import atomic

    with atomic.writing(path, "wb") as handle:
      figure.savefig(handle, dpi=dpi, format="png")
    written.append(path)

  save(loss_vs_compute(fit, runs, extend_decades=extend_decades), "loss_vs_compute")
  if _is_allocatable(fit.law_object):
    save(frontier(fit, runs, extend_decades=extend_decades, marker_compute=marker_compute, reference=reference), "frontier")
  else:
    warnings.warn(f"frontier.png skipped: law {fit.law!r} is not a law of N and D", PlotWarning, stacklevel=2)
  try:
    figure = isoflop_curves(runs, fit=fit)
  except ValueError as error:
    warnings.warn(f"isoflop.png skipped: the runs are not IsoFLOP-shaped ({error})", PlotWarning, stacklevel=2)
  else:
    save(figure, "isoflop")
  if _samples(fit) is not None:
    save(bootstrap_histograms(fit), "bootstrap")
  else:
    warnings.warn("bootstrap.png skipped: the fit has no bootstrap section (jaxscale fit --bootstrap B --out FIT_JSON)", PlotWarning, stacklevel=2)
  return written


__all__ = ("CHINCHILLA", "PlotWarning", "bootstrap_histograms", "check_runs_match", "frontier", "isoflop_curves", "loss_vs_compute", "plot_all")
