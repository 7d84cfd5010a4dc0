"""Model ladders: per-task loss and accuracy of a set of training runs, read from their logs.

A *ladder* is a handful of small training runs (sizes x token budgets) evaluated on
downstream tasks. Task scaling laws (:mod:`jaxscale.tasks`) read two things per task:

* per run, the task loss (bits per byte of the correct answer) and accuracy at the end of
  training, the mean of its last ``last`` evaluations (Bhagia et al. average the last 5);
* per evaluation, the same pair along the training curve (step 2 fits accuracy against
  task loss on these, skipping the first 10% and smoothing over 5 evaluations as the paper
  does).

Two sources are understood:

* a folder of evaluation logs like AI2's OLMo ladder (``manifest.csv`` with ``file``,
  ``size``, ``N`` and ``D_final`` or ``D_planned``; one CSV per run, one row per
  evaluation). Task columns are found by pattern (``eval/downstream_bpb/KEY_rc_5shot_bpb``
  and ``eval/downstream/KEY_rc_5shot_len_norm``, see :data:`OLMO_TASKS`);
* a jaxscale run set (a CSV such as a sweep's ``runs.csv``, or the sweep folder with its
  ``curves.csv``): ``loss`` and ``accuracy`` make the task ``next_token``; pairs of
  columns ``TASK_loss`` / ``TASK_accuracy`` (or ``loss/TASK`` / ``accuracy/TASK``) make
  task ``TASK``.

Example:
  >>> from jaxscale import ladder
  >>> data = ladder.read("../shared/data/olmo_ladder")  # doctest: +SKIP
  >>> data.tasks                                        # doctest: +SKIP
  ('mmlu', 'hellaswag', 'arc_challenge', 'arc_easy', 'piqa', 'csqa', 'socialiqa', 'openbookqa')
  >>> data.task_loss("hellaswag")[:2], data.accuracy("hellaswag")[:2]  # doctest: +SKIP

References:
  Bhagia et al. 2024, "Establishing Task Scaling Laws via Compute-Efficient Model
  Ladders" (arXiv 2412.04403); code: github.com/allenai/OLMo-ladder.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from jaxscale import runs as runs_lib

# OLMo-ladder task name -> ((subtask key, weight), ...). MMLU is the four *test* subject groups
# averaged with the OLMo-ladder's weights (their `WEIGHT_BY_KEY`, the groups' shares of questions).
OLMO_TASKS: dict[str, tuple[tuple[str, float], ...]] = {
    "mmlu": (
        ("mmlu_stem_test", 0.215), ("mmlu_humanities_test", 0.335),
        ("mmlu_social_sciences_test", 0.219), ("mmlu_other_test", 0.231),
    ),
    "hellaswag": (("hellaswag_val", 1.0),),
    "arc_challenge": (("arc_challenge_test", 1.0),),
    "arc_easy": (("arc_easy_test", 1.0),),
    "piqa": (("piqa_val", 1.0),),
    "csqa": (("csqa_val", 1.0),),
    "socialiqa": (("socialiqa_val", 1.0),),
    "openbookqa": (("openbookqa_test", 1.0),),
}
# Chance accuracy (the sigmoid's floor): 1 / number of answer choices; 4 unless listed.
CHANCE = {"piqa": 0.5, "socialiqa": 1.0 / 3.0, "csqa": 0.2, "boolq": 0.5, "winogrande": 0.5}
DEFAULT_CHANCE = 0.25
# Column patterns of an OLMo evaluation log, {key} is a subtask key such as "arc_easy_test".
LOSS_PATTERN = r"(^|/)downstream_bpb/{key}_rc_\d+shot_bpb$"
ACCURACY_PATTERNS = (r"(^|/)downstream/{key}_rc_\d+shot_len_norm$", r"(^|/)downstream/{key}_rc_\d+shot_acc$")
TOKENS_COLUMN = "throughput/total_tokens"
# Step 2 points: the paper skips the first 10% of each run's evaluations and smooths over 5.
SKIP_FRACTION = 0.1
SMOOTH = 5


class LadderError(runs_lib.RunSetError):
  """A ladder that cannot be used as given; the message names the file, column and fix."""


@dataclasses.dataclass(frozen=True, eq=False)
class Ladder:
  """Per-task loss and accuracy of a set of runs.

  Attributes:
    runs: one row per run: ``run``, ``size``, ``N``, ``D``, ``C`` and, per task,
      ``loss/TASK`` and ``accuracy/TASK`` (the mean of the last ``last`` evaluations).
    points: one row per (smoothed) evaluation for step 2: ``run`` (the row of
      :attr:`runs` it belongs to), ``D`` and the same task columns.
    chance: per task, the accuracy of guessing (the sigmoid's floor).
    source: where it came from, for messages.
  """

  runs: pd.DataFrame
  points: pd.DataFrame
  chance: dict[str, float]
  source: str = "<ladder>"

  @property
  def tasks(self) -> tuple[str, ...]:
    return tuple(self.chance)

  def __len__(self) -> int:
    return len(self.runs)

  def _check_task(self, task: str) -> None:
    if task not in self.chance:
      raise LadderError(f"{self.source}: no task {task!r}; tasks are {list(self.chance)}")

  @property
  def N(self) -> np.ndarray:
    return self.runs["N"].to_numpy(np.float64)

  @property
  def D(self) -> np.ndarray:
    return self.runs["D"].to_numpy(np.float64)

  @property
  def C(self) -> np.ndarray:
    return self.runs["C"].to_numpy(np.float64)

  def task_loss(self, task: str) -> np.ndarray:
    """Final task loss of every run, shape ``(R,)``."""
    self._check_task(task)
    return self.runs[f"loss/{task}"].to_numpy(np.float64)

  def accuracy(self, task: str) -> np.ndarray:
    """Final accuracy of every run, shape ``(R,)``."""
    self._check_task(task)
    return self.runs[f"accuracy/{task}"].to_numpy(np.float64)

  def point_loss(self, task: str) -> np.ndarray:
    self._check_task(task)
    return self.points[f"loss/{task}"].to_numpy(np.float64)

  def point_accuracy(self, task: str) -> np.ndarray:
    self._check_task(task)
    return self.points[f"accuracy/{task}"].to_numpy(np.float64)

  @property
  def point_run(self) -> np.ndarray:
    """Which run (row of :attr:`runs`) each step-2 point comes from, shape ``(P,)`` int."""
    return self.points["run"].to_numpy(np.int64)

  def subset(self, mask) -> Ladder:
    """The runs where ``mask`` holds (boolean ``(R,)`` or indices), with their points."""
    mask = np.asarray(mask)
    rows = np.flatnonzero(mask) if mask.dtype == bool else np.asarray(mask, np.int64)
    if len(rows) == 0:
      raise LadderError(f"{self.source}: the selection keeps no runs")
    renumber = np.full(len(self.runs), -1)
    renumber[rows] = np.arange(len(rows))
    points = self.points[np.isin(self.point_run, rows)].copy()
    points["run"] = renumber[points["run"].to_numpy()]
    return Ladder(self.runs.iloc[rows].reset_index(drop=True), points.reset_index(drop=True), dict(self.chance), self.source)

  def select_tasks(self, tasks: Sequence[str]) -> Ladder:
    for task in tasks:
      self._check_task(task)
    return Ladder(self.runs, self.points, {t: self.chance[t] for t in tasks}, self.source)

  def sizes(self, sizes: Sequence[str]) -> Ladder:
    """The runs of the named sizes (e.g. ``["190M", "370M", "760M"]``)."""
    known = list(dict.fromkeys(self.runs["size"].astype(str)))
    unknown = [s for s in sizes if s not in known]
    if unknown:
      raise LadderError(f"{self.source}: no runs of size {unknown}; sizes are {known}")
    return self.subset(self.runs["size"].astype(str).isin(list(sizes)).to_numpy())


# --- Reading ----------------------------------------------------------------------------------


def _find_column(columns: Sequence[str], patterns: Sequence[str], key: str) -> str | None:
  for pattern in patterns:
    regex = re.compile(pattern.format(key=re.escape(key)))
    matches = [c for c in columns if regex.search(c)]
    if matches:
      return matches[0]
  return None


def _smooth(values_P: np.ndarray, width: int) -> np.ndarray:
  """Trailing moving average (the first ``width - 1`` points average what they have)."""
  cumulative = np.cumsum(values_P, dtype=np.float64)
  out = cumulative.copy()
  out[width:] = cumulative[width:] - cumulative[:-width]
  counts = np.minimum(np.arange(1, len(values_P) + 1), width)
  return out / counts


def _task_columns(frame: pd.DataFrame, path: str, tasks: Mapping[str, Sequence[tuple[str, float]]]):
  """``{task: (loss columns, accuracy columns, weights)}`` found by pattern; a missing one is an error."""
  columns = [str(c) for c in frame.columns]
  found = {}
  for task, parts in tasks.items():
    loss_columns, accuracy_columns, weights = [], [], []
    for key, weight in parts:
      loss = _find_column(columns, (LOSS_PATTERN,), key)
      if loss is None:
        raise LadderError(
            f"{path}: task {task!r} needs a task-loss column like 'eval/downstream_bpb/{key}_rc_5shot_bpb', which is "
            f"missing; pass tasks= without {task!r} or add the column"
        )
      accuracy = _find_column(columns, ACCURACY_PATTERNS, key)
      if accuracy is None:
        raise LadderError(
            f"{path}: task {task!r} needs an accuracy column like 'eval/downstream/{key}_rc_5shot_len_norm', which is "
            f"missing; pass tasks= without {task!r} or add the column"
        )
      loss_columns.append(loss)
      accuracy_columns.append(accuracy)
      weights.append(weight)
    found[task] = (loss_columns, accuracy_columns, np.asarray(weights) / np.sum(weights))
  return found


def _numeric_column(frame: pd.DataFrame, column: str, path: str) -> np.ndarray:
  values = pd.to_numeric(frame[column], errors="coerce").to_numpy(np.float64)
  bad = ~np.isfinite(values)
  if bad.any():
    row = int(np.flatnonzero(bad)[0])
    raise LadderError(f"{path}: column {column!r} row {row} is {frame[column].iloc[row]!r}, not a number; fix or drop that row")
  return values


def read_olmo(
    directory: str | os.PathLike,
    *,
    tasks: Sequence[str] | Mapping[str, Sequence[tuple[str, float]]] | None = None,
    last: int = 1,
    skip_fraction: float = SKIP_FRACTION,
    smooth: int = SMOOTH,
) -> Ladder:
  """Reads an OLMo-style ladder folder (``manifest.csv`` plus one evaluation log per run).

  Args:
    directory: the folder.
    tasks: task names from :data:`OLMO_TASKS` (default: all 8), or your own
      ``{task: ((subtask key, weight), ...)}``; columns are found by
      :data:`LOSS_PATTERN` and :data:`ACCURACY_PATTERNS`.
    last: per run, average the last ``last`` evaluations (1: the final one).
    skip_fraction, smooth: how step-2 points are drawn from each training curve.

  Returns:
    A :class:`Ladder`.
  """
  directory = os.fspath(directory)
  if last < 1:
    raise LadderError(f"last must be >= 1 evaluations, got {last}")
  if smooth < 1 or not 0.0 <= skip_fraction < 1.0:
    raise LadderError(f"smooth must be >= 1 and skip_fraction in [0, 1), got {smooth} and {skip_fraction}")
  specs = _task_specs(tasks)
  manifest_path = os.path.join(directory, "manifest.csv")
  if not os.path.exists(manifest_path):
    raise LadderError(f"{directory}: no manifest.csv; a ladder folder lists its runs there (file, size, N, D_final)")
  manifest = pd.read_csv(manifest_path)
  for column in ("file", "N"):
    if column not in manifest.columns:
      raise LadderError(f"{manifest_path}: missing column {column!r}; columns are {list(manifest.columns)}")
  token_column = next((c for c in ("D_final", "D", "D_planned") if c in manifest.columns), None)
  if token_column is None:
    raise LadderError(f"{manifest_path}: missing column 'D_final' (tokens per run); columns are {list(manifest.columns)}")
  run_rows, point_frames = [], []
  for index, entry in manifest.iterrows():
    path = os.path.join(directory, str(entry["file"]))
    if not os.path.exists(path):
      raise LadderError(f"{manifest_path}: row {index} names {entry['file']!r}, which is not in {directory}")
    frame = pd.read_csv(path)
    if TOKENS_COLUMN in frame.columns:  # a resumed run logs some evaluations twice
      frame = frame.drop_duplicates(subset=TOKENS_COLUMN, keep="last").reset_index(drop=True)
    if len(frame) == 0:
      raise LadderError(f"{path}: no evaluations")
    columns = _task_columns(frame, path, specs)
    name = os.path.splitext(str(entry["file"]))[0]
    row = {"run": name, "size": str(entry.get("size", name.split("-")[0])), "N": float(entry["N"]),
           "D": float(entry[token_column])}
    points = {}
    count = len(frame)
    start = min(int(np.ceil(skip_fraction * count)), count - 1)
    for task, (loss_columns, accuracy_columns, weights) in columns.items():
      loss_E = sum(w * _numeric_column(frame, c, path) for c, w in zip(loss_columns, weights))
      accuracy_E = sum(w * _numeric_column(frame, c, path) for c, w in zip(accuracy_columns, weights))
      row[f"loss/{task}"] = float(np.mean(loss_E[-last:]))
      row[f"accuracy/{task}"] = float(np.mean(accuracy_E[-last:]))
      points[f"loss/{task}"] = _smooth(loss_E[start:], smooth)
      points[f"accuracy/{task}"] = _smooth(accuracy_E[start:], smooth)
    tokens = _numeric_column(frame, TOKENS_COLUMN, path)[start:] if TOKENS_COLUMN in frame.columns else np.full(count - start, row["D"])
    point_frames.append(pd.DataFrame({"run": index, "D": tokens, **points}))
    run_rows.append(row)
  runs = pd.DataFrame(run_rows)
  runs["C"] = runs_lib.FLOPS_PER_PARAM_TOKEN * runs["N"] * runs["D"]
  chance = {task: CHANCE.get(task, DEFAULT_CHANCE) for task in specs}
  ladder = Ladder(runs, pd.concat(point_frames, ignore_index=True), chance, directory)
  _check_values(ladder)
  return ladder


def _task_specs(tasks):
  if tasks is None:
    return dict(OLMO_TASKS)
  if isinstance(tasks, Mapping):
    return {name: tuple(parts) for name, parts in tasks.items()}
  unknown = [t for t in tasks if t not in OLMO_TASKS]
  if unknown:
    raise LadderError(f"unknown ladder task(s) {unknown}; known: {list(OLMO_TASKS)} (or pass {{task: ((key, weight),)}})")
  return {t: OLMO_TASKS[t] for t in tasks}


RUN_SET_TASK_PATTERNS = (
    (re.compile(r"^(?P<task>.+)_loss$"), re.compile(r"^(?P<task>.+)_acc(uracy)?$")),
    (re.compile(r"^loss/(?P<task>.+)$"), re.compile(r"^acc(uracy)?/(?P<task>.+)$")),
)


def _run_set_tasks(columns: Sequence[str]) -> dict[str, tuple[str, str]]:
  """``{task: (loss column, accuracy column)}`` found by pattern in a run set's columns."""
  found = {}
  if "loss" in columns and "accuracy" in columns:
    found["next_token"] = ("loss", "accuracy")
  for loss_pattern, accuracy_pattern in RUN_SET_TASK_PATTERNS:
    losses = {m["task"]: c for c in columns if (m := loss_pattern.match(c))}
    accuracies = {m["task"]: c for c in columns if (m := accuracy_pattern.match(c))}
    for task in losses:
      if task in accuracies and task not in found:
        found[task] = (losses[task], accuracies[task])
  return found


def read_run_set(
    source, *, chance: Mapping[str, float] | None = None, curves: str | os.PathLike | pd.DataFrame | None = None,
    skip_fraction: float = SKIP_FRACTION, smooth: int = 1,
) -> Ladder:
  """A jaxscale run set with task columns as a :class:`Ladder`.

  ``loss`` + ``accuracy`` (a sweep's runs.csv: next-token loss in nats and top-1
  accuracy) make the task ``next_token``; ``TASK_loss`` + ``TASK_accuracy`` (or
  ``loss/TASK`` + ``accuracy/TASK``) make task ``TASK``. With ``curves`` (a sweep's
  ``curves.csv``: ``run_id``, ``tokens``, ``loss``, ``accuracy``), step 2 fits the
  training curves; otherwise the final points.

  Args:
    source: a path, DataFrame or :class:`~jaxscale.runs.RunSet`.
    chance: per task, the accuracy of guessing (default 0; e.g. 1/vocab for next-token).
    curves: optional evaluation curves keyed by ``run_id``.
  """
  runs = runs_lib.load(source)
  columns = [str(c) for c in runs.frame.columns]
  found = _run_set_tasks(columns)
  if not found:
    raise LadderError(
        f"{runs.source}: no task columns; a task needs a loss and an accuracy column ('loss' and 'accuracy', or "
        f"'TASK_loss' and 'TASK_accuracy'); columns are {columns}"
    )
  chance = dict(chance or {})
  unknown = [t for t in chance if t not in found]
  if unknown:
    raise LadderError(f"{runs.source}: chance given for {unknown}, which are not tasks here; tasks are {list(found)}")
  frame = pd.DataFrame({
      "run": runs.frame["run_id"].astype(str) if "run_id" in columns else [f"run{i}" for i in range(len(runs))],
      "size": runs.frame["size"].astype(str) if "size" in columns else [f"{n:.3g}" for n in runs.N],
      "N": runs.N, "D": runs.D, "C": runs.C,
  })
  for task, (loss, accuracy) in found.items():
    frame[f"loss/{task}"] = runs.column(loss)
    frame[f"accuracy/{task}"] = runs.column(accuracy)
  if curves is None:
    points = frame[[c for c in frame.columns if "/" in c]].copy()
    points.insert(0, "D", frame["D"].to_numpy())
    points.insert(0, "run", np.arange(len(frame)))
  else:
    points = _curve_points(curves, frame, found, skip_fraction, smooth, runs.source)
  ladder = Ladder(frame, points, {task: float(chance.get(task, 0.0)) for task in found}, runs.source)
  _check_values(ladder)
  return ladder


def _curve_points(curves, frame, found, skip_fraction, smooth, source):
  table = curves if isinstance(curves, pd.DataFrame) else pd.read_csv(curves)
  label = "curves" if isinstance(curves, pd.DataFrame) else os.fspath(curves)
  for column in ("run_id", "tokens"):
    if column not in table.columns:
      raise LadderError(f"{label}: missing column {column!r}; columns are {list(table.columns)}")
  index = {run: i for i, run in enumerate(frame["run"])}
  parts = []
  for run, group in table.groupby(table["run_id"].astype(str), sort=False):
    if run not in index:
      continue
    group = group.sort_values("tokens")
    start = min(int(np.ceil(skip_fraction * len(group))), len(group) - 1)
    part = {"run": index[run], "D": group["tokens"].to_numpy(np.float64)[start:]}
    for task, (loss, accuracy) in found.items():
      for kind, column in (("loss", loss), ("accuracy", accuracy)):
        if column not in group.columns:
          raise LadderError(f"{label}: missing column {column!r} for task {task!r}; columns are {list(table.columns)}")
        part[f"{kind}/{task}"] = _smooth(group[column].to_numpy(np.float64)[start:], smooth)
    parts.append(pd.DataFrame(part))
  if not parts:
    raise LadderError(f"{label}: no curve matches a run_id of {source}")
  return pd.concat(parts, ignore_index=True)


def _check_values(ladder: Ladder) -> None:
  for task in ladder.tasks:
    for name, values in (("loss", ladder.task_loss(task)), ("loss", ladder.point_loss(task))):
      if not (np.all(np.isfinite(values)) and np.all(values > 0)):
        row = int(np.flatnonzero(~(np.isfinite(values) & (values > 0)))[0])
        raise LadderError(f"{ladder.source}: task {task!r} has a task loss of {values[row]} (row {row}); losses must be > 0")
    for values in (ladder.accuracy(task), ladder.point_accuracy(task)):
      bad = ~(np.isfinite(values) & (values >= 0) & (values <= 1))
      if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise LadderError(f"{ladder.source}: task {task!r} has an accuracy of {values[row]} (row {row}); accuracies lie in [0, 1]")


def read(source, **kwargs) -> Ladder:
  """A ladder folder (``manifest.csv``), a sweep folder (``runs.csv``, ``curves.csv``) or a run set.

  Keyword arguments go to :func:`read_olmo` or :func:`read_run_set`.
  """
  if isinstance(source, Ladder):
    return source
  if isinstance(source, (str, os.PathLike)):
    path = os.fspath(source)
    if os.path.isdir(path):
      if os.path.exists(os.path.join(path, "manifest.csv")):
        return read_olmo(path, **kwargs)
      runs_path = os.path.join(path, "runs.csv")
      if os.path.exists(runs_path):
        curves = os.path.join(path, "curves.csv")
        kwargs.setdefault("curves", curves if os.path.exists(curves) else None)
        return read_run_set(runs_path, **kwargs)
      raise LadderError(f"{path}: a folder without manifest.csv (a ladder) or runs.csv (a sweep); pass one of those")
    if not os.path.exists(path):
      raise LadderError(f"{path}: no such file or folder; check the path")
  return read_run_set(source, **kwargs)
