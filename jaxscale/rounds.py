"""Rounds of a scaling study: train, fit, design the next batch, train it, and say what each bought.

Round 0 trains a sweep plan. Every later round fits the Chinchilla law to all the runs so far,
takes the interval of the target (``N*``, ``D*`` or the optimal loss at ``C_target``) from the
fixed-design bootstrap (:mod:`jaxscale.fixed_bootstrap`), uses that bootstrap's replicates as the
prior of :func:`jaxscale.design.design` for the next ``R`` runs (given the runs already trained),
snaps them to the sweep's size ladder and trains them with :func:`jaxscale.sweep.run_sweep`.
The report gives the target's interval after every round and how much each round narrowed it
(the previous width over the new one), beside the design's forecast for the batch.

Each round trains in its own sweep folder (``OUT/round-0``, ``OUT/round-1``, ...), so an
interrupted study resumes where it stopped: recorded rounds are read back, and a round's design
is the same for the same runs and seed.

Compute: the design works in the law's ``C = 6 N D`` (``--target-compute``, ``--round-compute``);
the sweep records ``C`` with the attention term as well (:func:`jaxscale.model.flops_per_token`),
which the report shows as the FLOPs trained.

Example:
  >>> from jaxscale import rounds
  >>> study = rounds.run_rounds("quick", "/tmp/rounds", rounds=2, round_runs=4, target_compute=1e15)  # doctest: +SKIP
  >>> [r["narrowing"] for r in study["rounds"]]  # doctest: +SKIP
  [None, 1.8, 1.3]
"""

from __future__ import annotations

import importlib
import json
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxscale import sweep

DEFAULT_ROUND_RUNS = 4
# The designed runs' tokens per parameter may reach this factor beyond the span trained so far.
RATIO_MARGIN = 2.0


def _ladder_sizes(plan: sweep.Plan, sizes: Sequence[str] | None, context: int, vocab: int) -> dict[str, Any]:
  """``{name: ModelConfig}`` the rounds may train: ``sizes``, or the ladder within the plan's span."""
  from jaxscale import model as model_lib

  ladder = {name: sweep.size_config(name, vocab_size=vocab, context=context) for name in sweep.SIZE_LADDER}
  if sizes:
    unknown = [s for s in sizes if s not in ladder]
    if unknown:
      raise ValueError(f"unknown round sizes {unknown}; pick from the ladder {list(ladder)}")
    return {name: ladder[name] for name in sizes}
  counts = [model_lib.count_params(s.model)["non_embedding"] for s in plan.runs]
  low, high = min(counts), max(counts)
  chosen = {name: config for name, config in ladder.items() if low <= model_lib.count_params(config)["non_embedding"] <= high}
  if len(chosen) < 2:
    raise ValueError(f"the plan spans fewer than 2 ladder sizes ({list(chosen)}); name the sizes the rounds may train (round_sizes)")
  return chosen


def _batch_plan(plan: sweep.Plan, proposal, configs: dict[str, Any], index: int, seed: int) -> sweep.Plan:
  """The proposed runs as a sweep plan, trained like the plan's runs (corpus, batch, evaluations)."""
  from jaxscale import model as model_lib

  train_lib = importlib.import_module("jaxscale.train")  # the module, not jaxscale.train()
  template = plan.runs[0]
  batches = {s.batch_size for s in plan.runs}
  rates = {s.model.d_model: s.learning_rate for s in plan.runs}
  by_N = {model_lib.count_params(c)["non_embedding"]: (name, c) for name, c in configs.items()}
  runs = []
  for k, (n, d) in enumerate(zip(proposal.N, proposal.D)):
    _, config = by_N[int(round(n))]
    batch = template.batch_size if len(batches) == 1 else train_lib.default_batch_size(config)
    tokens = max(int(round(d)), batch * config.context)  # at least one step
    runs.append(sweep.RunSpec(
        model=config, tokens=tokens, seed=seed + 1000 * index + k,
        learning_rate=rates.get(config.d_model, train_lib.default_learning_rate(config)), batch_size=batch,
        corpus=template.corpus, group=f"round {index}", eval_tokens=template.eval_tokens, num_evals=template.num_evals,
        final_eval_tokens=template.final_eval_tokens))
  return sweep.Plan(name=f"{plan.name}-round-{index}", runs=tuple(runs))


