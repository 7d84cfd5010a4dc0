"""jaxscale's benchmarks: each script compares jaxscale with a reference; ``python -m benchmarks`` runs them all."""
