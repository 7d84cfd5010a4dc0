"""Run sets: the table of training runs a scaling law is fitted to.

Canonical columns: ``N`` (parameters), ``D`` (tokens), ``C`` (training FLOPs),
``loss``; optional ``U`` (unique tokens, for the data-constrained law),
``group``, ``run_id`` and ``weight``. ``C = 6 N D`` when absent and
``D = C / (6 N)`` when ``D`` is absent. Any other column is kept as is.

Everything is validated here, at the boundary, so the fitting code can assume
clean, positive, finite numbers. Errors are :class:`RunSetError` (a
``ValueError``) naming the column, the row and the fix.

Example:
  >>> from jaxscale.runs import RunSet
  >>> runs = RunSet.from_arrays(N=[1e8, 1e9, 1e10], D=[2e9, 2e10, 2e11], loss=[3.1, 2.6, 2.2])
  >>> runs.C[0]
  1.2e+18
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

NUMERIC_COLUMNS = ("N", "D", "C", "U", "loss", "weight")
# Column names seen in the wild, mapped to ours (case-insensitive, applied when unambiguous).
KNOWN_ALIASES = {
    "model size": "N",
    "params": "N",
    "parameters": "N",
    "n_params": "N",
    "tokens": "D",
    "training tokens": "D",
    "training flop": "C",
    "training flops": "C",
    "flops": "C",
    "compute": "C",
    "unique tokens": "U",
    "final loss": "loss",
}
# Flops per parameter per token of a forward + backward pass (Kaplan et al. 2020).
FLOPS_PER_PARAM_TOKEN = 6.0


class RunSetError(ValueError):
  """A run set that cannot be used as given; the message says how to fix it."""


@dataclasses.dataclass(frozen=True, eq=False)
class RunSet:
  """A validated table of runs. Numeric columns are float64 arrays of shape ``(R,)``.

  Attributes:
    frame: the full table with canonical column names (extra columns kept).
    source: where the runs came from (a path or ``"<arrays>"``), for messages.
  """

  frame: pd.DataFrame
  source: str = "<arrays>"

  def __len__(self) -> int:
    return len(self.frame)

  def column(self, name: str) -> np.ndarray:
    if name not in self.frame.columns:
      raise RunSetError(f"{self.source}: no column {name!r}; columns are {list(self.frame.columns)}")
    return self.frame[name].to_numpy(dtype=np.float64)

  @property
  def N(self) -> np.ndarray:
    return self.column("N")

  @property
  def D(self) -> np.ndarray:
    return self.column("D")

  @property
  def C(self) -> np.ndarray:
    return self.column("C")

  @property
  def loss(self) -> np.ndarray:
    return self.column("loss")

  @property
  def weight(self) -> np.ndarray:
    if "weight" in self.frame.columns:
      return self.column("weight")
    return np.ones(len(self), dtype=np.float64)

  def log_inputs(self, variables: Sequence[str]) -> dict[str, np.ndarray]:
    """``{variable: log(column)}`` for the law's variables, shape ``(R,)`` each."""
    return {v: np.log(self.column(v)) for v in variables}

  def subset(self, mask) -> RunSet:
    """The runs where ``mask`` is true (a boolean array or an index array)."""
    mask = np.asarray(mask)
    rows = np.flatnonzero(mask) if mask.dtype == bool else mask
    return RunSet(self.frame.iloc[rows].reset_index(drop=True), self.source)

  def drop_highest_loss(self, count: int) -> RunSet:
    """Drops the ``count`` runs with the highest loss (Besiroglu et al.'s protocol drops 5)."""
    if count <= 0:
      return self
    keep = np.argsort(self.loss, kind="stable")[: max(len(self) - count, 0)]
    return self.subset(np.sort(keep))

  @classmethod
  def from_arrays(cls, *, loss, N=None, D=None, C=None, U=None, weight=None, group=None, run_id=None) -> RunSet:
    """Builds a run set from arrays (any two of N, D, C plus loss)."""
    columns = {"N": N, "D": D, "C": C, "U": U, "loss": loss, "weight": weight, "group": group, "run_id": run_id}
    frame = pd.DataFrame({k: np.asarray(v) for k, v in columns.items() if v is not None})
    return from_frame(frame, source="<arrays>")


def _canonical_names(frame: pd.DataFrame, columns: Mapping[str, str] | None, source: str) -> pd.DataFrame:
  _check_distinct(list(frame.columns), source)
  rename = {}
  if columns:
    for theirs, ours in columns.items():
      if theirs not in frame.columns:
        raise RunSetError(f"{source}: column mapping names {theirs!r}, which is not in the file; columns are {list(frame.columns)}")
      if ours in frame.columns and ours != theirs and ours not in columns:
        raise RunSetError(
            f"{source}: column mapping {theirs!r} -> {ours!r} collides with the column {ours!r} already in the file; "
            f"map that one elsewhere too (e.g. {ours}={ours}_old) or drop the mapping")
      rename[theirs] = ours
    targets = list(rename.values())
    doubled = sorted({t for t in targets if targets.count(t) > 1})
    if doubled:
      raise RunSetError(f"{source}: the column mapping sends several columns onto {doubled}; map exactly one onto each")
  present = set(frame.columns) | set(rename.values())
  for name in frame.columns:
    alias = KNOWN_ALIASES.get(str(name).strip().lower())
    if name not in rename and alias and alias not in present:
      rename[name] = alias
      present.add(alias)
  frame = frame.rename(columns=rename)
  _check_distinct(list(frame.columns), source)
  return frame


