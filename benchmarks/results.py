"""Benchmark results: one comparison per row, the machine they ran on, and the Markdown table.

Every benchmark script builds its rows with :func:`comparison` and, given
``--json PATH``, writes them with :func:`write_json`; ``python -m benchmarks``
collects them and renders ``benchmarks/RESULTS.md`` with :func:`render`. This
module is plain Python (no JAX, no scipy) so the runner and the tests can load it
cheaply.

Example:
  >>> row = comparison("fit", "multi-start fit", 0.2, "scipy loop", 240.0,
  ...                  setting="240 runs", reference_extrapolated=True)
  >>> row["ratio"]
  1200.0
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import time
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

# How a row's ratio reads: "speed-up" is reference / jaxscale for times (above 1:
# jaxscale is faster); "utilisation" is jaxscale / reference for rates (MFU).
RATIO_KINDS = ("speed-up", "utilisation", "throughput")
UNITS = ("s", "GFLOP/s")


# The reference data lives beside the project (../shared/data), never inside it.
CHINCHILLA_CSV = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "chinchilla_svg_extracted.csv"


def comparison(
    benchmark: str,
    jaxscale: str,
    jaxscale_value: float,
    reference: str,
    reference_value: float | None,
    *,
    unit: str = "s",
    ratio_kind: str = "speed-up",
    setting: str = "",
    check: str = "",
    device: str = "",
    reference_extrapolated: bool = False,
) -> dict[str, Any]:
  """One row of the results table: jaxscale and a reference on the same problem.

  Args:
    benchmark: short name of the benchmark (``"fit"``, ``"bootstrap"``, ...).
    jaxscale: what jaxscale ran, e.g. ``"multi-start fit, steady state"``.
    jaxscale_value: its median, in ``unit``.
    reference: what it is compared with, e.g. ``"scipy L-BFGS-B loop"``.
    reference_value: the reference's median, in ``unit``; None when it did not run.
    unit: ``"s"`` (wall seconds) or ``"GFLOP/s"``.
    ratio_kind: ``"speed-up"`` (reference / jaxscale time), ``"utilisation"``
      (jaxscale / reference FLOP/s, shown as MFU) or ``"throughput"`` (jaxscale /
      reference rate, shown as a speed-up).
    setting: problem size, repeats and how the numbers were taken.
    check: agreement between the two results (objective gap, max difference).
    device: the JAX devices the row ran on, e.g. ``"cpu x1"``.
    reference_extrapolated: the reference was timed on a subset and scaled linearly.

  Returns:
    A JSON-ready dict with the ratio filled in.
  """
  if unit not in UNITS:
    raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")
  if ratio_kind not in RATIO_KINDS:
    raise ValueError(f"ratio_kind must be one of {RATIO_KINDS}, got {ratio_kind!r}")
  ratio = None
  if reference_value is not None and jaxscale_value and reference_value:
    ratio = reference_value / jaxscale_value if ratio_kind == "speed-up" else jaxscale_value / reference_value
  return {
      "benchmark": benchmark,
      "jaxscale": jaxscale,
      "jaxscale_value": float(jaxscale_value),
      "reference": reference,
      "reference_value": None if reference_value is None else float(reference_value),
      "reference_extrapolated": bool(reference_extrapolated),
      "unit": unit,
      "ratio": ratio,
      "ratio_kind": ratio_kind,
      "setting": setting,
      "check": check,
      "device": device,
  }


def failure(benchmark: str, reason: str, *, reference: str = "") -> dict[str, Any]:
  """A row for a benchmark that did not produce numbers, saying why."""
  return {"benchmark": benchmark, "jaxscale": "", "jaxscale_value": None, "reference": reference,
          "reference_value": None, "reference_extrapolated": False, "unit": "s", "ratio": None,
          "ratio_kind": "speed-up", "setting": "", "check": reason, "device": ""}


def time_call(fn, repeats: int) -> list[float]:
  """Wall seconds of ``repeats`` calls of ``fn()``."""
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return times


def write_json(path: str | os.PathLike, rows: Sequence[Mapping[str, Any]]) -> None:
  """Writes a benchmark's rows for the runner."""
  Path(path).write_text(json.dumps({"rows": list(rows)}, indent=1))


def read_json(path: str | os.PathLike) -> list[dict[str, Any]]:
  return list(json.loads(Path(path).read_text())["rows"])


def jax_device() -> str:
  """The default JAX devices as ``"<kind> x<count>"``, e.g. ``"cpu x1"``."""
  import jax

  return f"{jax.devices()[0].device_kind} x{jax.device_count()}"


def format_value(value: float | None, unit: str) -> str:
  """A median with the digits that matter: ``0.446 s``, ``13.0 s``, ``1,115 s``, ``4.2 ms``."""
  if value is None:
    return "-"
  if unit == "s" and value < 0.01:
    return f"{value * 1e3:.2g} ms"
  if value >= 100:
    number = f"{value:,.0f}"
  elif value >= 10:
    number = f"{value:.1f}"
  elif value >= 1:
    number = f"{value:.2f}"
  else:
    number = f"{value:.3f}"
  return f"{number} {unit}"


