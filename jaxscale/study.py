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

from jaxscale import atomic

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
    plan: sweep preset ``"quick"`` (~1 min), ``"demo"`` (~5 min) or ``"seed"``, a JSON
      config path, or a :class:`~jaxscale.sweep.Plan`.
    corpus: ``"quanta"`` (the presets' lab language, exact floor), ``"synthetic"``,
      ``"stdlib"`` or a text path; None keeps the plan's.
    bootstrap: replicates for the confidence intervals (0 for none).
    seed: seed of the bootstrap.
    progress: show sweep progress on stderr.
    workers: training processes for the sweep (see :func:`jaxscale.sweep.run_sweep`).
  """
  from jaxscale import allocation, diagnostics, fitting, identifiability, isoflop, resampling, runs as runs_lib, summary, sweep

  if bootstrap < 0:
    raise ValueError(f"bootstrap must be >= 0, got {bootstrap}")
  out = Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  timings: dict[str, float] = {}
  began = time.perf_counter()

  start = time.perf_counter()
  plan = sweep.resolve_plan(plan, corpus)
  frame = sweep.run_sweep(plan, out, progress=progress, workers=workers)
  timings["sweep"] = time.perf_counter() - start
  runs = runs_lib.from_frame(frame, source=str(out / "runs.csv"))

  start = time.perf_counter()
  fit = fitting.fit(LAW, runs)
  boot = None
  if bootstrap:
    boot = resampling.bootstrap(LAW, runs, n=bootstrap, seed=seed, fit=fit)
    fit = resampling.attach(fit, boot)
  fit.to_json(out / "fit.json")
  timings["fit"] = time.perf_counter() - start

  start = time.perf_counter()
  truth = _truth(frame, plan)
  if truth.get("alpha") is not None:
    truth["with_embeddings"] = _fit_with_embeddings(frame, bootstrap=bootstrap, seed=seed)
  heldout = _heldout(frame, bootstrap=min(bootstrap, HELDOUT_BOOTSTRAP) if bootstrap else 0, seed=seed)
  largest = float(runs.C.max())
  budgets = [largest * factor for factor in EXTRAPOLATION_FACTORS]
  rows = allocation.frontier(
      LAW, fit.params, compute=budgets, samples=allocation.bootstrap_params(fit)
  )
  facts = summary.summarize(fit, runs=runs)
  findings = diagnostics.diagnose(fit, runs)
  try:
    precision = identifiability.assess(fit, runs)
  except ValueError:  # no degree of freedom left: the report says so elsewhere
    precision = None
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # skipped budgets are reported in the result itself
    try:
      approach2 = isoflop.approach2(runs, bootstrap=200 if bootstrap else 0, seed=seed)
    except ValueError as error:
      approach2 = error
  timings["analysis"] = time.perf_counter() - start

  start = time.perf_counter()
  figures = _figures(fit, runs, frame, out, heldout)
  loss_to_accuracy = _loss_to_accuracy(frame, fit, out)
  timings["plots"] = time.perf_counter() - start

  entropy = frame["entropy_rate"].dropna() if "entropy_rate" in frame.columns else []
  result = {
      "out_dir": str(out),
      "plan": plan.name,
      "corpus": plan.runs[0].corpus,
      "runs": runs,
      "frame": frame,
      "fit": fit,
      "bootstrap": boot,
      "truth": truth,
      "heldout": heldout,
      "allocations": rows,
      "summary": facts,
      "summary_text": summary.format_summary(facts),
      "diagnostics": findings,
      "identifiability": precision,
      "approach2": approach2,
      "entropy_rate": float(entropy.iloc[0]) if len(entropy) else None,
      "figures": figures,
      "loss_to_accuracy": loss_to_accuracy,
      "timings": timings,
  }
  timings["total"] = time.perf_counter() - began
  atomic.write_text(out / "report.md", render_report(result))
  atomic.write_json(out / "study.json", study_json(result))
  return result


LAW = "chinchilla"
HELDOUT_BOOTSTRAP = 1000  # replicates of the held-out fit (its band needs no more)


def _truth(frame, plan) -> dict[str, Any]:
  """The corpus's exact floor at the runs' context and, for the quanta language, the
  exponents its theory predicts; nulls on a corpus whose law is unknown."""
  from jaxscale import corpus as corpus_lib
  from jaxscale import quanta

  floors = frame["loss_floor"].dropna() if "loss_floor" in frame.columns else []
  truth: dict[str, Any] = {"E": float(floors.iloc[0]) if len(floors) else None,
                           "alpha": None, "beta": None, "corpus": plan.runs[0].corpus}
  if truth["E"] is not None and corpus_lib.is_quanta_spec(plan.runs[0].corpus):
    source = quanta.source_from_spec(plan.runs[0].corpus)
    truth.update(alpha=source.predicted_alpha, beta=source.predicted_beta,
                 quanta_exponent=source.exponent, num_keys=source.num_keys,
                 doc_length=source.doc_length)
  return truth


def _fit_with_embeddings(frame, *, bootstrap: int, seed: int) -> dict[str, Any] | None:
  """The same law with N counting every parameter (``N_total``: embeddings included).

  The quanta theory's capacity argument is about what stores a quantum, and a tiny
  model stores much of it in its embedding tables, which Kaplan's non-embedding N leaves
  out (for d8x1 they are 5x its N). Refitting on ``N_total`` tests that reading of the
  fitted alpha. None without an ``N_total`` column.
  """
  from jaxscale import fitting, resampling, runs as runs_lib

  if "N_total" not in frame.columns or frame["N_total"].isna().any():
    return None
  total = frame.assign(N=frame["N_total"])
  runs = runs_lib.from_frame(total)
  fit = fitting.fit(LAW, runs)
  ci95 = None
  if bootstrap:
    ci95 = resampling.bootstrap(LAW, runs, n=bootstrap, seed=seed, fit=fit).ci95
  return {"params": dict(fit.params),
          "ci95": {name: list(ci95[name]) for name in ("E", "alpha", "beta")} if ci95 else None}


def _heldout(frame, *, bootstrap: int, seed: int) -> dict[str, Any] | None:
  """Fits the law without the largest compute budget and predicts that budget's runs.

  The band is :func:`jaxscale.intervals.predict`'s 95% *prediction* interval for a new
  run: the held-out fit's bootstrap spread (or, without a bootstrap, its delta-method
  spread) combined with the run-to-run scatter of its residuals, which a new run has
  and the mean law does not.
  """
  import numpy as np

  from jaxscale import fitting, intervals, resampling, runs as runs_lib

  if "group" not in frame.columns or frame["group"].isna().all():
    return None
  budget_C = frame.groupby("group")["C"].median().sort_values()
  if len(budget_C) < 3:
    return None
  held = budget_C.index[-1]
  train = runs_lib.from_frame(frame[frame["group"] != held])
  test = frame[frame["group"] == held]
  try:
    fit = fitting.fit(LAW, train)
  except ValueError as error:  # e.g. too few runs below the largest budget
    return {"group": str(held), "compute": float(budget_C.iloc[-1]), "runs": [],
            "relative_error": None, "inside_band": None, "skipped": str(error)}
  if bootstrap:
    with warnings.catch_warnings():
      # The report states the count instead (a warning here printed a source line into the demo's output).
      warnings.simplefilter("ignore", resampling.BootstrapWarning)
      boot = resampling.bootstrap(LAW, train, n=bootstrap, seed=seed, fit=fit)
    fit = resampling.attach(fit, boot)
  N, D, observed = (test[c].to_numpy(float) for c in ("N", "D", "loss"))
  band = intervals.predict(intervals.attach(fit, train), {"N": N, "D": D}, kind="prediction")
  relative = (band.estimate - observed) / observed
  inside = (band.low <= observed) & (observed <= band.high)
  return {
      "group": str(held), "compute": float(budget_C.iloc[-1]),
      "params": dict(fit.params),  # natural (E, A, ...), as fit.params
      "runs": [dict(N=float(n), D=float(d), loss=float(o), predicted=float(p), relative_error=float(r),
                    band95=[float(lo), float(hi)], inside_band=bool(i))
               for n, d, o, p, r, lo, hi, i in zip(N, D, observed, band.estimate, relative, band.low,
                                                   band.high, inside)],
      "relative_error": float(np.max(np.abs(relative))),
      "best_relative_error": float(abs(relative[np.argmin(observed)])),
      "inside_band": bool(inside.all()),
      "band": band.meaning,
      "bootstrap": fit.bootstrap.describe() if fit.bootstrap is not None else None,
  }


def _figures(fit, runs, frame, out: Path, heldout) -> list[Path]:
  import pandas as pd

  from jaxscale import lab_plots, plots

  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    figures = plots.plot_all(fit, runs, out)
  extra = {"loss_and_accuracy": lab_plots.loss_and_accuracy(
      frame, heldout_group=heldout["group"] if heldout else None)}
  if (out / "curves.csv").exists():
    extra["learning_curves"] = lab_plots.learning_curves(frame, pd.read_csv(out / "curves.csv"))
  if (out / "quanta.csv").exists():
    extra["quanta"] = lab_plots.quanta_emergence(frame, pd.read_csv(out / "quanta.csv"))
  for name, figure in extra.items():
    path = out / f"{name}.png"
    figure.savefig(path, dpi=plots.DPI)
    figures.append(path)
  return figures


# --- The task chain in the lab (issue 15): accuracy as a sigmoid of the loss ----------------------


def _loss_to_accuracy(frame, fit, out: Path) -> list[str]:
  """Fits accuracy ~ sigmoid(loss) on the runs, writes loss_to_accuracy.png; the report's section."""
  import pandas as pd

  from jaxscale import plots, task_plots, tasks

  if not {"loss", "accuracy"} <= set(frame.columns) or frame["accuracy"].notna().sum() < 3:
    return []
  try:
    chain = tasks.lab_chain(frame, fit=fit)
  except ValueError as error:
    return ["", "## Accuracy from the loss", "", f"Not fitted: {error}"]
  quanta = pd.read_csv(out / "quanta.csv") if (out / "quanta.csv").exists() else None
  figure = task_plots.loss_to_accuracy_figure(frame, chain, quanta=quanta)
  figure.savefig(out / "loss_to_accuracy.png", dpi=plots.DPI)
  return [
      "", "## Accuracy from the loss", "",
      f"Step 2 of the task chain (`jaxscale.tasks`): next-token accuracy as a sigmoid of the held-out loss, from "
      f"chance ({chain['chance']:.3g}) to {chain['ceiling']:g}: k = {chain['k']:.3g}, L0 = {chain['L0']:.3g} "
      f"(mean |error| {100 * chain['mean_abs_rel_error']:.2f}% on the runs). Chained through the fitted law's loss "
      f"at each run's N and D, it predicts the accuracy within {100 * chain['chained_mean_abs_rel_error']:.2f}% on average. "
      "The mean accuracy moves smoothly with the loss"
      + (" while each sub-source's accuracy jumps from nothing to nearly perfect (right panel)." if quanta is not None else "."),
      "", "![loss_to_accuracy](loss_to_accuracy.png)",
  ]


