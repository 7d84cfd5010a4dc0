"""The persistent compilation cache of jaxscale's own processes (the CLI and the sweep's workers).

A library must not flip JAX's global configuration on import; a process that is
ours (``jaxscale ...`` or a sweep worker) may, and keeps compiled programs on
disk so a second invocation loads them instead of compiling. This module
imports only the standard library at top level, so the CLI starts fast.

Example:
  >>> from jaxscale import compilation_cache
  >>> compilation_cache.enable()  # doctest: +SKIP
"""

from __future__ import annotations

import os

CACHE_DIR_ENV = "JAXSCALE_CACHE_DIR"
CACHE_MAX_BYTES = 2 * 1024**3


def directory() -> str:
  """``$JAXSCALE_CACHE_DIR``, or ``~/.cache/jaxscale/jax``."""
  return os.environ.get(CACHE_DIR_ENV, os.path.join(os.path.expanduser("~"), ".cache", "jaxscale", "jax"))


def enable() -> None:
  """Keeps compiled programs on disk between invocations (call it only in a process that is ours)."""
  import jax

  cache_dir = directory()
  try:
    os.makedirs(cache_dir, exist_ok=True)
  except OSError:
    return  # a read-only home: run without the cache rather than fail
  jax.config.update("jax_compilation_cache_dir", cache_dir)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  # JAX evicts least recently used entries past this size, so the folder cannot grow
  # without bound (JAXSCALE_CACHE_MAX_BYTES overrides; -1 means no limit).
  jax.config.update("jax_compilation_cache_max_size", int(os.environ.get("JAXSCALE_CACHE_MAX_BYTES", CACHE_MAX_BYTES)))
