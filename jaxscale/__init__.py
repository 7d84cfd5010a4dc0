"""jaxscale: neural scaling laws in JAX.

Fit scaling laws to training runs, bootstrap them, extrapolate with bands,
allocate compute, and train fresh data points, all as pure JAX programs.

Example:
  >>> import jaxscale
  >>> runs = jaxscale.read_runs("runs.csv")  # doctest: +SKIP
  >>> result = jaxscale.fit("chinchilla", runs)  # doctest: +SKIP

Submodules import lazily, so ``import jaxscale`` stays cheap for the CLI.
"""

from jaxscale.fitting import FitResult, fit
from jaxscale.laws import Law, custom as custom_law, get as get_law, preset
from jaxscale.runs import RunSet, RunSetError, load as load_runs, read as read_runs

__version__ = "0.1.0"
