"""``jaxscale laws``: the law zoo with formulas and published presets."""

from __future__ import annotations

import argparse

from jaxscale import commands


def add_cli(subparsers) -> None:
  parser = subparsers.add_parser("laws", help="list the scaling laws, their formulas and presets")
  commands.add_format_argument(parser, choices=("text", "json"))
  parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
  from jaxscale import laws

  entries = [
      {
          "name": law.name,
          "formula": law.formula,
          "variables": list(law.variables),
          "params": list(law.natural_names),
          "presets": {k: dict(v) for k, v in law.presets.items()},
          "description": law.description,
      }
      for law in laws.all_laws()
  ]
  if args.format == "json":
    commands.print_json(entries)
    return 0
  for entry in entries:
    print(f"{entry['name']}\n  {entry['formula']}\n  {entry['description']}")
    print(f"  needs columns: {', '.join(entry['variables'])}; params: {', '.join(entry['params'])}")
    for source, values in entry["presets"].items():
      shown = ", ".join(f"{k}={commands.format_number(v)}" for k, v in values.items())
      print(f"  preset {source}: {shown}")
    print()
  return 0
