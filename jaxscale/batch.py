"""Many fits at once: run sets of different lengths, or bootstrap replicates, as one batch.

A batch of fits is one compiled program. Run sets of different lengths are
padded to the bucket of the longest (:func:`jaxscale.fitting.bucket_size`) with
rows of weight 0 (copies of their first row, so
every residual stays finite), which changes no objective, and
:func:`jaxscale.fitting.multistart` is ``vmap``-ped over the run-set axis. The
batch axis is then split over local devices with a one-axis mesh
(``jax.make_mesh((k,), ("batch",))``) and ``NamedSharding(mesh,
PartitionSpec("batch"))``, padding the batch to a multiple of ``k``. Every
member of the batch is solved independently (a finished member of a ``vmap``-ped
``while_loop`` is frozen), so an answer does not depend on the device count,
the batch it came in, or its position there.

Example:
  >>> from jaxscale import batch
  >>> fits = batch.fit_by("chinchilla", "runs.csv", "dataset")  # doctest: +SKIP
  >>> {value: fit.params["alpha"] for value, fit in fits.items()}  # doctest: +SKIP

The sharded bootstrap is :func:`jaxscale.resampling.bootstrap` (``devices=``);
the device helpers live in :mod:`jaxscale.devices`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from jaxscale import devices as devices_lib
from jaxscale import fitting
from jaxscale import laws as laws_lib
from jaxscale import runs as runs_lib
from jaxscale import solver

def map_sharded(fn: Callable[..., Any], batched_args: Sequence[Any], *, devices: int | Sequence[jax.Device] | None = None):
  """Calls ``fn(*batched_args)`` with the leading axis of every argument split over devices.

  The batch is padded to a multiple of the device count with copies of its last
  member, placed with :func:`jaxscale.devices.batch_sharding`, and the outputs are cut back to
  the batch size and returned as NumPy arrays. ``fn`` must treat batch members
  independently (e.g. a jitted ``vmap``) for the answer to be the same on any
  number of devices. Call it inside :func:`jaxscale.fitting.precision` when the
  arguments are float64.

  Args:
    fn: a jitted function of batched arrays (pytrees allowed), batch axis first.
    batched_args: its arguments, each a pytree of arrays of shape ``(B, ...)``.
    devices: see :func:`jaxscale.devices.local_devices`.

  Returns:
    ``fn``'s outputs, a pytree of NumPy arrays of shape ``(B, ...)``.

  Example:
    >>> square = jax.jit(jax.vmap(lambda x: x @ x))
    >>> map_sharded(square, [np.ones((5, 3))], devices=1)  # doctest: +SKIP
    array([3., 3., 3., 3., 3.])
  """
  devices = devices_lib.local_devices(devices)
  sizes = {leaf.shape[0] for leaf in jax.tree.leaves(batched_args)}
  if len(sizes) != 1:
    raise ValueError(f"every batched argument needs the same leading size; got sizes {sorted(sizes)}")
  (size,) = sizes
  padded_size = len(devices) * math.ceil(size / len(devices))
  padded = jax.tree.map(lambda leaf: devices_lib.pad_rows(leaf, padded_size), list(batched_args))
  placed = jax.device_put(padded, devices_lib.batch_sharding(devices))
  return jax.tree.map(lambda out: np.asarray(out)[:size], fn(*placed))


# --- Batched multi-start fits ----------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("law", "options", "keep"))
def _multistart_batch(law, starts_BxSxP, log_inputs, log_loss_BxR, weights_BxR, *, options, keep):
  """:func:`fitting.multistart` for every run set of the batch; one compiled program."""
  return jax.vmap(lambda *a: fitting.multistart(law, *a, options=options, keep=keep))(
      starts_BxSxP, log_inputs, log_loss_BxR, weights_BxR
  )


def fit_many(
    law: str | laws_lib.Law,
    run_sets: Mapping[Hashable, Any] | Sequence[Any],
    *,
    loss: str = "huber",
    delta: float = 1e-3,
    keep: int | None = fitting.DEFAULT_KEEP,
    max_steps: int = 300,
    dtype: str = "float64",
    devices: int | Sequence[jax.Device] | None = None,
) -> dict[Hashable, fitting.FitResult]:
  """Fits ``law`` to every run set in one compiled, device-sharded call.

  Each result equals :func:`jaxscale.fitting.fit` on that run set alone (to
  rounding: ~1e-12 relative in the parameters on the Chinchilla data).

  Args:
    law: a law name or :class:`~jaxscale.laws.Law`.
    run_sets: ``{key: runs}`` or a list of runs (keys ``0 .. n-1``); each a path,
      DataFrame, dict of arrays or :class:`~jaxscale.runs.RunSet`, any length.
    loss, delta, keep, max_steps, dtype: as for :func:`jaxscale.fitting.fit`.
    devices: local devices to split the batch over (see :func:`jaxscale.devices.local_devices`).

  Returns:
    ``{key: FitResult}`` in the order of ``run_sets``.

  Example:
    >>> fits = fit_many("chinchilla", {"c4": runs_c4, "pile": runs_pile}, devices=2)  # doctest: +SKIP
  """
  law = laws_lib.get(law)
  items = list(run_sets.items()) if isinstance(run_sets, Mapping) else list(enumerate(run_sets))
  if not items:
    raise ValueError("fit_many needs at least one run set")
  labelled = [(key, f"run set {key!r}", runs_lib.load(runs)) for key, runs in items]
  return _fit_batch(law, labelled, loss=loss, delta=delta, keep=keep, max_steps=max_steps, dtype=dtype, devices=devices)


def _fit_batch(law, items, *, loss, delta, keep, max_steps, dtype, devices):
  for _, label, runs in items:
    try:
      runs_lib.check_for_law(runs, law)
    except runs_lib.RunSetError as error:
      raise runs_lib.RunSetError(f"{label}: {error}") from error  # e.g. "dataset='c4': runs.csv: 3 runs ... cannot fit"
  if loss not in ("huber", "mse"):
    raise ValueError(f"unknown loss {loss!r}; use 'huber' or 'mse'")
  if delta <= 0:
    raise ValueError(f"delta must be > 0, got {delta}")
  devices = devices_lib.local_devices(devices)
  options = solver.SolverOptions(loss=loss, delta=float(delta), max_steps=int(max_steps))
  longest = fitting.bucket_size(max(len(runs) for _, _, runs in items))  # one program for every batch of this bucket
  with fitting.precision(dtype) as float_dtype:
    starts, log_inputs, log_loss, weights = [], {v: [] for v in law.variables}, [], []
    for key, _, runs in items:
      inputs, log_loss_R, weights_R = fitting.prepare(law, runs, float_dtype)
      starts.append(law.starts(inputs))  # from the unpadded runs, as a single fit places them
      if starts[-1].shape != starts[0].shape:
        raise ValueError(
            f"law {law.name!r} places {starts[-1].shape[0]} starts for run set {key!r} but {starts[0].shape[0]} for "
            f"{items[0][0]!r}; batched fits need one grid size, so fit these run sets separately"
        )
      pad = longest - len(runs)
      for v in law.variables:
        log_inputs[v].append(np.concatenate([np.asarray(inputs[v]), np.repeat(np.asarray(inputs[v])[:1], pad)]))
      log_loss.append(np.concatenate([np.asarray(log_loss_R), np.repeat(np.asarray(log_loss_R)[:1], pad)]))
      weights.append(np.concatenate([np.asarray(weights_R), np.zeros(pad)]))  # padding rows weigh nothing
    num_starts = starts[0].shape[0]
    kept = num_starts if keep is None else max(1, min(int(keep), num_starts))
    batched = [
        np.asarray(np.stack(starts), float_dtype),
        {v: np.asarray(np.stack(x), float_dtype) for v, x in log_inputs.items()},
        np.asarray(np.stack(log_loss), float_dtype),
        np.asarray(np.stack(weights), float_dtype),
    ]
    fn = functools.partial(_multistart_batch, law, options=options, keep=kept)
    states, gradient_norms = map_sharded(fn, batched, devices=devices)
  return {
      key: fitting.result_from_starts(
          law, jax.tree.map(lambda x: x[i], states), gradient_norms[i], runs,
          starts=num_starts, kept=kept, loss=loss, delta=delta, max_steps=max_steps, dtype=dtype,
      )
      for i, (key, _, runs) in enumerate(items)
  }


def split_by(runs: Any, column: str) -> dict[Hashable, runs_lib.RunSet]:
  """``{value: the runs with that value}`` for each value of ``column``, in sorted order."""
  runs = runs_lib.load(runs)
  if column not in runs.frame.columns:
    raise runs_lib.RunSetError(
        f"{runs.source}: no column {column!r} to fit by; columns are {list(runs.frame.columns)} (e.g. --by group)"
    )
  values = runs.frame[column]
  if values.isna().any():
    row = int(np.flatnonzero(values.isna().to_numpy())[0])
    raise runs_lib.RunSetError(f"{runs.source}: column {column!r} row {row} is empty; give every run a {column} or drop that row")
  parts = {}
  for value in sorted(values.unique(), key=lambda v: (str(type(v)), v)):
    value = value.item() if isinstance(value, np.generic) else value
    parts[value] = runs.subset((values == value).to_numpy())
  return parts


def fit_by(law: str | laws_lib.Law, runs: Any, column: str, **kwargs) -> dict[Hashable, fitting.FitResult]:
  """One fit of ``law`` per value of ``column`` (e.g. ``dataset`` or ``task``), all in one batch.

  Args:
    law: a law name or :class:`~jaxscale.laws.Law`.
    runs: a path, DataFrame, dict of arrays or :class:`~jaxscale.runs.RunSet`.
    column: the column whose values split the runs.
    **kwargs: as for :func:`fit_many` (``loss``, ``delta``, ``keep``, ``max_steps``,
      ``dtype``, ``devices``).

  Returns:
    ``{value: FitResult}`` in sorted order of the values.

  Example:
    >>> fits = fit_by("chinchilla", "runs.csv", "dataset")  # doctest: +SKIP
  """
  options = dict(loss="huber", delta=1e-3, keep=fitting.DEFAULT_KEEP, max_steps=300, dtype="float64", devices=None)
  unknown = sorted(set(kwargs) - set(options))
  if unknown:
    raise TypeError(f"fit_by got unexpected keyword arguments {unknown}; it takes {sorted(options)}")
  items = [(value, f"{column}={value!r}", part) for value, part in split_by(runs, column).items()]
  return _fit_batch(laws_lib.get(law), items, **{**options, **kwargs})
