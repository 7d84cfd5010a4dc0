"""Local devices and the one-axis mesh that splits a batch of fits over them.

Every batched program in jaxscale (refits of many run sets, bootstrap
replicates) puts its leading axis on ``jax.make_mesh((k,), ("batch",))`` with
``NamedSharding(mesh, PartitionSpec("batch"))``. Members of a batch are solved
independently, so an answer does not depend on ``k``.

Example:
  >>> from jaxscale import devices
  >>> sharding = devices.batch_sharding(devices.local_devices(1))  # doctest: +SKIP
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Iterable, Sequence

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from jaxscale import limits

BATCH_AXIS = "batch"


def local_devices(devices: int | Sequence[jax.Device] | None = None) -> list[jax.Device]:
  """The local devices a batch is split over.

  Args:
    devices: ``None`` for every local device, ``K`` for the first ``K``, or the
      devices themselves.

  Returns:
    A non-empty list of devices.
  """
  available = jax.local_devices()
  if devices is None:
    return list(available)
  if isinstance(devices, (int, np.integer)) and not isinstance(devices, bool):
    if devices < 1:
      raise ValueError(f"--devices must be >= 1, got {devices}")
    if devices > len(available):
      raise ValueError(
          f"--devices {devices} but only {len(available)} devices are available; pass --devices {len(available)} "
          "or fewer (on CPU, XLA_FLAGS=--xla_force_host_platform_device_count=N set before JAX starts gives N host devices)"
      )
    return list(available[: int(devices)])
  devices = list(devices)
  if not devices:
    raise ValueError("devices is empty; pass None for all local devices or a count >= 1")
  return devices


def batch_sharding(devices: Sequence[jax.Device]) -> NamedSharding:
  """Splits the leading (batch) axis over ``devices``; everything else stays whole."""
  # Auto axes: the compiler propagates the split through the solver's while loops and
  # top_k; explicit axes would demand sharding annotations inside the fitting code.
  mesh = jax.make_mesh((len(devices),), (BATCH_AXIS,), (jax.sharding.AxisType.Auto,), devices=list(devices))
  return NamedSharding(mesh, PartitionSpec(BATCH_AXIS))


def host_workers(sharding: NamedSharding) -> int:
  """How many chunks of a batch to run at once: the CPU cores each device of ``sharding`` can have, else 1.

  A CPU device runs one call on one core (the solver's ops are too small for XLA to split),
  but runs calls from several threads at once; an accelerator queues them on one stream.
  """
  devices = sharding.mesh.devices.flat
  if any(device.platform != "cpu" for device in devices):
    return 1
  return max(1, len(limits.usable_cores()) // sharding.mesh.devices.size)


def side_by_side(fn: Callable, items: Iterable, workers: int) -> list:
  """``[fn(item) for item in items]``, up to ``workers`` at once in threads (in order; one
  thread runs them in turn). Each thread keeps the caller's JAX x64 scope, which is
  thread-local; on an error or Ctrl-C the items not yet started are dropped, not run.
  """
  items = list(items)
  workers = min(workers, len(items))
  if workers < 2:
    return [fn(item) for item in items]
  x64 = bool(jax.config.jax_enable_x64)

  def scoped(item):
    with jax.enable_x64(x64):
      return fn(item)

  pool = concurrent.futures.ThreadPoolExecutor(workers)
  try:
    return list(pool.map(scoped, items))
  finally:
    pool.shutdown(wait=True, cancel_futures=True)


def pad_rows(array, size: int) -> np.ndarray:
  """Pads the leading axis to ``size`` with copies of the last row (discarded after the call)."""
  array = np.asarray(array)
  if array.shape[0] == size:
    return array
  return np.concatenate([array, np.repeat(array[-1:], size - array.shape[0], axis=0)])
