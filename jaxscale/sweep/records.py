"""A sweep's records on disk: ``plan.json``, ``runs.csv``, ``curves.csv``, ``quanta.csv``.

* ``plan.json`` -- the plan; a different plan in the same folder is refused.
* ``runs.csv`` -- one row per finished run (N, N_total, D, C, loss, accuracy, ...).
* ``curves.csv`` -- the intermediate held-out evaluations of every run, for
  Chinchilla's Approach 1.
* ``quanta.csv`` -- on a quanta corpus, each run's accuracy and loss per band of quanta.

The CSVs are rewritten whole to a temporary file and moved into place with
``os.replace``, so a crash never leaves half a row. On a restart every row of
``runs.csv`` is checked against the plan (:func:`check_records`): a torn, foreign or
duplicated row is dropped, said so, and its run trains again.

Example:
  >>> from jaxscale.sweep import records
  >>> records.read_csv("sweep/runs.csv", records.RUNS_COLUMNS)  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import json
import math
import os
from typing import TYPE_CHECKING, Sequence

from jaxscale.sweep.plan import Plan, RunSpec, size_name

if TYPE_CHECKING:
  import pandas as pd

RUNS_COLUMNS = (
    "run_id", "group", "size", "N", "N_total", "D", "C", "loss", "accuracy", "seed",
    "d_model", "n_layers", "n_heads", "d_ff", "context", "vocab", "lr", "batch_size",
    "steps", "tokens_budget", "corpus", "entropy_rate", "loss_floor", "wall_time_s",
    "resumed_from_step")
CURVES_COLUMNS = ("run_id", "group", "step", "tokens", "N", "C_so_far", "loss",
                  "accuracy")
QUANTA_COLUMNS = ("run_id", "N", "D", "rank_lo", "rank_hi", "mass", "accuracy", "loss",
                  "optimal_loss", "optimal_accuracy")


def _atomic_write_text(path: str, text: str) -> None:
  from jaxscale import atomic

  atomic.write_text(path, text)


def read_csv(path: str, columns: Sequence[str]) -> "pd.DataFrame":
  import pandas as pd

  if os.path.exists(path) and os.path.getsize(path) > 0:
    try:
      return pd.read_csv(path, dtype={"run_id": str, "group": object})
    except pd.errors.EmptyDataError:  # only blank lines
      pass
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
      raise ValueError(f"{path} cannot be read as CSV ({str(e).splitlines()[0]}); move it"
                       " away and run the sweep again to retrain its runs.") from None
  return pd.DataFrame(columns=list(columns))


def _read_raw_rows(path: str) -> tuple[list[str] | None, list[list[str]]]:
  """The header and rows of a CSV as text, exactly as written (None, [] if absent)."""
  import csv

  if not os.path.exists(path):
    return None, []
  with open(path, newline="", errors="replace") as f:
    rows = [row for row in csv.reader(f)]
  rows = [row for row in rows if row]  # blank lines
  if not rows:
    return None, []
  return rows[0], rows[1:]


def _write_raw_rows(path: str, header: Sequence[str], rows: list[list[str]]) -> None:
  import csv
  import io

  text = io.StringIO()
  writer = csv.writer(text, lineterminator="\n")
  writer.writerow(header)
  writer.writerows(rows)
  _atomic_write_text(path, text.getvalue())


def _expected_row(spec: RunSpec) -> dict:
  """The fields of a finished run's row that follow from its spec alone."""
  from jaxscale import model as model_lib
  from jaxscale.train import num_steps

  counts = model_lib.count_params(spec.model)
  steps = num_steps(spec.tokens, spec.batch_size, spec.model.context)
  tokens = steps * spec.batch_size * spec.model.context
  config = spec.model
  return dict(N=counts["non_embedding"], N_total=counts["total"], D=tokens,
              C=model_lib.flops_per_token(config) * tokens, seed=spec.seed,
              d_model=config.d_model, n_layers=config.n_layers, n_heads=config.n_heads,
              d_ff=config.d_ff, context=config.context, vocab=config.vocab_size,
              lr=spec.learning_rate, batch_size=spec.batch_size, steps=steps,
              tokens_budget=spec.tokens)