def study_json(result: dict[str, Any]) -> dict[str, Any]:
  """The machine-readable study: truth, fit, held-out check, runs, wall time."""
  fit, boot = result["fit"], result["bootstrap"]
  frame = result["frame"]
  columns = [c for c in ("run_id", "group", "size", "N", "D", "C", "loss", "accuracy", "steps",
                         "loss_floor") if c in frame.columns]
  return {
      "plan": result["plan"],
      "truth": result["truth"],
      "fit": {"law": fit.law, "params": dict(fit.params),
              "ci95": {k: list(v) for k, v in boot.ci95.items()} if boot is not None else None,
              "bootstrap": boot.n if boot is not None else 0,
              "status": fit.status},
      "heldout": result["heldout"],
      "diagnostics": [str(d) for d in result["diagnostics"]],
      "identifiability": result.get("identifiability"),
      "runs": frame[columns].to_dict(orient="records"),
      "wall_s": result["timings"]["total"],
      "timings": result["timings"],
  }


def _ci95(result, name: str):
  boot = result.get("bootstrap")
  return None if boot is None else boot.ci95.get(name)


def _interval(result, name: str) -> str:
  ci = _ci95(result, name)
  return f"[{ci[0]:.4g}, {ci[1]:.4g}]" if ci else "n/a"


