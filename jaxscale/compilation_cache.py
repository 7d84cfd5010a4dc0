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
  prune(cache_dir, int(os.environ.get("JAXSCALE_CACHE_MAX_BYTES", CACHE_MAX_BYTES)))


def prune(cache_dir: str, max_bytes: int) -> int:
  """Deletes the least recently written entries until the folder holds at most 3/4 of
  ``max_bytes`` (when it holds more than ``max_bytes``); returns the bytes freed.

  JAX's own size cap (``jax_compilation_cache_max_size``) needs ``filelock`` and, with
  several sweep workers sharing the folder, warns about entries another process just
  evicted; pruning once at start-up keeps the folder bounded without either.
  """
  if max_bytes < 0:
    return 0
  entries = []
  for entry in os.scandir(cache_dir):
    try:
      if entry.is_file():
        info = entry.stat()
        entries.append((info.st_mtime, info.st_size, entry.path))
    except OSError:
      continue
  total = sum(size for _, size, _ in entries)
  if total <= max_bytes:
    return 0
  freed = 0
  for _, size, path in sorted(entries):
    if total - freed <= 0.75 * max_bytes:
      break
    try:
      os.remove(path)
      freed += size
    except OSError:
      pass
  return freed
