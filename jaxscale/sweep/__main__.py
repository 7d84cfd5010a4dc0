"""``python -m jaxscale.sweep``: a sweep worker, or the ``sweep`` subcommand alone.

``python -m jaxscale.sweep _worker OUT_DIR ...`` is how :func:`jaxscale.sweep.run_sweep`
starts its worker processes (:func:`jaxscale.sweep.workers.worker_main`);
``python -m jaxscale.sweep sweep --preset quick --out DIR`` runs the subcommand
without loading the rest of the CLI.
"""

import sys

from jaxscale import errors

if sys.argv[1:2] == ["_worker"]:
  from jaxscale.sweep import workers

  sys.exit(workers.worker_main(sys.argv[2:]))

from jaxscale.commands import sweep as sweep_command

errors.exit_with(sweep_command.main(sys.argv[1:]))
