"""jaxscale: neural scaling laws in JAX.

Fit scaling laws to training runs, bootstrap them, extrapolate with bands,
allocate compute, and train fresh data points, all as pure JAX programs.

Example:
  >>> import jaxscale
  >>> runs = jaxscale.load_runs("runs.csv")  # doctest: +SKIP
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
    "precision": ("jaxscale.fitting", "precision"),
    "Law": ("jaxscale.laws", "Law"),
    "get_law": ("jaxscale.laws", "get"),
    "custom_law": ("jaxscale.laws", "custom"),
    "register_law": ("jaxscale.laws", "register"),
    "load_law_module": ("jaxscale.laws", "load_module"),
    "preset": ("jaxscale.laws", "preset"),
    "RunSet": ("jaxscale.runs", "RunSet"),
    "RunSetError": ("jaxscale.runs", "RunSetError"),
    "load_runs": ("jaxscale.runs", "load"),  # a path, DataFrame, dict of arrays or RunSet
    "simulate_runs": ("jaxscale.simulate", "simulate"),
    # uncertainty
    "bootstrap": ("jaxscale.resampling", "bootstrap"),
    "BootstrapResult": ("jaxscale.resampling", "BootstrapResult"),
    "BootstrapWarning": ("jaxscale.resampling", "BootstrapWarning"),
    "attach_bootstrap": ("jaxscale.resampling", "attach"),
    "predict_band": ("jaxscale.bands", "predict"),  # FitResult.predict is the point estimate alone
    "Band": ("jaxscale.bands", "Band"),
    # planning
    "allocate": ("jaxscale.allocation", "allocate"),
    "allocate_for_loss": ("jaxscale.allocation", "allocate_for_loss"),
    "Allocation": ("jaxscale.allocation", "Allocation"),
    "Cost": ("jaxscale.allocation", "Cost"),
    "training_cost": ("jaxscale.allocation", "training"),
    "inference_cost": ("jaxscale.allocation", "inference"),
    "total_cost": ("jaxscale.allocation", "total"),
    "frontier": ("jaxscale.allocation", "frontier"),
    "summarize": ("jaxscale.summary", "summarize"),
    "format_summary": ("jaxscale.summary", "format_summary"),
    "isoflop_approach1": ("jaxscale.isoflop", "approach1"),
    "isoflop_approach2": ("jaxscale.isoflop", "approach2"),
    "diagnose": ("jaxscale.diagnostics", "diagnose"),
    "validate": ("jaxscale.validation", "validate"),
    "plot_all": ("jaxscale.plots", "plot_all"),
    # scale
    "fit_many": ("jaxscale.batch", "fit_many"),
    "fit_by": ("jaxscale.batch", "fit_by"),
    # fresh data points
    "ModelConfig": ("jaxscale.model", "ModelConfig"),
    "TrainConfig": ("jaxscale.train", "TrainConfig"),
    # Not "train": that name is the submodule jaxscale.train, which `from jaxscale import
    # train` must keep returning.
    "train_model": ("jaxscale.train", "train"),
    "Plan": ("jaxscale.sweep", "Plan"),
    "run_sweep": ("jaxscale.sweep", "run_sweep"),
    "make_plan": ("jaxscale.sweep", "make_plan"),
}
# Modules that are also entry points: `jaxscale.design(...)` calls jaxscale.design.design.
_CALLABLE_MODULES = ("design",)

__all__ = sorted([*_EXPORTS, *_CALLABLE_MODULES])


def __getattr__(name):
  if name in _EXPORTS:
    module, attribute = _EXPORTS[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value
  if name in _CALLABLE_MODULES:
    return importlib.import_module(f"jaxscale.{name}")
  raise AttributeError(f"module 'jaxscale' has no attribute {name!r}")


def __dir__():
  return sorted(list(globals()) + __all__)
