"""Memory estimates of the big allocations, checked before the work starts.

A request that cannot fit (a 1e6-row run set against 4,500 starts, a billion bootstrap
replicates, a 100,000-dpi figure) is refused up front with the size it would need, instead
of swapping for minutes and dying in the allocator. Each estimate counts the largest arrays
the step holds at once, in bytes; they are deliberately simple upper-bound-ish figures, not
measurements, so a refusal means "clearly too big", never "a little too big".

The budget is the memory available now (``MemAvailable`` on Linux, else physical memory);
``JAXSCALE_MEMORY_LIMIT`` (bytes, e.g. ``8e9``) overrides it.

Example:
  >>> from jaxscale import limits
  >>> limits.check(limits.fit_bytes(starts=4500, runs=240, keep=64, params=5), "the fit")  # fits
"""

from __future__ import annotations

import os

FLOAT_BYTES = 8
# A bootstrap replicate's parameters live as float64 samples, in fit space and natural space, and
# as about 24 characters each in the fit's JSON.
BOOTSTRAP_BYTES_PER_PARAM = 3 * FLOAT_BYTES + 24
RGBA_BYTES = 4


def usable_cores() -> list[int]:
  """The CPU cores this process may run on (its affinity mask where the OS has one)."""
  if hasattr(os, "sched_getaffinity"):
    return sorted(os.sched_getaffinity(0))
  return list(range(os.cpu_count() or 1))


class TooBigError(ValueError):
  """A request whose memory estimate exceeds what this machine has; the message gives both."""


def available_bytes() -> int:
  """Bytes this process may allocate: ``JAXSCALE_MEMORY_LIMIT``, else available, else physical memory."""
  override = os.environ.get("JAXSCALE_MEMORY_LIMIT")
  if override:
    try:
      return int(float(override))
    except ValueError:
      raise ValueError(f"JAXSCALE_MEMORY_LIMIT must be a number of bytes (e.g. 8e9), got {override!r}") from None
  try:
    with open("/proc/meminfo") as f:
      for line in f:
        if line.startswith("MemAvailable:"):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  try:
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
  except (ValueError, OSError, AttributeError):
    return 1 << 62  # unknown: never refuse


def format_bytes(count: float) -> str:
  for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
    if abs(count) < 1000 or unit == "PB":
      return f"{count:.3g} {unit}"
    count /= 1000
  return f"{count:.3g} PB"


def check(needed: float, what: str, hint: str = "") -> None:
  """Raises :class:`TooBigError` when ``needed`` bytes exceed :func:`available_bytes`."""
  available = available_bytes()
  if needed > available:
    raise TooBigError(
        f"{what} would need about {format_bytes(needed)} of memory and {format_bytes(available)} is available"
        + (f"; {hint}" if hint else ""))


def fit_bytes(*, starts: int, runs: int, keep: int | None, params: int, folds: int = 1) -> float:
  """A multi-start fit: the objective at every start over every run (``S x R``), then the
  residuals and Jacobian of the refined starts (``K x R x (P + 1)``); ``folds`` fits at once."""
  refined = starts if keep is None else min(keep, starts)
  return folds * FLOAT_BYTES * runs * (starts + refined * (params + 1))


def bootstrap_bytes(*, replicates: int, params: int, runs: int, chunk: int = 256) -> float:
  """A bootstrap of a fit: every replicate's parameters kept, and one chunk of resampled weights."""
  return replicates * params * BOOTSTRAP_BYTES_PER_PARAM + min(chunk, replicates) * runs * FLOAT_BYTES


def isoflop_bootstrap_bytes(*, replicates: int, runs: int) -> float:
  """IsoFLOP's bootstrap: resample counts and draws for every replicate and run, at once."""
  return 3 * FLOAT_BYTES * replicates * max(runs, 1)


def figure_bytes(*, dpi: int, width_inches: float = 12.0, height_inches: float = 6.4) -> float:
  """One RGBA raster of the largest figure of :mod:`jaxscale.plots` (two copies while saving)."""
  return 2 * RGBA_BYTES * (dpi * width_inches) * (dpi * height_inches)


def rows_bytes(*, rows: float, columns: int = 8) -> float:
  """A table of ``rows`` runs held as float64 columns, twice (the frame and its CSV text)."""
  return 2 * rows * columns * FLOAT_BYTES * 3
