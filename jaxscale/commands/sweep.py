"""``jaxscale sweep --preset quick --out DIR``: train a sweep of small language models (resumable).

The subcommand's arguments stay beside the sweep they configure
(:func:`jaxscale.sweep.add_cli`); this module registers them with the CLI so
that ``jaxscale.cli`` and ``jaxscale.sweep`` never import each other.
"""

from __future__ import annotations


def add_cli(subparsers) -> None:
  from jaxscale import sweep  # standard library only at import: the CLI stays fast

  sweep.add_cli(subparsers)
