"""Errors at the program's edge: every exception a user can provoke becomes one ``error:`` line.

:func:`run_command` also sets up a process that is ours: the compilation cache and the
garbage collector's pace.

Shared by ``jaxscale`` (:mod:`jaxscale.cli`) and ``python -m jaxscale.sweep`` and its workers,
which must not import each other.
"""

from __future__ import annotations

import atexit
import gc
import os
import sys
import warnings

from jaxscale import compilation_cache


def message(error: BaseException) -> str:
  """One line for an exception a user provoked: its text, whitespace folded, or its type."""
  message = " ".join(str(error).split())
  if isinstance(error, MemoryError):
    return f"out of memory{': ' + message if message else ''}; use a smaller input or fewer replicates"
  if isinstance(error, OSError) and error.filename and error.strerror:
    message = f"{error.filename}: {error.strerror}"
  if not message or not isinstance(error, (ValueError, OSError)):
    message = f"{type(error).__name__}: {message}" if message else type(error).__name__
  return message


# A collection every this many new container objects instead of Python's 700 (see tune_collector).
GC_THRESHOLD = 50_000
_collector_tuned = False


def tune_collector() -> None:
  """Fewer passes of Python's cyclic garbage collector in a command's process.

  Importing JAX and pandas and tracing programs leave about a million long-lived objects,
  which the collector scans again on every full pass, and once more as the process exits.
  A higher first-generation threshold makes passes rarer (cycles are still collected), and
  freezing every object at exit lets the final pass skip what the process drops anyway.
  Together they take about 0.35 s off a 3.3 s ``jaxscale fit --bootstrap 4000`` (2 cores).
  Set once per process (tests call commands in theirs), by :func:`run_command`, so the
  command line and the sweep's worker processes both have it.
  """
  global _collector_tuned
  if _collector_tuned:
    return
  _collector_tuned = True
  gc.set_threshold(max(GC_THRESHOLD, gc.get_threshold()[0]), *gc.get_threshold()[1:])
  atexit.register(gc.freeze)  # atexit runs before the interpreter's final collection


def run_command(func, args, *, cache: bool = True) -> int:
  """``func(args)`` with every error a user can provoke turned into one ``error:`` line,
  and every warning into one ``warning:`` line (not Python's file, line and source)."""
  tune_collector()
  try:
    if cache:
      compilation_cache.enable()
    with warnings.catch_warnings():
      warnings.showwarning = _warning_line
      return int(func(args) or 0)
  except BrokenPipeError:
    return 0  # e.g. `jaxscale laws | head`: the reader has what it wanted
  except KeyboardInterrupt:
    print("error: interrupted; run the same command again to resume a sweep", file=sys.stderr)
    return 130
  except (ValueError, OSError, ArithmeticError, MemoryError) as error:
    print(f"error: {message(error)}", file=sys.stderr)
    return 2
  except Exception as error:  # a bug, but the user still gets one line
    if os.environ.get("JAXSCALE_TRACEBACK"):
      raise
    print(f"error: unexpected {message(error)} (a bug in jaxscale; set JAXSCALE_TRACEBACK=1 to see where)",
          file=sys.stderr)
    return 1


def _warning_line(message, category, filename, lineno, file=None, line=None) -> None:
  """A warning as the command line shows it: ``warning: <message>``, one line."""
  text = " ".join(str(message).split())
  print(f"warning: {text}", file=file or sys.stderr)


def exit_with(code: int) -> None:
  """``sys.exit(code)`` for a program; after Ctrl-C a second one, during JAX's exit hooks, is ignored."""
  if code == 130:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
  sys.exit(code)