def _row_problem(fields: dict, spec: RunSpec | None) -> str | None:
  """Why a recorded row cannot stand for a finished run of the plan, or None if it can."""
  if spec is None:
    return "its run_id is not in the plan"
  missing = [c for c in RUNS_COLUMNS if c not in fields]
  if missing:
    return f"it lacks {missing}"
  for name in ("loss", "accuracy", "wall_time_s", "resumed_from_step"):
    try:
      value = float(fields[name])
    except ValueError:
      return f"its {name} {fields[name]!r} is not a number"
    if not math.isfinite(value) or value < 0:
      return f"its {name} is {fields[name]!r}"
  if float(fields["loss"]) <= 0:
    return "its loss is not positive"
  for name, want in _expected_row(spec).items():
    text = fields[name]
    try:
      got = float(text)
    except ValueError:
      return f"its {name} {text!r} is not a number"
    if not math.isclose(got, float(want), rel_tol=1e-9, abs_tol=0.0):
      return f"its {name} is {text}, the plan says {want}"
  for name, want in (("corpus", spec.corpus), ("size", size_name(spec.model)),
                     ("group", spec.group or "")):
    if fields[name] != want:
      return f"its {name} is {fields[name]!r}, the plan says {want!r}"
  return None


def check_records(out_dir: str, plan: Plan, say) -> set[str]:
  """Checks every row of ``runs.csv`` against the plan; rewrites it without the rows that
  are torn, unparseable, duplicated or foreign (saying so, so they retrain); returns the
  run_ids of the rows kept. Curve rows of runs not kept are dropped too."""
  runs_path = os.path.join(out_dir, "runs.csv")
  header, rows = _read_raw_rows(runs_path)
  if header is None:
    if os.path.exists(runs_path):
      say(f"{runs_path} is empty; every run of the plan will train.")
      os.remove(runs_path)
    return set()
  specs = {s.run_id: s for s in plan.runs}
  kept, dropped, done = [], [], set()
  bad_header = list(header) != list(RUNS_COLUMNS)
  for number, row in enumerate(rows, start=2):
    fields = dict(zip(header, row)) if len(row) == len(header) else None
    run_id = (fields or {}).get("run_id", row[0] if row else "")
    if bad_header:
      problem = f"the header is not {','.join(RUNS_COLUMNS)}"
    elif fields is None:
      problem = f"it has {len(row)} fields, the header {len(header)}"
    elif run_id in done:
      problem = "it repeats an earlier row of the same run"
    else:
      problem = _row_problem(fields, specs.get(run_id))
    if problem is None:
      kept.append(row)
      done.add(run_id)
    else:
      dropped.append((number, run_id, problem))
  if dropped:
    for number, run_id, problem in dropped[:5]:
      say(f"{runs_path} line {number} (run {run_id or '?'}) is not a complete run of this"
          f" plan ({problem}); dropping it, and the run trains again.")
    if len(dropped) > 5:
      say(f"... and {len(dropped) - 5} more such rows.")
    _write_raw_rows(runs_path, RUNS_COLUMNS, kept)
  curves_path = os.path.join(out_dir, "curves.csv")
  curve_header, curve_rows = _read_raw_rows(curves_path)
  if curve_header is not None:
    good = [r for r in curve_rows if len(r) == len(curve_header) and r[0] in done]
    if list(curve_header) != list(CURVES_COLUMNS) or len(good) != len(curve_rows):
      _write_raw_rows(curves_path, CURVES_COLUMNS,
                      good if list(curve_header) == list(CURVES_COLUMNS) else [])
  return done


def replace_rows(path: str, columns: Sequence[str], run_id: str,
                 rows: list[dict]) -> int:
  """Rewrite ``path`` with ``rows`` standing in for any earlier rows of ``run_id``;
  returns the rows it holds now."""
  import pandas as pd

  table = read_csv(path, columns)
  table = table[table["run_id"] != run_id]
  new = pd.DataFrame(rows, columns=list(columns))
  table = new if table.empty else pd.concat([table, new], ignore_index=True)
  _atomic_write_text(path, table.to_csv(index=False))
  return len(table)


