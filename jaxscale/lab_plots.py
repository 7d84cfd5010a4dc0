"""Figures of a lab study: loss and accuracy against compute, learning curves, quanta.

They read the sweep's own records (``runs.csv``, ``curves.csv``, ``quanta.csv``) and,
where the corpus has one, its exact loss floor, so each figure shows the truth beside
the measurements. Like :mod:`jaxscale.plots`, figures are built without ``pyplot``.

Example:
  >>> import pandas as pd
  >>> from jaxscale import lab_plots
  >>> figure = lab_plots.loss_and_accuracy(pd.read_csv("sweep/runs.csv"))  # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from jaxscale.plots import _figure, _log_colorbar

FLOOR_STYLE = dict(color="black", linestyle="--", linewidth=1)


def _floor(runs: pd.DataFrame) -> float | None:
  if "loss_floor" not in runs.columns:
    return None
  values = pd.to_numeric(runs["loss_floor"], errors="coerce").dropna()
  return float(values.iloc[0]) if len(values) else None


def _draw_floor(axes, runs: pd.DataFrame) -> None:
  """The exact floor as a dashed line with its legend entry, when the corpus has one."""
  floor = _floor(runs)
  if floor is not None:
    axes.axhline(floor, **FLOOR_STYLE, label=f"exact floor {floor:.4f}")


def loss_and_accuracy(runs: pd.DataFrame, *, heldout_group: str | None = None):
  """Two panels against compute C: held-out loss (with the exact floor) and accuracy.

  Points are coloured by N; the held-out budget's runs, if named, are ringed.
  """
  figure = _figure(10, 4.2)
  loss_axes, accuracy_axes = figure.subplots(1, 2)
  colors = np.log10(runs["N"].to_numpy(float))
  for axes, column, label in ((loss_axes, "loss", "held-out loss (nats/token)"),
                              (accuracy_axes, "accuracy", "held-out next-token accuracy")):
    axes.scatter(runs["C"], runs[column], c=colors, cmap="viridis", s=28, zorder=3)
    if heldout_group is not None and "group" in runs.columns:
      held = runs[runs["group"] == heldout_group]
      axes.scatter(held["C"], held[column], s=110, facecolors="none", edgecolors="#d62728",
                   linewidths=1.5, zorder=4, label=f"held-out budget ({heldout_group})")
    axes.set_xscale("log")
    axes.set_xlabel("compute C (FLOPs)")
    axes.set_ylabel(label)
    axes.grid(alpha=0.3, which="both")
  _draw_floor(loss_axes, runs)
  loss_axes.legend(fontsize=8)
  loss_axes.set_title("Loss falls towards the known floor")
  accuracy_axes.set_title("Accuracy rises with compute")
  _log_colorbar(figure, accuracy_axes, runs["N"].to_numpy(float), "N (parameters)")
  return figure


def learning_curves(runs: pd.DataFrame, curves: pd.DataFrame):
  """Excess loss above the floor against tokens seen, one line per run (log-log).

  Short runs show the slow start, long ones the power-law middle and, for models large
  enough to hold every quantum they have seen, the plateau at the floor.
  """
  floor = _floor(runs)
  figure = _figure(6.5, 4.5)
  axes = figure.subplots()
  values = runs.set_index("run_id")["N"]
  norm_low, norm_high = np.log10(values.min()), np.log10(values.max())
  import matplotlib

  colormap = matplotlib.colormaps["viridis"]
  for run_id, curve in curves.groupby("run_id"):
    if run_id not in values.index:
      continue
    shade = (np.log10(values[run_id]) - norm_low) / max(norm_high - norm_low, 1e-9)
    excess = curve["loss"] - (floor or 0.0)
    axes.plot(curve["tokens"], excess, color=colormap(shade), alpha=0.8, linewidth=1.2,
              marker=".", markersize=4)
  axes.set_xscale("log")
  axes.set_yscale("log")
  axes.set_xlabel("tokens seen")
  axes.set_ylabel("loss - exact floor (nats)" if floor is not None else "loss (nats)")
  axes.set_title("Learning curves: slow start, power law, plateau")
  axes.grid(alpha=0.3, which="both")
  _log_colorbar(figure, axes, values.to_numpy(float), "N (parameters)")
  return figure


def quanta_emergence(runs: pd.DataFrame, quanta: pd.DataFrame):
  """Per-quantum accuracy jumps against the smooth mean loss.

  Left: accuracy on each rank bucket's continuation bytes for every run, ordered by the
  run's loss; each bucket jumps from chance to the optimum when the models learn it.
  Right: the mean loss of the same runs, which falls smoothly.
  """
  order = runs.sort_values("loss", ascending=False)
  figure = _figure(10, 4.2)
  bucket_axes, loss_axes = figure.subplots(1, 2)
  import matplotlib

  colormap = matplotlib.colormaps["plasma"]
  buckets = sorted(set(zip(quanta["rank_lo"], quanta["rank_hi"])))
  x = np.arange(len(order))
  for i, (lo, hi) in enumerate(buckets):
    rows = quanta[(quanta["rank_lo"] == lo)].set_index("run_id")
    accuracy = [rows["accuracy"].get(run_id, np.nan) for run_id in order["run_id"]]
    label = f"ranks {lo}" if lo == hi else f"ranks {lo}-{hi}"
    bucket_axes.plot(x, accuracy, marker=".", color=colormap(i / max(len(buckets) - 1, 1)),
                     label=label, linewidth=1.2)
  if len(quanta):
    bucket_axes.axhline(float(quanta["optimal_accuracy"].iloc[0]), **FLOOR_STYLE,
                        label="optimum")
  bucket_axes.set_xlabel("runs, from highest to lowest loss")
  bucket_axes.set_ylabel("accuracy on the quantum's continuation")
  bucket_axes.set_title("Each quantum is learned abruptly")
  bucket_axes.legend(fontsize=7, ncol=2)
  loss_axes.plot(x, order["loss"], marker="o", color="#1f77b4")
  _draw_floor(loss_axes, runs)
  if _floor(runs) is not None:
    loss_axes.legend(fontsize=8)
  loss_axes.set_xlabel("runs, from highest to lowest loss")
  loss_axes.set_ylabel("mean held-out loss (nats/token)")
  loss_axes.set_title("... while the mean loss falls smoothly")
  for axes in (bucket_axes, loss_axes):
    axes.grid(alpha=0.3)
  return figure
