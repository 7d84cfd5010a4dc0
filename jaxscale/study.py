"""A whole scaling study on this machine: sweep, fit, bootstrap, allocate, plot, report.

This is what ``jaxscale demo`` runs. Every step writes its artifact to
``out_dir`` (``runs.csv``, ``curves.csv``, ``fit.json``, PNGs, ``report.md``);
the sweep resumes where it stopped, so a crashed study restarts cheaply.

Example:
  >>> from jaxscale import study
  >>> report = study.run("/tmp/demo", plan="quick")  # doctest: +SKIP
  >>> print(open("/tmp/demo/report.md").read())  # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
import time
import warnings
from pathlib import Path
from typing import Any

# Budgets to extrapolate to, as multiples of the largest run's compute.
EXTRAPOLATION_FACTORS = (10.0, 100.0)


def run(
    out_dir: str | os.PathLike,
    *,
    plan: Any = "demo",
    corpus: str | None = None,
    bootstrap: int = 1000,
    seed: int = 0,
    progress: bool = True,
    workers: int = 1,
) -> dict[str, Any]:
  """Runs the study and writes its artifacts. Returns the facts the report states.

  Args:
    out_dir: folder for every artifact (created; reused to resume a sweep).
    plan: sweep preset ``"quick"`` (~1 min) or ``"demo"`` (~5 min), a JSON
      config path, or a :class:`~jaxscale.sweep.Plan`.
    corpus: ``"synthetic"`` (known entropy rate), ``"stdlib"`` or a text path;
      None keeps the plan's (the presets': synthetic).
    bootstrap: replicates for the confidence intervals (0 for none).
    seed: seed of the bootstrap.
    progress: show sweep progress on stderr.
    workers: training processes for the sweep (see :func:`jaxscale.sweep.run_sweep`).
  """
  from jaxscale import allocation, diagnostics, fitting, isoflop, plots, resampling, runs as runs_lib, summary, sweep

  if bootstrap < 0:
    raise ValueError(f"bootstrap must be >= 0, got {bootstrap}")
  out = Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  timings: dict[str, float] = {}

  start = time.perf_counter()
  plan = sweep.resolve_plan(plan, corpus)
  frame = sweep.run_sweep(plan, out, progress=progress, workers=workers)
  timings["sweep"] = time.perf_counter() - start
  runs = runs_lib.from_frame(frame, source=str(out / "runs.csv"))

  start = time.perf_counter()
  fit = fitting.fit("chinchilla", runs)
  if bootstrap:
    fit = resampling.attach(fit, resampling.bootstrap("chinchilla", runs, n=bootstrap, seed=seed, fit=fit))
  fit.to_json(out / "fit.json")
  timings["fit"] = time.perf_counter() - start

  start = time.perf_counter()
  largest = float(runs.C.max())
  budgets = [largest * factor for factor in EXTRAPOLATION_FACTORS]
  rows = allocation.frontier(
      "chinchilla", fit.params, compute=budgets, samples=allocation.bootstrap_params(fit)
  )
  facts = summary.summarize(fit, runs=runs)
  findings = diagnostics.diagnose(fit, runs)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # skipped budgets are reported in the result itself
    try:
      approach2 = isoflop.approach2(runs, bootstrap=200 if bootstrap else 0, seed=seed)
    except ValueError as error:
      approach2 = error
  timings["analysis"] = time.perf_counter() - start

  start = time.perf_counter()
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    figures = plots.plot_all(fit, runs, out)
  timings["plots"] = time.perf_counter() - start

  entropy = frame["entropy_rate"].dropna() if "entropy_rate" in frame.columns else []
  result = {
      "out_dir": str(out),
      "plan": plan.name,
      "corpus": plan.runs[0].corpus,
      "runs": runs,
      "fit": fit,
      "allocations": rows,
      "summary": facts,
      "summary_text": summary.format_summary(facts),
      "diagnostics": findings,
      "approach2": approach2,
      "entropy_rate": float(entropy.iloc[0]) if len(entropy) else None,
      "figures": figures,
      "timings": timings,
  }
  from jaxscale import atomic

  atomic.write_text(out / "report.md", render_report(result))
  return result


def _ci95(fit, name: str):
  return fit.extras.get("bootstrap", {}).get("ci95", {}).get(name)


def _interval(fit, name: str) -> str:
  ci = _ci95(fit, name)
  return f"[{ci[0]:.4g}, {ci[1]:.4g}]" if ci else "n/a"


def _covers(fit, truth: float) -> str:
  interval = _ci95(fit, "E")
  if not interval:
    return ""
  lo, hi = interval
  inside = lo <= truth <= hi
  return f"The truth lies {'inside' if inside else 'outside'} the 95% bootstrap interval of E."


def render_report(result: dict[str, Any]) -> str:
  """The study as Markdown: data, fit with CIs, E vs the true entropy, allocation, figures."""
  fit, runs = result["fit"], result["runs"]
  boot = fit.extras.get("bootstrap", {})
  lines = [
      "# jaxscale scaling study",
      "",
      f"Plan `{result['plan']}` on the `{result['corpus']}` corpus: {len(runs)} micro-transformer runs, "
      f"N = {runs.N.min():.3g} to {runs.N.max():.3g} non-embedding parameters, "
      f"D = {runs.D.min():.3g} to {runs.D.max():.3g} tokens, C = {runs.C.min():.3g} to {runs.C.max():.3g} FLOPs. "
      f"Sweep {result['timings']['sweep']:.0f} s, fit and bootstrap {result['timings']['fit']:.1f} s.",
      "",
      "## Fitted law",
      "",
      f"`{fit.law_object.formula}`, Huber (delta={fit.delta:g}) on log loss; {fit.status}.",
      "",
      f"| param | estimate | 95% CI ({boot.get('n', 0)} bootstrap replicates) |",
      "|---|---|---|",
  ]
  lines += [f"| {name} | {value:.4g} | {_interval(fit, name)} |" for name, value in fit.params.items()]
  entropy = result["entropy_rate"]
  if entropy is not None:
    E = fit.params["E"]
    lines += [
        "",
        "## Irreducible loss vs the corpus's true entropy rate",
        "",
        f"The synthetic language's entropy rate is {entropy:.4f} nats/token (computed exactly from its "
        f"transition matrix). The fitted irreducible loss is E = {E:.4f} {_interval(fit, 'E')}, "
        f"{'above' if E > entropy else 'below'} the truth by {abs(E - entropy):.4f} nats "
        f"({100 * abs(E - entropy) / entropy:.1f}%). {_covers(fit, entropy)}"
        + (" No model can beat the entropy rate, so E below it means the runs are too small or too few to pin "
           "down the asymptote." if E < entropy else ""),
    ]
  lines += ["", "## Compute-optimal allocation (extrapolated)", "",
            "| compute (FLOPs) | N* | D* | tokens/param | loss | N* 95% | D* 95% |", "|---|---|---|---|---|---|---|"]
  for row in result["allocations"]:
    n_ci = row.get("N_ci95")
    d_ci = row.get("D_ci95")
    fmt = lambda ci: f"[{ci[0]:.3g}, {ci[1]:.3g}]" if ci and all(map(math.isfinite, ci)) else "n/a"  # noqa: E731
    lines.append(
        f"| {row['compute']:.3g} | {row['N']:.3g} | {row['D']:.3g} | {row['tokens_per_param']:.3g} | "
        f"{row['loss']:.4f} | {fmt(n_ci)} | {fmt(d_ci)} |"
    )
  approach2 = result["approach2"]
  lines += ["", "## IsoFLOP analysis (Approach 2)", ""]
  if isinstance(approach2, Exception):
    lines.append(f"Not possible on these runs: {approach2}")
  else:
    a, b = approach2.a, approach2.b
    ci = approach2.N_opt.exponent_ci95
    a3 = fit.params["beta"] / (fit.params["alpha"] + fit.params["beta"])
    lines.append(
        f"N_opt ~ C^{a:.3f}" + (f" (95% CI [{ci[0]:.3f}, {ci[1]:.3f}])" if ci else "")
        + f", D_opt ~ C^{b:.3f}; the fitted law (Approach 3) gives N_opt ~ C^{a3:.3f}."
    )
  lines += ["", "## In plain words", "", result["summary_text"], "", "## Diagnostics", ""]
  lines += [f"- {finding}" for finding in result["diagnostics"]] or ["- none: the design identifies the law."]
  lines += ["", "## Figures", ""]
  lines += [f"![{path.stem}]({path.name})" for path in result["figures"]]
  return "\n".join(lines) + "\n"
