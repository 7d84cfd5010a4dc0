"""Several processes (hosts) sharing one batch of fits, and one sweep, with JAX's distributed runtime.

Each process fits its share of the batch on its own local devices (see
:mod:`jaxscale.batch`), and the shares are gathered with
``jax.experimental.multihost_utils.process_allgather`` so every process, and
process 0 in particular, ends with the whole answer, the same as one process
would give. On CPU the gather runs over JAX's default Gloo collectives (JAX
0.10); on GPU and TPU over the accelerator's.

Start every process with :func:`initialize` first. On TPU pods and SLURM GPU
clusters JAX finds its peers itself; elsewhere pass the coordinator, or set
``JAXSCALE_COORDINATOR=host:port``, ``JAXSCALE_NUM_PROCESSES`` and
``JAXSCALE_PROCESS_ID``.

Example (two processes, each started with its own id):
  >>> from jaxscale import distributed
  >>> distributed.initialize("127.0.0.1:1234", num_processes=2, process_id=0)  # doctest: +SKIP
  >>> fits = distributed.fit_by("chinchilla", "runs.csv", "dataset")  # doctest: +SKIP
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Hashable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
  import pandas as pd

COORDINATOR_ENV = "JAXSCALE_COORDINATOR"
NUM_PROCESSES_ENV = "JAXSCALE_NUM_PROCESSES"
PROCESS_ID_ENV = "JAXSCALE_PROCESS_ID"
# Columns of a sweep's runs.csv that differ between two trainings of the same run.
TIMING_COLUMNS = ("wall_time_s", "resumed_from_step")


def _int_env(name: str) -> int | None:
  text = os.environ.get(name)
  if text in (None, ""):
    return None
  try:
    return int(text)
  except ValueError:
    raise ValueError(f"{name}={text!r} is not an integer") from None


def _is_loopback(address: str) -> bool:
  host = address.rsplit(":", 1)[0].strip("[]")
  try:
    return host == "localhost" or ipaddress.ip_address(host).is_loopback
  except ValueError:
    return False


def initialize(coordinator_address: str | None = None, num_processes: int | None = None, process_id: int | None = None) -> tuple[int, int]:
  """Joins this process to the others (wraps ``jax.distributed.initialize``).

  Arguments left out are read from ``JAXSCALE_COORDINATOR``,
  ``JAXSCALE_NUM_PROCESSES`` and ``JAXSCALE_PROCESS_ID``; with none of them set
  JAX detects the cluster itself (TPU pods, SLURM, Open MPI). A loopback
  coordinator (``127.0.0.1:PORT``) also binds only to loopback, so a test on
  one machine stays on it.

  Args:
    coordinator_address: ``host:port`` of process 0.
    num_processes: how many processes take part.
    process_id: this process's index, ``0 .. num_processes - 1``.

  Returns:
    ``(process_index, process_count)``.
  """
  import jax

  coordinator_address = coordinator_address or os.environ.get(COORDINATOR_ENV) or None
  num_processes = num_processes if num_processes is not None else _int_env(NUM_PROCESSES_ENV)
  process_id = process_id if process_id is not None else _int_env(PROCESS_ID_ENV)
  given = {"coordinator_address": coordinator_address, "num_processes": num_processes, "process_id": process_id}
  if any(v is not None for v in given.values()) and any(v is None for v in given.values()):
    missing = [k for k, v in given.items() if v is None]
    raise ValueError(
        f"distributed initialize got {', '.join(k for k, v in given.items() if v is not None)} but not "
        f"{', '.join(missing)}; give all three (or set {COORDINATOR_ENV}, {NUM_PROCESSES_ENV}, {PROCESS_ID_ENV}), "
        "or none on TPU pods and SLURM, where JAX finds them"
    )
  if num_processes is not None and not 0 <= process_id < num_processes:
    raise ValueError(f"process_id must be in 0 .. {num_processes - 1}, got {process_id}")
  extra = {}
  if coordinator_address is not None and _is_loopback(coordinator_address):
    extra["coordinator_bind_address"] = coordinator_address
  jax.distributed.initialize(coordinator_address, num_processes, process_id, **extra)
  return jax.process_index(), jax.process_count()


def shutdown() -> None:
  import jax

  jax.distributed.shutdown()


def share(items: Sequence[Any], process_index: int | None = None, process_count: int | None = None) -> list[Any]:
  """This process's share of ``items``: every ``process_count``-th, from ``process_index``."""
  if process_index is None or process_count is None:
    import jax

    process_index, process_count = jax.process_index(), jax.process_count()
  if process_count < 1 or not 0 <= process_index < process_count:
    raise ValueError(f"process_index must be in 0 .. process_count - 1, got {process_index} of {process_count}")
  return list(items)[process_index::process_count]


def gather(value: Any) -> list[Any]:
  """Every process's ``value`` (JSON-able), in process order, on every process.

  A collective: every process must call it. Values travel as UTF-8 JSON bytes
  (padded to the longest) through ``process_allgather``, so floats arrive
  bit-exact.
  """
  import jax
  import numpy as np
  from jax.experimental import multihost_utils

  payload = np.frombuffer(json.dumps(value).encode(), dtype=np.uint8)
  if jax.process_count() == 1:
    return [value]
  lengths = np.asarray(multihost_utils.process_allgather(np.asarray([payload.size], np.int32))).reshape(-1)
  padded = np.zeros(int(lengths.max()), np.uint8)
  padded[: payload.size] = payload
  everyone = np.asarray(multihost_utils.process_allgather(padded))
  return [json.loads(bytes(row[:length]).decode()) for row, length in zip(everyone, lengths)]