def _truth_section(result) -> list[str]:
  """E against the exact floor, and the fitted exponents against the predicted ones."""
  truth, fit = result["truth"], result["fit"]
  floor = truth.get("E")
  if floor is None:
    return []
  E = fit.params["E"]
  ci = _ci95(result, "E")
  lines = ["", "## The fit against the truth", "",
           f"The `{truth['corpus']}` language's loss floor is **{floor:.4f}** nats/token at this "
           f"context, computed exactly from its construction. The fitted "
           f"irreducible loss is **E = {E:.4f}** {_interval(result, 'E')}, "
           f"{100 * (E - floor) / floor:+.2f}% from the floor."]
  if E <= 1e-6 * floor:
    lines.append("The fit put E at 0: the runs do not determine the floor, and every number below "
                 "that depends on E is unreliable.")
  if ci:
    inside = ci[0] <= floor <= ci[1]
    width = f", which is {100 * (ci[1] - ci[0]) / E:.1f}% of E wide" if E > 0 else ""
    lines.append(f"The floor lies {'inside' if inside else 'OUTSIDE'} the 95% interval{width}.")
  best = float(result["frame"]["loss"].min())
  lines.append(f"The best run's loss is {best:.4f}, {best - floor:.4f} nats above the floor, so "
               f"E's error ({E - floor:+.4f}) is {100 * abs(E - floor) / max(best - floor, 1e-12):.0f}% "
               "of the smallest reducible loss measured.")
  if truth.get("alpha") is not None:
    a = truth["quanta_exponent"]
    lines += ["", "| exponent | fitted | 95% CI | quanta theory |", "|---|---|---|---|"]
    for name in ("alpha", "beta"):
      lines.append(f"| {name} | {fit.params[name]:.3f} | {_interval(result, name)} | {truth[name]:.3f} |")
    total = truth.get("with_embeddings")
    if total:
      for name in ("alpha", "beta"):
        ci = (total["ci95"] or {}).get(name)
        lines.append(f"| {name}, N counting embeddings | {total['params'][name]:.3f} | "
                     + (f"[{ci[0]:.4g}, {ci[1]:.4g}]" if ci else "n/a") + f" | {truth[name]:.3f} |")
    lines += ["",
              f"Theory (module docstring of `jaxscale.quanta`): with p_k ∝ k^-(1+a), a = {a:g}, a model "
              f"that knows the n most frequent quanta pays an excess ∝ n^-a. If memorising a quantum "
              f"cost a fixed number of parameters, n ∝ N and alpha = a = {truth['alpha']:.3f}; if a "
              f"quantum were learned after a fixed number of sightings, n ∝ D^(1/(1+a)) and beta = "
              f"a/(1+a) = {truth['beta']:.3f}. The fitted alpha lies "
              f"{_versus(result, 'alpha', truth, 'the capacity prediction')}; the fitted beta lies "
              f"{_versus(result, 'beta', truth, 'the data prediction')}. Why alpha differs: small transformers do not store quanta at a fixed cost "
              "per non-embedding parameter (the tiniest models hold much of what they know in their "
              f"embedding tables, which N leaves out: {_embedding_share(result['frame'])}; the rows "
              "'N counting embeddings' refit the same runs with every parameter counted"
              + (f", and alpha moves to {total['params']['alpha']:.3f}, "
                 + ("its 95% interval containing the capacity prediction" if total["ci95"] and
                    total["ci95"]["alpha"][0] <= truth["alpha"] <= total["ci95"]["alpha"][1]
                    else "still not the capacity prediction")
                 if total else "")
              + ")."
              + (" Beta's interval holds the data prediction: the data term behaves as if each "
                 "quantum were learned after a fixed number of sightings."
                 if _holds(result, "beta", truth["beta"]) else
                 " Why beta differs: larger models learn a quantum from fewer sightings than smaller "
                 "ones (so the data term steepens with N, which the additive law averages into one "
                 "beta).")
              + " The exponents are properties of these networks on this "
              "language, not of the language alone; E is a property of the language, and that is what "
              "the fit recovers."]
  return lines


