"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Every file jaxscale writes (fit JSON, run sets, a sweep's CSVs and plan) goes through
:func:`write_text` / :func:`writing`: the data go to a temporary file beside the target, are
flushed to disk, and are renamed over the target. A failed write (a full disk, a signal)
removes the temporary file, so no ``*.tmp`` litter is left, and the target is untouched.
A target that exists and is not a regular file (``/dev/full``, a folder, a socket) is
refused rather than replaced by the rename.

Example:
  >>> from jaxscale import atomic
  >>> atomic.write_text("/tmp/example.txt", "hello\\n")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
from typing import IO, Any, Iterator

TEMPORARY_SUFFIX = ".tmp"


def check_target(path: str | os.PathLike, flag: str = "") -> str:
  """``path`` as a string, if a regular file may be written there; else a ValueError naming ``flag``.

  The folder must exist and ``path`` must be absent or a regular file (a symlink to one is fine).
  """
  path = os.fspath(path)
  label = f"{flag} {path!r}" if flag else repr(path)
  if not path:
    raise ValueError(f"{flag or 'output path'}: empty path; give a file name")
  if os.path.exists(path):
    mode = os.stat(path).st_mode
    if stat.S_ISDIR(mode):
      raise ValueError(f"{label} is a folder; give a file path inside it")
    if not stat.S_ISREG(mode):
      raise ValueError(f"{label} exists and is not a regular file (a device, pipe or socket); write to a file path")
  folder = os.path.dirname(os.path.abspath(path))
  if not os.path.isdir(folder):
    raise ValueError(f"{label}: the folder {folder!r} does not exist; create it first")
  return path


@contextlib.contextmanager
def writing(path: str | os.PathLike, mode: str = "w", *, flag: str = "") -> Iterator[IO]:
  """Opens a temporary file that replaces ``path`` when the block ends without an error."""
  path = check_target(path, flag)
  target = os.path.realpath(path)  # through a symlink: replace the file, keep the link
  folder = os.path.dirname(target)
  fd, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=TEMPORARY_SUFFIX, dir=folder)
  try:
    with os.fdopen(fd, mode) as handle:
      yield handle
      handle.flush()
      os.fsync(handle.fileno())
    if os.path.exists(target):
      with contextlib.suppress(OSError):
        os.chmod(temporary, stat.S_IMODE(os.stat(target).st_mode))
    else:
      with contextlib.suppress(OSError):
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
    os.replace(temporary, target)
  except BaseException:
    with contextlib.suppress(OSError):
      os.unlink(temporary)
    raise
  _fsync_folder(folder)


def write_text(path: str | os.PathLike, text: str, *, flag: str = "") -> None:
  """Writes ``text`` to ``path`` atomically (see the module docstring)."""
  with writing(path, "w", flag=flag) as handle:
    handle.write(text)


def json_safe(data: Any) -> Any:
  """``data`` with NumPy scalars and arrays as Python values and NaN or infinities as None.

  Strict JSON parsers reject ``NaN`` and ``Infinity``; a missing value reads as ``null``.
  """
  import math

  import numpy as np

  if isinstance(data, dict):
    return {str(k): json_safe(v) for k, v in data.items()}
  if isinstance(data, (list, tuple)):
    return [json_safe(v) for v in data]
  if isinstance(data, np.ndarray):
    return json_safe(data.tolist())
  if isinstance(data, (bool, np.bool_)):
    return bool(data)
  if isinstance(data, (int, np.integer)):
    return int(data)
  if isinstance(data, (float, np.floating)):
    value = float(data)
    return value if math.isfinite(value) else None
  return data


def write_json(path: str | os.PathLike, data, *, flag: str = "") -> None:
  """Writes ``data`` as strict JSON (:func:`json_safe`: NaN and infinities as null) atomically."""
  import json

  write_text(path, json.dumps(json_safe(data), indent=2, allow_nan=False) + "\n", flag=flag)


def write_bytes(path: str | os.PathLike, data: bytes, *, flag: str = "") -> None:
  with writing(path, "wb", flag=flag) as handle:
    handle.write(data)


def remove_litter(folder: str | os.PathLike) -> list[str]:
  """Deletes temporary files a killed writer left in ``folder`` (not recursive); returns their names."""
  removed = []
  try:
    names = os.listdir(folder)
  except OSError:
    return removed
  for name in names:
    ours = name.startswith(".") and name.endswith(TEMPORARY_SUFFIX)
    earlier = re.fullmatch(r"(runs\.csv|curves\.csv|plan\.json)\.tmp-\d+", name)  # before this module
    if ours or earlier:
      with contextlib.suppress(OSError):
        os.unlink(os.path.join(folder, name))
        removed.append(name)
  return removed


def _fsync_folder(folder: str) -> None:
  try:
    fd = os.open(folder, os.O_RDONLY)
  except OSError:
    return
  try:
    os.fsync(fd)
  except OSError:
    pass
  finally:
    os.close(fd)
