"""A fitted law in plain language: the rules of thumb researchers quote.

At a reference scale (the largest run, or ``N`` and ``D`` you give), what do
10x parameters, 10x data and 10x compute spent optimally do to the loss, in
absolute terms and as a share of the reducible part (loss above the
irreducible ``E``)? What split of compute is optimal there, and what are the
fitted exponents?

Example:
  >>> from jaxscale import summary
  >>> facts = summary.summarize(result, N=7e10, D=1.4e12)  # doctest: +SKIP
  >>> print(summary.format_summary(facts))  # doctest: +SKIP
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from jaxscale import allocation
from jaxscale import laws as laws_lib
from jaxscale import runs as runs_lib

FLOPS_PER_PARAM_TOKEN = 6.0
SCALE = 10.0


def _reference(law: laws_lib.Law, fit, N, D, C, runs) -> dict[str, Any]:
  """The reference scale: given values, else the largest run (by compute) of ``runs``."""
  uses = set(law.variables)
  given = {"N": N, "D": D, "C": C}
  for name, value in given.items():
    if value is not None and not (math.isfinite(value) and value > 0):
      raise ValueError(f"reference {name} must be positive and finite, got {value}")
  if runs is not None and not any(given[v] is not None for v in uses & set(given)):
    runs = runs_lib.load(runs)
    by = "C" if {"N", "D"} <= uses or "C" in uses else next(iter(uses & {"N", "D"}))
    row = int(np.argmax(runs.column(by)))
    given = {"N": float(runs.N[row]), "D": float(runs.D[row]), "C": float(runs.C[row])}
    source = f"the largest run (by {by}) of {runs.source}"
  elif "largest_run" in (fit.extras or {}) and all(given[v] is None for v in uses & set(given)):
    given = {**given, **{k: float(v) for k, v in fit.extras["largest_run"].items() if k in given}}
    source = "the largest run of the fit"
  else:
    source = "given"
  if {"N", "D"} <= uses:
    if given["N"] is None or given["D"] is None:
      raise ValueError(
          f"law {law.name!r} needs a reference scale: pass N and D (--N, --D), or the runs the law was fitted to (--runs)"
      )
    given["C"] = FLOPS_PER_PARAM_TOKEN * given["N"] * given["D"]
  else:
    missing = [v for v in law.variables if v in given and given[v] is None]
    if missing:
      raise ValueError(f"law {law.name!r} needs a reference {', '.join(missing)} (--{missing[0]}), or the runs (--runs)")
  return {"source": source, **{k: v for k, v in given.items() if v is not None}}


def _percent(change: float, reducible: float) -> float:
  return 100.0 * change / reducible if reducible > 0 else float("nan")


def summarize(fit, *, N: float | None = None, D: float | None = None, C: float | None = None, runs: Any = None) -> dict[str, Any]:
  """The rules of thumb of a fitted law, as a JSON-ready dict.

  Args:
    fit: a :class:`~jaxscale.fitting.FitResult`.
    N, D: the reference scale (parameters, tokens); ``C`` for laws of compute.
    runs: the run set the law was fitted to (path or RunSet); its largest run
      (by compute) is the reference when ``N``/``D`` are not given. A fit with
      ``extras["largest_run"] = {"N": ..., "D": ...}`` serves too.

  Returns:
    ``law, formula, reference {N, D, C, loss, source}, irreducible_loss,
    reducible_loss, effects {params_10x, data_10x, compute_10x}`` (each with
    ``loss``, ``change``, ``percent_of_reducible``; only those the law's
    variables allow), ``compute_optimal {compute, N, D, tokens_per_param,
    loss}`` for laws of N and D, and ``exponents``.
  """
  law = fit.law_object
  params = dict(fit.params)
  reference = _reference(law, fit, N, D, C, runs)
  # The data-constrained law is summarised without a cap on unique tokens.
  extra = {"U": math.exp(allocation.NO_CAP_LOG_U - 1.0)} if "U" in law.variables else {}

  def loss_at(**scale):
    inputs = {v: reference[v] for v in law.variables if v in reference}
    return float(fit.predict(**{**inputs, **extra, **scale})[0])

  E = float(params.get("E", 0.0))
  loss = loss_at()
  reference["loss"] = loss
  reducible = loss - E
  out: dict[str, Any] = {
      "law": law.name,
      "formula": law.formula,
      "reference": reference,
      "irreducible_loss": E,
      "params": params,
      "reducible_loss": reducible,
      "effects": {},
  }
  for variable, key in (("N", "params_10x"), ("D", "data_10x")):
    if variable in law.variables:
      scaled = loss_at(**{variable: SCALE * reference[variable]})
      change = scaled - loss
      out["effects"][key] = {"loss": scaled, "change": change, "percent_of_reducible": _percent(change, reducible)}
  if {"N", "D"} <= set(law.variables):
    best = allocation.allocate(law, params, [reference["C"], SCALE * reference["C"]])
    before, after = float(best.loss[0]), float(best.loss[1])
    out["compute_optimal"] = {
        "compute": reference["C"],
        "N": float(best.N[0]),
        "D": float(best.D[0]),
        "tokens_per_param": float(best.tokens_per_param[0]),
        "loss": before,
    }
    out["effects"]["compute_10x"] = {
        "loss_before": before,
        "loss": after,
        "change": after - before,
        "percent_of_reducible": _percent(after - before, before - E),
        "N": float(best.N[1]),
        "D": float(best.D[1]),
    }
  elif "C" in law.variables:
    scaled = loss_at(C=SCALE * reference["C"])
    out["effects"]["compute_10x"] = {"loss_before": loss, "loss": scaled, "change": scaled - loss, "percent_of_reducible": _percent(scaled - loss, reducible)}
  exponents = {k: float(v) for k, v in params.items() if k.startswith(("alpha", "beta"))}
  if "alpha" in exponents and "beta" in exponents:
    # Hoffmann et al.'s a and b: N* grows as C^a, D* as C^b.
    alpha, beta = exponents["alpha"], exponents["beta"]
    exponents["N_opt_vs_compute"] = beta / (alpha + beta)
    exponents["D_opt_vs_compute"] = alpha / (alpha + beta)
  out["exponents"] = exponents
  return out


def _number(value: float) -> str:
  if not math.isfinite(value):
    return str(value)
  return f"{value:.3g}" if 1e-3 <= abs(value) < 1e4 else f"{value:.3g}".replace("e+", "e")


def _effect(label: str, effect: dict[str, float]) -> str:
  percent = effect["percent_of_reducible"]
  share = f", {abs(percent):.0f}% of the reducible loss" if math.isfinite(percent) else ""
  direction = "lowers" if effect["change"] < 0 else "raises"
  return f"- {label} {direction} the loss by {abs(effect['change']):.3g} (to {effect['loss']:.4g}{share})."


def format_summary(facts: dict[str, Any]) -> str:
  """A few readable sentences and bullets from :func:`summarize`'s dict."""
  reference = facts["reference"]
  scale = ", ".join(f"{name} = {_number(reference[name])}" for name in ("N", "D", "C") if name in reference)
  where = "the largest run" if reference["source"].startswith("the largest") else "the given scale"
  lines = [
      f"Law {facts['law']}: {facts['formula']}",
      f"At {where} ({scale}) the predicted loss is {reference['loss']:.4g}; "
      + (
          f"{facts['reducible_loss']:.3g} of it is reducible (above the irreducible E = {facts['irreducible_loss']:.4g})."
          if facts["irreducible_loss"] > 1e-9 * max(reference["loss"], 1e-300)
          else "the fit put the irreducible loss E at 0: the runs do not determine it, and the shares below treat "
               "all of the loss as reducible."
          if "irreducible_loss" in facts and "E" in facts.get("params", {"E": 0.0})
          else "the law has no irreducible term, so all of it is reducible."
      ),
  ]
  effects = facts["effects"]
  if "params_10x" in effects:
    lines.append(_effect("10x parameters (same data)", effects["params_10x"]))
  if "data_10x" in effects:
    lines.append(_effect("10x data (same model)", effects["data_10x"]))
  if "compute_10x" in effects:
    effect = effects["compute_10x"]
    if "N" in effect:  # compared with the optimal loss at today's compute, not the reference run's
      line = _effect("10x compute spent optimally", effect)[:-2]
      line += f"; from the optimal {effect['loss_before']:.4g} at today's compute, with N = {_number(effect['N'])}, D = {_number(effect['D'])})."
    else:
      line = _effect("10x compute", effect)
    lines.append(line)
  if "compute_optimal" in facts:
    best = facts["compute_optimal"]
    lines.append(
        f"- Compute-optimal at C = {_number(best['compute'])} FLOPs: N = {_number(best['N'])}, D = {_number(best['D'])}, "
        f"{best['tokens_per_param']:.1f} tokens per parameter (loss {best['loss']:.4g})."
    )
  exponents = facts["exponents"]
  if exponents:
    fitted = ", ".join(f"{k} = {v:.3f}" for k, v in exponents.items() if not k.endswith("_vs_compute"))
    line = f"- Fitted exponents: {fitted}"
    if "N_opt_vs_compute" in exponents:
      line += f"; optimal N grows as C^{exponents['N_opt_vs_compute']:.2f} and D as C^{exponents['D_opt_vs_compute']:.2f}"
    lines.append(line + ".")
  return "\n".join(lines)