def _holds(result, name: str, value: float) -> bool:
  ci = _ci95(result, name)
  return bool(ci) and ci[0] <= value <= ci[1]


def _versus(result, name: str, truth, label: str) -> str:
  """'below the data prediction, which its 95% interval holds' (or '..., outside its 95% interval')."""
  side = "below" if result["fit"].params[name] < truth[name] else "above"
  if not _ci95(result, name):
    return f"{side} {label}"
  inside = _holds(result, name, truth[name])
  return f"{side} {label}, " + ("which its 95% interval holds" if inside else "outside its 95% interval")


def _identifiability_section(result) -> list[str]:
  """What the runs' scatter allows the exponents' intervals to be (jaxscale.identifiability)."""
  from jaxscale import identifiability

  facts = result.get("identifiability")
  if not facts:
    return []
  bootstrap = {}
  for name in facts["names"]:
    ci = _ci95(result, name)
    if ci and all(map(math.isfinite, ci)):
      bootstrap[name] = ci[1] - ci[0]
  return ["", identifiability.describe(facts, bootstrap if len(bootstrap) == len(facts["names"]) else None)]


def _embedding_share(frame) -> str:
  """'the smallest model has 3.2x more embedding than non-embedding parameters, the largest 0.09x'."""
  if "N_total" not in frame.columns:
    return "embeddings are not recorded"
  sizes = frame.sort_values("N").drop_duplicates("N")
  ratio = (sizes["N_total"] - sizes["N"]) / sizes["N"]
  return (f"the smallest model has {ratio.iloc[0]:.2g}x as many embedding as non-embedding parameters, "
          f"the largest {ratio.iloc[-1]:.2g}x")