def _check_distinct(names: list, source: str) -> None:
  doubled = sorted({str(n) for n in names if names.count(n) > 1})
  if doubled:
    raise RunSetError(f"{source}: column(s) {doubled} appear more than once in the header; rename or remove the copies")


def _blank(values: pd.Series) -> np.ndarray:
  """True where a cell is missing: NaN, None, or text of only spaces."""
  return (values.isna() | values.map(lambda v: isinstance(v, str) and not v.strip())).to_numpy(dtype=bool)


def _group_column(frame: pd.DataFrame, source: str) -> pd.DataFrame:
  """Blank groups mean "no group": an all-blank column is dropped (runs group by compute, as
  without it); a partly blank one is an error. Groups of mixed types become text."""
  blank = _blank(frame["group"])
  if blank.all():
    return frame.drop(columns="group")
  if blank.any():
    rows = np.flatnonzero(blank)
    shown = ", ".join(str(r) for r in rows[:5]) + (" ..." if len(rows) > 5 else "")
    raise RunSetError(
        f"{source}: column 'group' is blank in {len(rows)} of {len(frame)} rows (rows {shown}); give every run a "
        "group, or leave the whole column blank (or remove it) to group runs by compute")
  kinds = {type(v) for v in frame["group"]}
  if len(kinds) > 1:
    frame["group"] = frame["group"].map(str)
  return frame


def _numeric(frame: pd.DataFrame, name: str, source: str) -> np.ndarray:
  column = frame[name]
  if (pd.api.types.is_datetime64_any_dtype(column) or pd.api.types.is_timedelta64_dtype(column)
      or pd.api.types.is_bool_dtype(column)):
    raise RunSetError(f"{source}: column {name!r} holds {column.dtype} values, not numbers; give {name} as numbers")
  odd = np.zeros(len(column), bool)
  if column.dtype == object:
    odd = column.map(lambda v: isinstance(v, (bool, np.bool_))
                     or not (v is None or isinstance(v, (int, float, str, np.integer, np.floating)))).to_numpy(dtype=bool)
  if odd.any():
    row = int(np.flatnonzero(odd)[0])
    raise RunSetError(
        f"{source}: column {name!r} row {row} holds {column.iloc[row]!r} ({type(column.iloc[row]).__name__}), "
        "which is not a number; fix or remove that row")
  values = pd.to_numeric(column, errors="coerce")
  bad = values.isna() & frame[name].notna()
  if bad.any():
    row = int(np.flatnonzero(bad.to_numpy())[0])
    raise RunSetError(
        f"{source}: column {name!r} row {row} holds {frame[name].iloc[row]!r}, which is not a number; fix or remove that row"
    )
  array = values.to_numpy(dtype=np.float64)
  finite = np.isfinite(array)
  if not finite.all():
    row = int(np.flatnonzero(~finite)[0])
    raise RunSetError(f"{source}: column {name!r} row {row} is {array[row]} (missing, NaN or inf); fill it in or remove that row")
  return array


def from_frame(frame: pd.DataFrame, *, columns: Mapping[str, str] | None = None, source: str = "<DataFrame>") -> RunSet:
  """Validates a DataFrame of runs and returns a :class:`RunSet`.

  Args:
    frame: one row per run.
    columns: optional ``{their_name: canonical_name}`` mapping, e.g.
      ``{"Model Size": "N", "Training FLOP": "C"}``. Common spellings are
      recognised without it.
    source: where the table came from, used in error messages.
  """
  if len(frame) == 0:
    raise RunSetError(f"{source}: the run set is empty; it needs one row per training run")
  frame = _canonical_names(frame.copy(), columns, source)
  if "loss" not in frame.columns:
    raise RunSetError(f"{source}: missing column 'loss'; columns are {list(frame.columns)} (map yours with --column NAME=loss)")
  present = [c for c in ("N", "D", "C") if c in frame.columns]
  if not present:
    raise RunSetError(
        f"{source}: no column for N, D or C; columns are {list(frame.columns)} "
        "(map yours, e.g. --column 'Model Size=N' --column 'Training FLOP=C')"
    )
  if "group" in frame.columns:
    frame = _group_column(frame, source)
  for name in NUMERIC_COLUMNS:
    if name in frame.columns:
      frame[name] = _numeric(frame, name, source)
      if name == "weight":
        if (frame[name] < 0).any():
          row = int(np.flatnonzero(frame[name].to_numpy() < 0)[0])
          raise RunSetError(f"{source}: column 'weight' row {row} is negative; weights must be >= 0")
      else:
        values = frame[name].to_numpy()
        if (values <= 0).any():
          row = int(np.flatnonzero(values <= 0)[0])
          raise RunSetError(f"{source}: column {name!r} row {row} is {values[row]}; {name} must be > 0 (scaling laws live on log axes)")
        tiny = values < np.finfo(np.float64).tiny
        if tiny.any():
          row = int(np.flatnonzero(tiny)[0])
          raise RunSetError(
              f"{source}: column {name!r} row {row} is {values[row]:g}, below the smallest normal float64; "
              f"that is no {name} a run can have (check the units)")
  if "N" in frame.columns and "D" in frame.columns and "C" not in frame.columns:
    frame["C"] = FLOPS_PER_PARAM_TOKEN * frame["N"] * frame["D"]
  elif "N" in frame.columns and "C" in frame.columns and "D" not in frame.columns:
    frame["D"] = frame["C"] / (FLOPS_PER_PARAM_TOKEN * frame["N"])
  elif "D" in frame.columns and "C" in frame.columns and "N" not in frame.columns:
    frame["N"] = frame["C"] / (FLOPS_PER_PARAM_TOKEN * frame["D"])
  return RunSet(frame.reset_index(drop=True), source)


