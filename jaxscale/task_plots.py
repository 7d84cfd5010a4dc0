"""The two-step figure of a task scaling law: task loss against compute, accuracy against task loss.

Left panel: the ladder's final task losses against training compute ``C = 6ND``, the fitted
step-1 law along each ladder size and along the target's size with its 95% bootstrap band,
and the target's predicted task loss with its interval. Right panel: accuracy against task
loss (the smoothed training-curve points step 2 was fitted to, and each run's final
evaluation), the fitted sigmoid with its band, chance, and the target's chained prediction
with its intervals on both axes. Held-out runs, when given, are drawn as crosses.

Example:
  >>> from jaxscale import ladder, tasks, task_plots
  >>> fitted = tasks.fit(ladder.read("../shared/data/olmo_ladder"), n=200)        # doctest: +SKIP
  >>> task_plots.plot_tasks(fitted, "figures/", target=(1.32e10, 5e12))           # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

DPI = 110


def _figure(width: float, height: float, columns: int):
  # Figure without pyplot, as jaxscale.plots: no global state, no backend switch (a notebook's
  # inline backend keeps working); savefig uses the Agg canvas.
  from matplotlib.figure import Figure

  figure = Figure(figsize=(width, height), layout="constrained")
  return figure, figure.subplots(1, columns, squeeze=False)[0]


def _colours(count: int):
  import matplotlib

  return matplotlib.colormaps["viridis"](np.linspace(0.0, 0.85, count))


def two_step_figure(fitted, task: str, *, target: tuple[float, float] | None = None, held_out=None):
  """The two-panel figure of one task (a matplotlib ``Figure``).

  Args:
    fitted: a :class:`~jaxscale.tasks.TaskLaws`.
    task: one of ``fitted.tasks``.
    target: ``(N, D)`` of the model to predict, drawn with its intervals.
    held_out: a :class:`~jaxscale.ladder.Ladder` of runs not fitted, drawn as crosses.
  """
  if task not in fitted.fits:
    raise ValueError(f"no task {task!r}; tasks are {list(fitted.tasks)}")
  fit, data = fitted.fits[task], fitted.ladder
  figure, (left, right) = _figure(11, 4.2, 2)
  sizes = sorted(set(data.N))
  colours = _colours(len(sizes) + 1)
  top_C = data.C.max() * 3
  prediction = fitted.predict(*target)[task] if target is not None else None
  if target is not None:
    top_C = max(top_C, 6.0 * target[0] * target[1] * 2)
  for size, colour in zip(sizes, colours):
    mask = data.N == size
    left.scatter(data.C[mask], data.task_loss(task)[mask], color=colour, s=28, zorder=3, label=f"N={size:.3g}")
    C_grid = np.geomspace(data.C[mask].min() / 1.5, data.C[mask].max() * 1.5, 60)
    curve = fit.chain(np.full_like(C_grid, size), C_grid / (6.0 * size), replicates=False)["task_loss"][0]
    left.plot(C_grid, curve, color=colour, lw=1)
  if held_out is not None:
    left.scatter(held_out.C, held_out.task_loss(task), marker="x", color="crimson", s=36, zorder=4, label="held out")
  if target is not None:
    N_target, D_target = target
    C_target = 6.0 * N_target * D_target
    # From the ladder's fewest tokens per parameter at the target's size: below it the law is not asked anything.
    C_grid = np.geomspace(min(6.0 * N_target * N_target * np.min(data.D / data.N), C_target), C_target * 1.5, 80)
    values = fit.chain(np.full_like(C_grid, N_target), C_grid / (6.0 * N_target))["task_loss"]
    left.plot(C_grid, values[0], color=colours[-1], lw=1.5, label=f"law at target N={N_target:.3g}")
    if len(values) > 1:
      low, high = np.nanpercentile(values[1:], [2.5, 97.5], axis=0)
      left.fill_between(C_grid, low, high, color=colours[-1], alpha=0.2, label="95% band")
    lo, hi = prediction["task_loss_ci95"]
    left.errorbar([C_target], [prediction["task_loss"]], yerr=[[prediction["task_loss"] - lo], [hi - prediction["task_loss"]]],
                  fmt="*", ms=12, color="black", capsize=4, zorder=5, label="target (95% CI)")
  left.set_xscale("log")
  left.set_xlabel("training compute C = 6ND (FLOPs)")
  left.set_ylabel("task loss (bits per byte)")
  left.set_title(f"{task}: step 1, task loss = E + A/N^a + B/D^b")
  left.legend(fontsize=7)

  right.scatter(data.point_loss(task), data.point_accuracy(task), s=4, color="grey", alpha=0.35, label="training curves (fitted)")
  right.scatter(data.task_loss(task), data.accuracy(task), s=24, color=colours[0], zorder=3, label="final evaluations")
  if held_out is not None:
    right.scatter(held_out.task_loss(task), held_out.accuracy(task), marker="x", color="crimson", s=36, zorder=4, label="held out")
  losses = np.concatenate([data.point_loss(task), data.task_loss(task)])
  low_L, high_L = losses.min(), losses.max()
  if prediction is not None:
    low_L = min(low_L, prediction["task_loss_ci95"][0])
  L_grid = np.linspace(low_L - 0.1 * (high_L - low_L), high_L + 0.05 * (high_L - low_L), 120)
  mapped = fit.mapping(L_grid)
  right.plot(L_grid, mapped[0], color="tab:blue", lw=1.5, label=f"step 2 ({fit.metric})")
  if len(mapped) > 1:
    low, high = np.nanpercentile(mapped[1:], [2.5, 97.5], axis=0)
    right.fill_between(L_grid, low, high, color="tab:blue", alpha=0.2, label="95% band")
  right.axhline(fit.chance, color="grey", ls="--", lw=0.8, label=f"chance {fit.chance:.3g}")
  if prediction is not None:
    x, y = prediction["task_loss"], prediction["accuracy"]
    (xlo, xhi), (ylo, yhi) = prediction["task_loss_ci95"], prediction["accuracy_ci95"]
    right.errorbar([x], [y], xerr=[[x - xlo], [xhi - x]], yerr=[[y - ylo], [yhi - y]], fmt="*", ms=12, color="black",
                   capsize=4, zorder=5, label=f"target: {y:.3f} [{ylo:.3f}, {yhi:.3f}]")
  right.invert_xaxis()
  right.set_xlabel("task loss (bits per byte), falling to the right")
  right.set_ylabel("accuracy")
  right.set_title(f"{task}: step 2, accuracy from task loss")
  right.legend(fontsize=7)
  return figure


def plot_tasks(fitted, out_dir: str | os.PathLike, *, target=None, held_out=None, dpi: int = DPI) -> list[Path]:
  """Writes ``tasks_TASK.png`` (:func:`two_step_figure`) for every task; returns the paths."""
  out = Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  paths = []
  for task in fitted.tasks:
    figure = two_step_figure(fitted, task, target=target, held_out=held_out)
    path = out / f"tasks_{task}.png"
    figure.savefig(path, dpi=dpi)
    paths.append(path)
  return paths


def loss_to_accuracy_figure(runs, chain, *, quanta=None):
  """Step 2 in the lab: accuracy against loss with the fitted sigmoid, and the sub-sources' jumps.

  Args:
    runs: the sweep's runs (``loss``, ``accuracy``; ``loss_floor`` is drawn when present).
    chain: :func:`jaxscale.tasks.lab_chain`'s result on the same runs.
    quanta: optional per-run, per-sub-source accuracies (the lab's ``quanta.csv``: ``run_id``,
      ``rank_lo``, ``rank_hi``, ``accuracy``); drawn against the same loss axis on a second panel.

  Returns:
    A matplotlib ``Figure``.
  """
  from jaxscale import tasks as tasks_lib

  panels = 2 if quanta is not None and len(quanta) else 1
  figure, axes = _figure(5.5 * panels, 4.2, panels)
  left = axes[0]
  loss, accuracy = runs["loss"].to_numpy(float), runs["accuracy"].to_numpy(float)
  floor = float(runs["loss_floor"].dropna().iloc[0]) if "loss_floor" in runs.columns and runs["loss_floor"].notna().any() else None
  low = min(loss.min(), floor if floor is not None else loss.min())
  span = loss.max() - low
  grid = np.linspace(low - 0.05 * span, loss.max() + 0.1 * span, 200)
  params = {"k": chain["k"], "L0": chain["L0"]}
  curve = tasks_lib.sigmoid_accuracy(grid, floor=chain["chance"], ceiling=chain["ceiling"], **params)
  left.scatter(loss, accuracy, s=26, color="tab:blue", zorder=3, label="runs (measured loss)")
  if chain.get("chained_accuracy") is not None:
    left.scatter(chain["law_loss"], chain["chained_accuracy"], s=30, facecolors="none", edgecolors="tab:orange", zorder=4,
                 label=f"chained: sigmoid(fitted law's loss), |err| {100 * chain['chained_mean_abs_rel_error']:.2f}%")
  left.plot(grid, curve, color="black", lw=1.2,
            label=f"sigmoid: k={chain['k']:.3g}, L0={chain['L0']:.3g} (|err| {100 * chain['mean_abs_rel_error']:.2f}%)")
  if floor is not None:
    left.axvline(floor, color="grey", ls="--", lw=0.8, label=f"exact loss floor {floor:.4f}")
  left.invert_xaxis()
  left.set_xlabel("held-out loss (nats/token), falling to the right")
  left.set_ylabel("next-token accuracy")
  left.set_title("Accuracy as a function of loss (step 2)")
  left.legend(fontsize=7)
  left.grid(alpha=0.3)
  if panels == 2:
    import matplotlib

    right = axes[1]
    loss_of_run = dict(zip(runs["run_id"], runs["loss"])) if "run_id" in runs.columns else {}
    buckets = sorted(set(zip(quanta["rank_lo"], quanta["rank_hi"])))
    colormap = matplotlib.colormaps["plasma"]
    for i, (lo, hi) in enumerate(buckets):
      rows = quanta[quanta["rank_lo"] == lo]
      x = rows["run_id"].map(loss_of_run).to_numpy(float)
      order = np.argsort(x)
      label = f"ranks {lo}" if lo == hi else f"ranks {lo}-{hi}"
      right.plot(x[order], rows["accuracy"].to_numpy(float)[order], marker=".", lw=1,
                 color=colormap(i / max(len(buckets) - 1, 1)), label=label)
    right.plot(grid, curve, color="black", lw=1.5, label="mean accuracy (sigmoid)")
    right.invert_xaxis()
    right.set_xlabel("the run's held-out loss (nats/token)")
    right.set_ylabel("accuracy on the sub-source")
    right.set_title("Sub-sources jump while the mean moves smoothly")
    right.legend(fontsize=6, ncol=2)
    right.grid(alpha=0.3)
  return figure