def _started(out_dir: str) -> bool:
  """Whether any run of the folder's sweep was recorded or checkpointed."""
  _, rows = _read_raw_rows(os.path.join(out_dir, "runs.csv"))
  checkpoints = os.path.join(out_dir, "checkpoints")
  return bool(rows) or (os.path.isdir(checkpoints) and bool(os.listdir(checkpoints)))


def check_plan(out_dir: str, plan: Plan, say=None) -> None:
  """Writes ``plan.json``, or checks that it holds this plan. A different plan whose sweep
  never recorded or checkpointed a run (say its config failed) is replaced."""
  path = os.path.join(out_dir, "plan.json")
  wanted = plan.to_dict()
  if os.path.exists(path):
    try:
      with open(path) as f:
        existing = json.load(f)
    except (OSError, ValueError):
      existing = None
    if existing == json.loads(json.dumps(wanted)):
      return
    if _started(out_dir):
      raise ValueError(f"out_dir {out_dir!r} already holds a different plan; use a new"
                       " --out or delete it.")
    if say is not None:
      say(f"{path}: replacing a different plan, none of whose runs had started.")
  _atomic_write_text(path, json.dumps(wanted, indent=1))


def quanta_rows(spec: RunSpec, result, data) -> list[dict]:
  """Per-quantum scores of a run on a quanta corpus, by rank bucket
  (:func:`jaxscale.quanta.rank_table`), read from its final evaluation: the same
  windows and the same pass as its recorded loss."""
  from jaxscale import model as model_lib
  from jaxscale import quanta
  train_lib = importlib.import_module("jaxscale.train")  # the module, not jaxscale.train()

  if not isinstance(data.source, quanta.QuantaSource):
    return []
  context = spec.model.context
  tokens = spec.final_eval_tokens or spec.eval_tokens
  scores = result.final_scores
  if scores is None:  # resumed after its last step: evaluate the restored parameters
    if result.params is None:
      return []
    scores = train_lib.evaluate_final(spec.model, spec.train_config(), data, result.params)
  n = model_lib.count_params(spec.model)["non_embedding"]
  table = quanta.rank_table(data.source, *scores, train_lib.eval_ranks(data, context, tokens),
                            context=context)
  return [dict(run_id=spec.run_id, N=n, D=result.tokens, **row) for row in table]


def curve_rows(spec: RunSpec, result) -> list[dict]:
  from jaxscale import model as model_lib

  n = model_lib.count_params(spec.model)["non_embedding"]
  flops_per_token = model_lib.flops_per_token(spec.model)
  return [dict(run_id=spec.run_id, group=spec.group, step=point["step"],
               tokens=point["tokens"], N=n, C_so_far=flops_per_token * point["tokens"],
               loss=point["loss"], accuracy=point["accuracy"]) for point in result.curve]


def run_row(spec: RunSpec, result, data) -> dict:
  from jaxscale import model as model_lib

  counts = model_lib.count_params(spec.model)
  config = spec.model
  return dict(
      run_id=spec.run_id, group=spec.group, size=size_name(config),
      N=counts["non_embedding"], N_total=counts["total"], D=result.tokens,
      C=model_lib.flops_per_token(config) * result.tokens, loss=result.loss,
      accuracy=result.accuracy, seed=spec.seed, d_model=config.d_model,
      n_layers=config.n_layers, n_heads=config.n_heads, d_ff=config.d_ff,
      context=config.context, vocab=config.vocab_size, lr=spec.learning_rate,
      batch_size=spec.batch_size, steps=result.steps, tokens_budget=spec.tokens,
      corpus=spec.corpus, entropy_rate=data.entropy_rate,
      loss_floor=data.loss_floor(config.context),
      wall_time_s=result.wall_time_s, resumed_from_step=result.resumed_from_step)

