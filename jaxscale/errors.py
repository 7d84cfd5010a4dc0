"""Errors at the program's edge: every exception a user can provoke becomes one ``error:`` line.

Shared by ``jaxscale`` (:mod:`jaxscale.cli`) and ``python -m jaxscale.sweep`` and its workers,
which must not import each other.
"""

from __future__ import annotations

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


def run_command(func, args, *, cache: bool = True) -> int:
  """``func(args)`` with every error a user can provoke turned into one ``error:`` line,
  and every warning into one ``warning:`` line (not Python's file, line and source)."""
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