def format_ratio(ratio: float | None, kind: str) -> str:
  """``4,214x``, ``22.5x``, ``1.93x`` for speed-ups; ``23%`` for utilisation."""
  if ratio is None:
    return "-"
  if kind == "utilisation":
    return f"{ratio:.0%} MFU"
  if kind == "throughput":
    return f"{ratio:.2f}x"
  if ratio >= 100:
    return f"{ratio:,.0f}x"
  if ratio >= 10:
    return f"{ratio:.1f}x"
  return f"{ratio:.2f}x"


def _cell(text: Any) -> str:
  """Table-safe text: pipes escaped, newlines flattened."""
  return str(text).replace("|", "\\|").replace("\n", " ").strip()


def render_table(rows: Sequence[Mapping[str, Any]]) -> str:
  """The comparison table, one row per comparison, in the order given."""
  lines = [
      "| benchmark | jaxscale | median | reference | median | ratio | setting | check | device |",
      "|---|---|---:|---|---:|---:|---|---|---|",
  ]
  for row in rows:
    reference_value = format_value(row["reference_value"], row["unit"])
    if row["reference_value"] is not None and row.get("reference_extrapolated"):
      reference_value = "~" + reference_value
    cells = [row["benchmark"], row["jaxscale"], format_value(row["jaxscale_value"], row["unit"]), row["reference"],
             reference_value, format_ratio(row["ratio"], row["ratio_kind"]), row["setting"], row["check"],
             row["device"]]
    lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
  return "\n".join(lines)


def render(
    machine: Mapping[str, Any],
    rows: Sequence[Mapping[str, Any]],
    *,
    command: str,
    details: Mapping[str, str] | None = None,
) -> str:
  """The whole RESULTS.md: machine header, the comparison table, each benchmark's own output.

  Args:
    machine: from :func:`machine_info` (plus ``elapsed_s`` and ``load_end`` once done).
    rows: comparison rows from every benchmark, in run order.
    command: the command line that produced them.
    details: ``{benchmark: its printed Markdown}`` shown under the table.

  Returns:
    Markdown text.
  """
  load_start, load_end = machine.get("load_start"), machine.get("load_end")
  lines = [
      "# jaxscale benchmarks",
      "",
      f"Generated by `{command}` on {machine.get('date', '?')}, git {machine.get('git', '?')}"
      + (f", {machine['elapsed_s'] / 60:.1f} min in all." if machine.get("elapsed_s") else "."),
      "",
  ]
  if machine.get("note"):
    lines += [f"**{machine['note']}**", ""]
  lines += [
      f"- **CPU**: {machine.get('cpu', '?')}, {machine.get('cores', '?')} cores usable"
      f" ({machine.get('memory', '?')} memory), {machine.get('platform', '?')}",
      f"- **JAX**: jax {machine.get('jax', '?')}, jaxlib {machine.get('jaxlib', '?')};"
      f" default device {machine.get('device', '?')}",
      f"- **Python** {machine.get('python', '?')}, numpy {machine.get('numpy', '?')},"
      f" scipy {machine.get('scipy', '?')}",
  ]
  if load_start is not None:
    load = f"- **Load average** (1 min) at start {load_start:.1f}"
    if load_end is not None:
      load += f", at end {load_end:.1f}"
    # The end reading includes the benchmarks' own processes; only the start says whether others were busy.
    if load_start > 0.5 * (machine.get("cores") or 1):
      load += "; **the machine was busy with other work, so these timings are pessimistic**"
    lines.append(load)
  lines += [
      "",
      "Medians over repeats. *ratio*: speed-up = reference time / jaxscale time (above 1: jaxscale"
      " is faster); MFU = achieved / peak FLOP/s. A reference median marked `~` was timed on a subset"
      " (of starts, replicates or problems) and scaled linearly to the full problem; the *setting*"
      " column says which.",
      "",
      render_table(rows),
  ]
  for name, text in (details or {}).items():
    if text.strip():
      lines += ["", f"## {name}", "", text.strip()]
  return "\n".join(lines) + "\n"


def _version(package: str) -> str:
  try:
    return metadata.version(package)
  except metadata.PackageNotFoundError:
    return "not installed"


def _cpu_model() -> str:
  try:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
      if line.lower().startswith("model name"):
        return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def _memory() -> str:
  try:
    for line in Path("/proc/meminfo").read_text().splitlines():
      if line.startswith("MemTotal:"):
        return f"{int(line.split()[1]) / 2**20:.0f} GiB"
  except OSError:
    pass
  return "?"


def _git(root: Path) -> str:
  try:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                            check=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True,
                           text=True, check=True).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return "unknown (not a git checkout)"
  return commit + (" with uncommitted changes" if dirty else "")


def machine_info(root: str | os.PathLike, device: str = "?") -> dict[str, Any]:
  """What the results depend on: CPU, cores, memory, versions, device, date, commit, load."""
  try:
    cores = len(os.sched_getaffinity(0))
  except AttributeError:
    cores = os.cpu_count()
  return {
      "cpu": _cpu_model(),
      "cores": cores,
      "memory": _memory(),
      "platform": f"{platform.system()} {platform.machine()}",
      "python": platform.python_version(),
      "jax": _version("jax"),
      "jaxlib": _version("jaxlib"),
      "numpy": _version("numpy"),
      "scipy": _version("scipy"),
      "device": device,
      "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
      "git": _git(Path(root)),
      "load_start": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
  }
