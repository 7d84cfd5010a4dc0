"""jaxscale: neural scaling laws in JAX.

Fit scaling laws to training runs, bootstrap them, extrapolate with bands,
allocate compute, and train fresh data points, all as pure JAX programs.

Example:
  >>> import jaxscale
  >>> runs = jaxscale.read_runs("runs.csv")  # doctest: +SKIP
  >>> result = jaxscale.fit("chinchilla", runs)  # doctest: +SKIP

Names load on first use, so ``import jaxscale`` (and the CLI's ``--help``) does
not pay for importing JAX.
"""

import importlib

__version__ = "0.1.0"

# public name -> (module, attribute)
_EXPORTS = {
    "fit": ("jaxscale.fitting", "fit"),
    "FitResult": ("jaxscale.fitting", "FitResult"),
    "Law": ("jaxscale.laws", "Law"),
    "get_law": ("jaxscale.laws", "get"),
    "custom_law": ("jaxscale.laws", "custom"),
    "register_law": ("jaxscale.laws", "register"),
    "preset": ("jaxscale.laws", "preset"),
    "RunSet": ("jaxscale.runs", "RunSet"),
    "RunSetError": ("jaxscale.runs", "RunSetError"),
    "read_runs": ("jaxscale.runs", "read"),
    "load_runs": ("jaxscale.runs", "load"),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
  if name in _EXPORTS:
    module, attribute = _EXPORTS[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value
  raise AttributeError(f"module 'jaxscale' has no attribute {name!r}")


def __dir__():
  return sorted(list(globals()) + __all__)
