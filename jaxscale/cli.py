"""The ``jaxscale`` command line.

Each subcommand lives in ``jaxscale/commands/<name>.py`` with ``add_cli(subparsers)``
and a ``run(args) -> int`` handler that imports JAX lazily, so ``jaxscale --help``
and argument errors answer without loading the numerical stack.

Bad input raises ``ValueError`` somewhere below; it reaches the user as one
``error: ...`` line on stderr and exit code 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

COMMANDS = (
    "demo",
    "fit",
    "predict",
    "allocate",
    "summarize",
    "isoflop",
    "validate",
    "compare",
    "plot",
    "sweep",
    "simulate",
    "laws",
    "design",
)


class _Parser(argparse.ArgumentParser):
  """Usage mistakes, too, reach the user as one ``error: ...`` line (and exit code 2)."""

  def error(self, message: str):
    self.exit(2, f"error: {self.prog}: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
  parser = _Parser(
      prog="jaxscale",
      description="Neural scaling laws in JAX: fit, bootstrap, extrapolate, allocate, train fresh runs.",
  )
  subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
  for name in COMMANDS:
    module_name = "jaxscale.sweep" if name == "sweep" else f"jaxscale.commands.{name}"
    importlib.import_module(module_name).add_cli(subparsers)
  return parser


CACHE_MAX_BYTES = 2 * 1024**3


def enable_compilation_cache() -> None:
  """Keeps compiled fits on disk between invocations (the process is ours, so this is ours to set)."""
  import jax

  cache_dir = os.environ.get("JAXSCALE_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cache", "jaxscale", "jax"))
  try:
    os.makedirs(cache_dir, exist_ok=True)
  except OSError:
    return  # a read-only home: run without the cache rather than fail
  jax.config.update("jax_compilation_cache_dir", cache_dir)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  # JAX evicts least recently used entries past this size, so the folder cannot grow
  # without bound (JAXSCALE_CACHE_MAX_BYTES overrides; -1 means no limit).
  jax.config.update("jax_compilation_cache_max_size",
                    int(os.environ.get("JAXSCALE_CACHE_MAX_BYTES", CACHE_MAX_BYTES)))


def error_message(error: BaseException) -> str:
  """One line for an exception a user provoked: its text, whitespace folded, or its type."""
  message = " ".join(str(error).split())
  if isinstance(error, MemoryError):
    return f"out of memory{': ' + message if message else ''}; use a smaller input or fewer replicates"
  if isinstance(error, OSError) and error.filename and error.strerror:
    message = f"{error.filename}: {error.strerror}"
  if not message or not isinstance(error, (ValueError, OSError)):
    message = f"{type(error).__name__}: {message}" if message else type(error).__name__
  return message


def main(argv: list[str] | None = None) -> int:
  """Runs one command; any error is one ``error: ...`` line on stderr and a non-zero exit code.

  ``JAXSCALE_TRACEBACK=1`` shows the traceback of an unexpected error (for bug reports).
  """
  parser = build_parser()
  args = parser.parse_args(argv)
  if not getattr(args, "func", None):
    parser.print_help()
    return 0
  return run_command(args.func, args)


def run_command(func, args, *, cache: bool = True) -> int:
  """``func(args)`` with every error a user can provoke turned into one ``error:`` line."""
  try:
    if cache:
      enable_compilation_cache()
    return int(func(args) or 0)
  except BrokenPipeError:
    return 0  # e.g. `jaxscale laws | head`: the reader has what it wanted
  except KeyboardInterrupt:
    print("error: interrupted; run the same command again to resume a sweep", file=sys.stderr)
    return 130
  except (ValueError, OSError, ArithmeticError, MemoryError) as error:
    print(f"error: {error_message(error)}", file=sys.stderr)
    return 2
  except Exception as error:  # a bug, but the user still gets one line
    if os.environ.get("JAXSCALE_TRACEBACK"):
      raise
    print(f"error: unexpected {error_message(error)} (a bug in jaxscale; set JAXSCALE_TRACEBACK=1 to see where)",
          file=sys.stderr)
    return 1


def exit_with(code: int) -> None:
  """``sys.exit(code)`` for a program; after Ctrl-C a second one, during JAX's exit hooks, is ignored."""
  if code == 130:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
  sys.exit(code)


if __name__ == "__main__":
  exit_with(main())