def read(path: str | os.PathLike, *, columns: Mapping[str, str] | None = None) -> RunSet:
  """Reads runs from CSV, JSON lines (``.jsonl``/``.ndjson``/``.json``) or Parquet.

  Example:
    >>> runs = read("../shared/data/chinchilla_svg_extracted.csv")  # doctest: +SKIP
  """
  path = os.fspath(path)
  if not os.path.exists(path):
    raise RunSetError(f"{path}: no such file; check the path")
  if os.path.isdir(path):
    raise RunSetError(f"{path}: is a folder; pass the runs file inside it (e.g. {os.path.join(path, 'runs.csv')})")
  if os.path.getsize(path) == 0:
    raise RunSetError(f"{path}: the file is empty; it needs a header and one row per training run")
  suffix = os.path.splitext(path)[1].lower()
  try:
    if suffix in (".jsonl", ".ndjson"):
      frame = pd.read_json(path, lines=True)
    elif suffix == ".json":
      with open(path) as f:
        text = f.read().strip()
      frame = pd.read_json(path, lines=not text.startswith("["))
    elif suffix == ".parquet":
      try:
        import pyarrow  # noqa: F401
      except ImportError as e:
        raise RunSetError(f"{path}: reading Parquet needs pyarrow; `pip install pyarrow` or convert to CSV") from e
      frame = pd.read_parquet(path)
    else:
      frame = pd.read_csv(path)
      _check_distinct(_csv_header(path), path)
  except RunSetError:
    raise
  except pd.errors.EmptyDataError as e:
    raise RunSetError(f"{path}: has no header row (the file is blank); it needs a header and one row per training run") from e
  except (ValueError, pd.errors.ParserError, UnicodeDecodeError, json.JSONDecodeError) as e:
    raise RunSetError(f"{path}: cannot be read as a {suffix.lstrip('.') or 'CSV'} table ({str(e).splitlines()[0]})") from e
  return from_frame(frame, columns=columns, source=path)


def _csv_header(path: str) -> list[str]:
  import csv

  with open(path, newline="", errors="replace") as f:
    return next(csv.reader(f), [])


def load(source: Any, *, columns: Mapping[str, str] | None = None) -> RunSet:
  """Anything runs can come from: a path, a DataFrame, a dict of arrays, or a RunSet."""
  if isinstance(source, RunSet):
    return source
  if isinstance(source, pd.DataFrame):
    return from_frame(source, columns=columns)
  if isinstance(source, Mapping):
    return from_frame(pd.DataFrame({k: np.asarray(v) for k, v in source.items()}), columns=columns, source="<dict>")
  if isinstance(source, (str, os.PathLike)):
    return read(source, columns=columns)
  raise RunSetError(f"cannot make a run set from {type(source).__name__}; pass a path, a DataFrame or a dict of arrays")


def check_for_law(runs: RunSet, law) -> None:
  """Checks that ``runs`` can identify ``law``: its columns exist, vary, and outnumber its parameters."""
  for variable in law.variables:
    if variable not in runs.frame.columns:
      hint = " (unique tokens, for repeated data)" if variable == "U" else ""
      raise RunSetError(
          f"{runs.source}: law {law.name!r} needs column {variable!r}{hint}, which is missing; "
          f"columns are {list(runs.frame.columns)}"
      )
    values = runs.column(variable)
    if np.ptp(np.log(values)) == 0 and variable != "U":
      raise RunSetError(
          f"{runs.source}: column {variable!r} never varies (all {values[0]:g}), so law {law.name!r} cannot "
          f"fit how loss depends on it; add runs at other {variable} or use a law without {variable}"
      )
  used = int(np.count_nonzero(runs.weight > 0))
  if used <= law.num_params:
    raise RunSetError(
        f"{runs.source}: {used} runs with weight > 0 cannot fit law {law.name!r}, which has {law.num_params} "
        f"parameters; add runs (at least {law.num_params + 1}) or choose a smaller law"
    )