def fit_many(law, run_sets: Mapping[Hashable, Any] | Sequence[Any], **kwargs) -> dict[Hashable, Any]:
  """:func:`jaxscale.batch.fit_many` with the run sets split over processes; all results on every process.

  A collective: every process calls it with the same run sets.
  """
  from jaxscale import batch, fitting

  items = list(run_sets.items()) if isinstance(run_sets, Mapping) else list(enumerate(run_sets))
  mine = share(list(enumerate(items)))
  fits = batch.fit_many(law, {key: runs for _, (key, runs) in mine}, **kwargs) if mine else {}
  results = {}
  for part in gather([[index, fits[key].to_dict()] for index, (key, _) in mine]):
    for index, data in part:
      results[index] = fitting.FitResult.from_dict(data)
  return {items[index][0]: results[index] for index in range(len(items))}


def fit_by(law, runs: Any, column: str, **kwargs) -> dict[Hashable, Any]:
  """:func:`jaxscale.batch.fit_by` with the groups split over processes."""
  from jaxscale import batch

  return fit_many(law, batch.split_by(runs, column), **kwargs)


def bootstrap(law, runs: Any, *, n: int, seed: int = 0, fit=None, cluster: str | None = None, dtype: str = "float64", devices=None, **options):
  """:func:`jaxscale.resampling.bootstrap` with the replicates split over processes.

  Replicate ``i`` is the same whichever process refits it, so the intervals
  equal the single-process ones. A collective: every process calls it alike.
  """
  import numpy as np

  from jaxscale import fitting, resampling
  from jaxscale import laws as laws_lib
  from jaxscale import runs as runs_lib

  law = laws_lib.get(law)
  runs = runs_lib.load(runs)
  if fit is None:
    fit = fitting.fit(law, runs, dtype=dtype)
  ids = np.asarray(share(range(n)), np.int32)
  theta = np.zeros((0, law.num_params))
  converged = np.zeros(0, bool)
  if ids.size:
    theta, _, converged = resampling.refit_replicates(
        law, runs, ids, fit=fit, seed=seed, cluster=cluster, dtype=dtype, devices=devices, **options
    )
  all_theta = np.full((n, law.num_params), np.nan)
  all_converged = np.zeros(n, bool)
  for part in gather({"ids": ids.tolist(), "theta": theta.tolist(), "converged": converged.tolist()}):
    # NaN (a failed replicate) survives JSON as NaN in Python's json module.
    all_theta[part["ids"]] = np.asarray(part["theta"], np.float64).reshape(-1, law.num_params)
    all_converged[part["ids"]] = part["converged"]
  return resampling.bootstrap_result(law, fit, all_theta, all_converged, seed=seed, cluster=cluster)


# --- Sweeps over several processes ----------------------------------------------------------


def split_plan(plan, process_index: int, process_count: int):
  """The part of a sweep :class:`~jaxscale.sweep.Plan` that process ``process_index`` trains.

  Runs are dealt round-robin in plan order (plans list sizes in order, so each
  process gets a similar mix of small and large runs). The parts are disjoint
  and together hold every run. Give each process its own ``out_dir`` (a sweep
  folder holds one plan) and combine them with :func:`merge_run_sets`.

  Returns:
    A :class:`~jaxscale.sweep.Plan` named ``"{name}.part{i}of{n}"``; ``None``
    when the process has no run (more processes than runs).
  """
  from jaxscale import sweep

  runs = share(plan.runs, process_index, process_count)
  if not runs:
    return None
  return sweep.Plan(name=f"{plan.name}.part{process_index}of{process_count}", runs=tuple(runs))


def _read_runs_table(path: str) -> pd.DataFrame:
  import pandas as pd

  if os.path.isdir(path):
    path = os.path.join(path, "runs.csv")
  if not os.path.exists(path):
    raise ValueError(f"{path}: no such runs file; pass a sweep folder or its runs.csv")
  table = pd.read_csv(path, dtype={"run_id": str, "group": object})
  if "run_id" not in table.columns:
    raise ValueError(f"{path}: no column 'run_id'; merge_run_sets merges sweep outputs, which have one")
  table["_source"] = path
  return table


def merge_run_sets(paths: Sequence[str | os.PathLike]) -> pd.DataFrame:
  """One run table from the parts of a sweep, each run once.

  A run recorded twice (e.g. a part re-run elsewhere) is kept once when both
  records agree on everything but timing (``wall_time_s``,
  ``resumed_from_step``); when they disagree it is an error, naming the run
  and the column.

  Args:
    paths: sweep folders or their ``runs.csv`` files.

  Returns:
    A DataFrame of the runs in order of first appearance.
  """
  import numpy as np
  import pandas as pd

  if not paths:
    raise ValueError("merge_run_sets needs at least one sweep folder or runs.csv")
  table = pd.concat([_read_runs_table(os.fspath(p)) for p in paths], ignore_index=True)
  compared = [c for c in table.columns if c not in (*TIMING_COLUMNS, "_source", "run_id")]
  for run_id, rows in table[table["run_id"].duplicated(keep=False)].groupby("run_id", sort=False):
    first = rows.iloc[0]
    for _, other in rows.iloc[1:].iterrows():
      for column in compared:
        a, b = first[column], other[column]
        if pd.isna(a) and pd.isna(b):
          continue
        numeric = isinstance(a, (int, float, np.number)) and isinstance(b, (int, float, np.number))
        same = bool(np.isclose(a, b, rtol=1e-9, atol=0.0)) if numeric else a == b
        if not same:
          raise ValueError(
              f"run {run_id} is recorded twice with different {column!r}: {a} in {first['_source']} and {b} in "
              f"{other['_source']}; keep one of the two rows (or re-run that run) before merging"
          )
  merged = table.drop_duplicates("run_id", keep="first").drop(columns="_source")
  return merged.reset_index(drop=True)