def _budget_name(heldout) -> str:
  """'C=1e+12' for an IsoFLOP group named by its budget, else 'GROUP, C = 1e+12'."""
  plain = f"C = {heldout['compute']:.3g}"
  return plain if heldout["group"].replace(" ", "") == plain.replace(" ", "") else f"{heldout['group']}, {plain}"


def _heldout_section(result) -> list[str]:
  heldout = result["heldout"]
  if not heldout:
    return []
  if heldout.get("skipped"):
    return ["", "## Held-out budget", "", f"Not checked: {heldout['skipped']}"]
  lines = ["", "## Held-out budget", "",
           f"Fitted without the largest budget ({_budget_name(heldout)}) and "
           f"asked to predict its {len(heldout['runs'])} runs:", "",
           "| N | D | loss | predicted | error | 95% prediction interval |", "|---|---|---|---|---|---|"]
  for row in heldout["runs"]:
    band = row.get("band95")
    lines.append(f"| {row['N']:.3g} | {row['D']:.3g} | {row['loss']:.4f} | {row['predicted']:.4f} | "
                 f"{100 * row['relative_error']:+.2f}% | "
                 + (f"[{band[0]:.4f}, {band[1]:.4f}] {'inside' if row['inside_band'] else 'OUTSIDE'}" if band else "n/a")
                 + " |")
  lines += ["", f"Largest error {100 * heldout['relative_error']:.2f}%"
            + ("" if heldout["inside_band"] is None else
               f"; {'every run lies' if heldout['inside_band'] else 'NOT every run lies'} inside its 95% "
               f"prediction interval. {heldout.get('band', '')}")
            + (f"; the held-out fit's bootstrap used {heldout['bootstrap']}." if heldout.get("bootstrap") else "")]
  return lines


APPROACH2_WIDE = 0.5  # an N_opt exponent interval wider than this (of a quantity in [0, 1]) is not quotable