def _assess(frame, *, target_compute: float, target: str, replicates: int, method: str, seed: int):
  """The fit of every run so far and the target's fixed-design bootstrap interval."""
  from jaxscale import fitting, fixed_bootstrap
  from jaxscale import runs as runs_lib

  runset = runs_lib.load(frame[["N", "D", "loss"]].reset_index(drop=True))
  fit = fitting.fit("chinchilla", runset)
  interval = fixed_bootstrap.interval(runset, target_compute=target_compute, target=target, fit=fit,
                                      replicates=replicates, method=method, seed=seed)
  return runset, fit, interval


def _narrowing(previous: float | None, width: float) -> float | None:
  """The previous width over this one; None for round 0 or when either is not finite (an unidentified law)."""
  if previous is None or not (math.isfinite(previous) and math.isfinite(width) and width > 0):
    return None
  return previous / width


def run_rounds(
    plan: sweep.Plan | str,
    out_dir: str | os.PathLike,
    *,
    rounds: int,
    target_compute: float,
    round_runs: int = DEFAULT_ROUND_RUNS,
    round_compute: float | None = None,
    target: str = "N_opt",
    sizes: Sequence[str] | None = None,
    tokens_per_param: tuple[float, float] | None = None,
    min_tokens: float | None = None,
    corpus: str | None = None,
    replicates: int = 200,
    method: str = "t-scaled",
    seed: int = 0,
    initial_dir: str | os.PathLike | None = None,
    workers: int = 1,
    progress: bool = True,
    design_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
  """Trains ``plan``, then ``rounds`` designed batches of ``round_runs`` runs each.

  Args:
    plan: round 0: a :class:`jaxscale.sweep.Plan`, a preset name or a JSON config path.
    out_dir: the study's folder: ``round-K`` sweep folders, ``runs.csv`` (every run, with its
      round), ``rounds.json`` and ``rounds.md``.
    rounds: designed rounds after round 0 (>= 1).
    target_compute: ``C_target`` (``6 N D`` FLOPs) the study decides about.
    round_runs: runs per designed round.
    round_compute: ``6 N D`` FLOPs per designed round (default: round 0's).
    target: ``"N_opt"`` (default), ``"D_opt"`` or ``"loss"``.
    sizes: ladder names the rounds may train (default: the ladder within the plan's sizes).
    tokens_per_param: the designed runs' ``D / N`` range (default: the span trained so far,
      widened by :data:`RATIO_MARGIN` each way).
    min_tokens: the fewest tokens a designed run may train (default: the shortest run so far).
    corpus: overrides the plan's corpus (as in ``run_sweep``).
    replicates, method: the fixed-design bootstrap of every round's interval.
    seed: seeds the bootstrap, the design's starts and the new runs.
    initial_dir: round 0's sweep folder if not ``out_dir/round-0`` (e.g. a demo's folder).
    workers, progress: as in :func:`jaxscale.sweep.run_sweep`.
    design_options: extra keywords of :func:`jaxscale.design.design` (``starts``, ``steps``).

  Returns:
    ``{"rounds": [per-round dicts], "runs": DataFrame of every run, "text": the report}``.
  """
  from jaxscale import atomic, design, fixed_bootstrap

  if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
    raise ValueError(f"rounds must be a positive integer, got {rounds!r}")
  if isinstance(round_runs, bool) or not isinstance(round_runs, int) or round_runs < 1:
    raise ValueError(f"round_runs must be a positive integer, got {round_runs!r}")
  if not (isinstance(target_compute, (int, float)) and math.isfinite(target_compute) and target_compute > 0):
    raise ValueError(f"target compute must be a positive finite number of FLOPs, got {target_compute!r}")
  if round_compute is not None and not (math.isfinite(round_compute) and round_compute > 0):
    raise ValueError(f"round compute must be a positive finite number of FLOPs, got {round_compute!r}")
  if target not in design.TARGETS:
    raise ValueError(f"unknown target {target!r}; use one of {', '.join(design.TARGETS)}")
  if method not in fixed_bootstrap.METHODS:
    raise ValueError(f"unknown interval method {method!r}; use one of {', '.join(fixed_bootstrap.METHODS)}")
  plan = sweep.resolve_plan(plan, corpus)
  context, vocab = plan.runs[0].model.context, plan.runs[0].model.vocab_size
  configs = _ladder_sizes(plan, sizes, context, vocab)
  out_dir = os.fspath(out_dir)
  os.makedirs(out_dir, exist_ok=True)

  import pandas as pd

  frames = []
  folder = os.fspath(initial_dir) if initial_dir is not None else os.path.join(out_dir, "round-0")
  frame = sweep.run_sweep(plan, folder, workers=workers, progress=progress)
  frames.append(frame.assign(round=0))
  if round_compute is None:
    round_compute = float(6.0 * np.sum(frame["N"] * frame["D"]))
  records, previous, expected = [], None, None
  for index in range(rounds + 1):
    everything = pd.concat(frames, ignore_index=True)
    runset, fit, interval = _assess(everything, target_compute=target_compute, target=target, replicates=replicates,
                                    method=method, seed=seed + index)
    new = frames[-1]
    records.append({
        "round": index, "folder": folder, "new_runs": int(len(new)), "total_runs": int(len(everything)),
        "new_compute_6ND": float(6.0 * np.sum(new["N"] * new["D"])), "new_flops_trained": float(np.sum(new["C"])),
        "sizes": sorted(set(new["size"])), "interval": interval.to_dict(),
        "width": interval.width, "narrowing": _narrowing(previous, interval.width),
        "expected_width": expected,
    })
    previous = interval.width
    if index == rounds:
      break
    prior = fixed_bootstrap.prior(interval, fit)
    ratios = np.asarray(runset.D) / np.asarray(runset.N)
    span = tokens_per_param or (float(ratios.min()) / RATIO_MARGIN, float(ratios.max()) * RATIO_MARGIN)
    from jaxscale import model as model_lib

    counts = sorted(float(model_lib.count_params(c)["non_embedding"]) for c in configs.values())
    # No designed run shorter than the shortest trained so far: the law describes trained runs, not a few steps.
    shortest = float(np.min(runset.D)) if min_tokens is None else float(min_tokens)
    constraints = design.Constraints(n_range=(counts[0], counts[-1]), tokens_per_param=span, sizes=tuple(counts),
                                     min_tokens=shortest)
    proposal = design.design(prior, study_compute=round_compute, target_compute=target_compute, runs=round_runs,
                             target=target, constraints=constraints, existing=runset, noise=interval.sigma,
                             seed=seed + index, **(design_options or {}))
    expected = proposal.expected_ci95_width
    batch = _batch_plan(plan, proposal, configs, index + 1, seed)
    folder = os.path.join(out_dir, f"round-{index + 1}")
    frames.append(sweep.run_sweep(batch, folder, workers=workers, progress=progress).assign(round=index + 1))
  everything = pd.concat(frames, ignore_index=True)
  text = render(records, target=target, target_compute=target_compute)
  atomic.write_json(os.path.join(out_dir, "rounds.json"), {"target": target, "target_compute": target_compute, "rounds": records})
  atomic.write_text(os.path.join(out_dir, "rounds.md"), text + "\n")
  atomic.write_text(os.path.join(out_dir, "runs.csv"), everything.to_csv(index=False))
  return {"rounds": records, "runs": everything, "text": text}


def render(records: list[dict], *, target: str, target_compute: float) -> str:
  """The rounds as a Markdown table: the target's interval after each round and the narrowing."""
  lines = [
      f"# Rounds: {target} at {target_compute:.3g} FLOPs (6ND)",
      "",
      records[-1]["interval"]["meaning"] + ".",
      "",
      "| round | new runs | runs | 6ND FLOPs of the new runs | sizes | estimate | 95% interval | width (ln) | narrowing | design's forecast |",
      "|---|---|---|---|---|---|---|---|---|---|",
  ]
  for r in records:
    iv = r["interval"]
    narrowing = "-" if r["narrowing"] is None else f"{r['narrowing']:.2f}x"
    forecast = "-" if r["expected_width"] is None else f"{r['expected_width']:.3f}"
    lines.append(
        f"| {r['round']} | {r['new_runs']} | {r['total_runs']} | {r['new_compute_6ND']:.3g} | {', '.join(r['sizes'])} | "
        f"{iv['estimate']:.4g} | {iv['low']:.4g} to {iv['high']:.4g} | {r['width']:.3f} | {narrowing} | {forecast} |")
  lines += ["", "Narrowing: the previous round's width over this round's. The design's forecast is the width the "
            "batch was expected to leave (Fisher information, averaged over the previous round's bootstrap)."]
  return "\n".join(lines)


def summary_json(result: dict[str, Any]) -> str:
  """The rounds (without the runs table) as JSON text."""
  from jaxscale import atomic

  return json.dumps(atomic.json_safe({"rounds": result["rounds"]}), indent=2)
