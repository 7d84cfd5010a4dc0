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
import sys

from jaxscale import errors

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
    "tasks",
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
    importlib.import_module(f"jaxscale.commands.{name}").add_cli(subparsers)
  return parser


def main(argv: list[str] | None = None) -> int:
  """Runs one command; any error is one ``error: ...`` line on stderr and a non-zero exit code.

  ``JAXSCALE_TRACEBACK=1`` shows the traceback of an unexpected error (for bug reports).
  """
  parser = build_parser()
  args = parser.parse_args(argv)
  if not getattr(args, "func", None):
    parser.print_help()
    return 0
  return errors.run_command(args.func, args)


if __name__ == "__main__":
  errors.exit_with(main())