def _approach2_lines(approach2, fit) -> list[str]:
  """Approach 2's exponents beside the fitted law's, each with its interval, and what to trust."""
  import numpy as np

  a, b = approach2.a, approach2.b
  ci = approach2.N_opt.exponent_ci95
  a3 = fit.params["beta"] / (fit.params["alpha"] + fit.params["beta"])
  a3_ci = None
  if fit.bootstrap is not None:
    samples = fit.bootstrap.natural()  # the converged replicates
    a3_R = np.asarray(samples["beta"]) / (np.asarray(samples["alpha"]) + np.asarray(samples["beta"]))
    a3_ci = np.percentile(a3_R[np.isfinite(a3_R)], [2.5, 97.5])
  lines = [f"N_opt ~ C^{a:.3f}" + (f" (95% CI [{ci[0]:.3f}, {ci[1]:.3f}])" if ci else "")
           + f", D_opt ~ C^{b:.3f}; the fitted law (Approach 3) gives N_opt ~ C^{a3:.3f}"
           + (f" (95% CI [{a3_ci[0]:.3f}, {a3_ci[1]:.3f}])." if a3_ci is not None else ".")]
  if ci and ci[1] - ci[0] > APPROACH2_WIDE:
    lines += ["", f"Approach 2's interval is {ci[1] - ci[0]:.2f} wide: {len(approach2.points)} budgets, one "
              "parabola each, do not determine its exponent. Do not quote it; the fitted law's, which uses "
              "every run, is the figure to use."]
  if approach2.skipped:
    lines += [""] + [f"- note: {message}" for message in approach2.skipped]
  return lines


def render_report(result: dict[str, Any]) -> str:
  """The study as Markdown: data, fit with CIs, the truth, held-out check, allocation, figures."""
  fit, runs = result["fit"], result["runs"]
  boot = result.get("bootstrap")
  floor = result["truth"].get("E")
  converged = "" if boot is None else f"{int(boot.converged.sum())} of {boot.n} bootstrap replicates converged"
  lines = [
      "# jaxscale scaling study",
      "",
      f"Plan `{result['plan']}` on the `{result['corpus']}` corpus: {len(runs)} micro-transformer runs, "
      f"N = {runs.N.min():.3g} to {runs.N.max():.3g} non-embedding parameters, "
      f"D = {runs.D.min():.3g} to {runs.D.max():.3g} tokens, C = {runs.C.min():.3g} to {runs.C.max():.3g} FLOPs "
      "(C counts the trainer's FLOPs per token, attention included, times D). "
      f"Sweep {result['timings']['sweep']:.0f} s, fit and bootstrap {result['timings']['fit']:.1f} s, "
      f"whole study {result['timings']['total']:.0f} s.",
      "",
      "## Fitted law",
      "",
      f"`{fit.law_object.formula}`, Huber (delta={fit.delta:g}) on log loss; {fit.status}.",
      "",
      f"| param | estimate | 95% CI ({converged or 'no bootstrap'}) |",
      "|---|---|---|",
  ]
  lines += [f"| {name} | {value:.4g} | {_interval(result, name)} |" for name, value in fit.params.items()]
  lines += _truth_section(result)
  lines += _identifiability_section(result)
  lines += _heldout_section(result)
  lines += ["", "## Compute-optimal allocation (extrapolated)", "",
            "| compute (FLOPs) | N* | D* | tokens/param | loss | N* 95% | D* 95% |", "|---|---|---|---|---|---|---|"]
  below = []
  for row in result["allocations"]:
    n_ci = row.get("N_ci95")
    d_ci = row.get("D_ci95")
    fmt = lambda ci: f"[{ci[0]:.3g}, {ci[1]:.3g}]" if ci and all(map(math.isfinite, ci)) else "n/a"  # noqa: E731
    flag = ""
    if floor is not None and row["loss"] < floor:
      flag = " (below the floor!)"
      below.append(row["compute"])
    lines.append(
        f"| {row['compute']:.3g} | {row['N']:.3g} | {row['D']:.3g} | {row['tokens_per_param']:.3g} | "
        f"{row['loss']:.4f}{flag} | {fmt(n_ci)} | {fmt(d_ci)} |"
    )
  if below:
    lines += ["", f"The law predicts losses below the exact floor ({floor:.4f}) at "
              + ", ".join(f"{c:.3g}" for c in below) + " FLOPs: no model can do that, so the fit "
              "underestimates E and these rows are not to be trusted."]
  approach2 = result["approach2"]
  lines += ["", "## IsoFLOP analysis (Approach 2)", ""]
  if isinstance(approach2, Exception):
    lines.append(f"Not possible on these runs: {approach2}")
  else:
    lines += _approach2_lines(approach2, fit)
  largest = result["frame"].sort_values("C").iloc[-1]
  lines += ["", "## In plain words", "",
            "(The allocation above and the sentences below count compute as Chinchilla's 6ND; the "
            f"runs' C also counts attention, so the largest run's C = {largest['C']:.3g} is "
            f"6ND = {6 * largest['N'] * largest['D']:.3g} here.)", "",
            result["summary_text"], "", "## Diagnostics", ""]
  lines += [f"- {finding}" for finding in result["diagnostics"]] or ["- none: the design identifies the law."]
  lines += result.get("loss_to_accuracy") or []
  lines += ["", "## Figures", ""]
  captions = {
      "loss_and_accuracy": "Loss and accuracy against compute (the held-out budget ringed).",
      "learning_curves": "Learning curves: loss above the exact floor against tokens seen.",
      "quanta": "Per-quantum accuracy against the smooth mean loss: emergence, honestly measured.",
  }
  for path in result["figures"]:
    if path.stem in captions:
      lines.append(captions[path.stem])
      lines.append("")
    lines.append(f"![{path.stem}]({path.name})")
    lines.append("")
  return "\n".join(lines) + "\n"


