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

from jaxscale import compilation_cache

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
  parser = build_parser()
  args = parser.parse_args(argv)
  if not getattr(args, "func", None):
    parser.print_help()
    return 0
  try:
    compilation_cache.enable()
    return int(args.func(args) or 0)
  except BrokenPipeError:
    return 0  # e.g. `jaxscale laws | head`: the reader has what it wanted
  except (ValueError, OSError) as error:
    message = " ".join(str(error).split()) or type(error).__name__
    print(f"error: {message}", file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print("error: interrupted", file=sys.stderr)
    return 130


if __name__ == "__main__":
  sys.exit(main())