SIZE_EXPERIMENT_GOAL = 0.85  # held-out accuracy the largest model must pass


def size_experiment(out_dir: str | os.PathLike, *, progress: bool = True,
                    workers: int = 1) -> dict[str, Any]:
  """The seed experiment: three sizes, the same data, epochs and batch; only N changes.

  Trains the ``seed`` preset (0.1M, 0.8M and 3.1M parameters, four epochs of one
  262k-token set of a noiseless quanta language) and writes ``size_experiment.json`` and
  ``size_experiment.md``: held-out accuracy and loss per size, whether accuracy rises
  with size, and whether the largest passes :data:`SIZE_EXPERIMENT_GOAL`.
  """
  from jaxscale import sweep

  out = Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  began = time.perf_counter()
  plan = sweep.make_plan("seed")
  frame = sweep.run_sweep(plan, out, progress=progress, workers=workers).sort_values("N")
  accuracy = frame["accuracy"].to_list()
  result = {
      "plan": plan.name, "corpus": plan.runs[0].corpus,
      "runs": frame[["size", "N", "D", "steps", "batch_size", "loss", "accuracy",
                     "loss_floor", "wall_time_s"]].to_dict(orient="records"),
      "accuracy_rises_with_size": all(a < b for a, b in zip(accuracy, accuracy[1:])),
      "goal": SIZE_EXPERIMENT_GOAL,
      "largest_passes_goal": bool(accuracy[-1] > SIZE_EXPERIMENT_GOAL),
      "wall_s": time.perf_counter() - began,
  }
  atomic.write_json(out / "size_experiment.json", result)
  lines = ["# Size experiment", "",
           f"Three models on the same data (`{result['corpus']}`: {plan.runs[0].tokens:,} tokens, "
           "4 epochs of one 262k-token training set), the same batch and schedule; only the size "
           "changes.", "",
           "| size | N | held-out loss | floor | held-out accuracy |", "|---|---|---|---|---|"]
  for row in result["runs"]:
    lines.append(f"| {row['size']} | {row['N']:,} | {row['loss']:.4f} | {row['loss_floor']:.4f} | "
                 f"{row['accuracy']:.3f} |")
  lines += ["", f"Accuracy {'rises' if result['accuracy_rises_with_size'] else 'does NOT rise'} with "
            f"size; the largest model {'passes' if result['largest_passes_goal'] else 'does NOT pass'} "
            f"{SIZE_EXPERIMENT_GOAL:.0%}. Wall time {result['wall_s']:.0f} s."]
  (out / "size_experiment.md").write_text("\n".join(lines) + "\n")
  return result
