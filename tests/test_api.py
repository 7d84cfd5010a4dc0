"""The public API: one name per function, every export resolves, no CLI code in the library."""

import importlib

import pytest

import jaxscale


def test_every_export_resolves():
  for name in jaxscale.__all__:
    assert getattr(jaxscale, name) is not None, name
  assert jaxscale.precision is importlib.import_module("jaxscale.fitting").precision
  assert jaxscale.load_runs is importlib.import_module("jaxscale.runs").load


def test_one_name_per_function():
  # The clashes the review found: a top-level `predict` beside FitResult.predict, read_runs beside load_runs.
  for gone in ("predict", "read_runs"):
    with pytest.raises(AttributeError):
      getattr(jaxscale, gone)
  batch = importlib.import_module("jaxscale.batch")
  for alias in ("bootstrap_sharded", "local_devices", "batch_sharding", "run_by"):
    assert not hasattr(batch, alias), alias


def test_the_cli_and_the_sweep_do_not_import_each_other():
  import ast
  from pathlib import Path

  package = Path(jaxscale.__file__).parent

  def imported(module):
    # A package's modules, but not its __main__: `python -m jaxscale.sweep` is a program.
    files = sorted(set((package / module).glob("*.py")) - {package / module / "__main__.py"})
    names = set()
    for path in files or [package / f"{module}.py"]:
      tree = ast.parse(path.read_text())
      for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
          names |= {f"{node.module}.{alias.name}" for alias in node.names} | {node.module}
        elif isinstance(node, ast.Import):
          names |= {alias.name for alias in node.names}
      names |= {s.value for s in ast.walk(tree) if isinstance(s, ast.Constant) and s.value == "jaxscale.sweep"}
    return names

  assert "jaxscale.sweep" not in imported("cli")
  sweep_imports = imported("sweep")
  assert "jaxscale.sweep.runner" in sweep_imports  # the package's modules were read
  assert not any(name.startswith(("jaxscale.cli", "jaxscale.commands")) for name in sweep_imports)
  assert "jaxscale.commands" not in imported("batch")


def test_importing_the_sweep_loads_only_the_standard_library():
  import subprocess
  import sys

  # The CLI imports jaxscale.sweep to build its parser: it must not pull in the numerical stack.
  code = ("import sys, jaxscale.sweep, jaxscale.commands.sweep, jaxscale.cli;"
          " jaxscale.cli.build_parser();"
          " print(sorted(m for m in ('jax', 'numpy', 'pandas', 'rich', 'flax', 'orbax') if m in sys.modules))")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  assert out.stdout.strip() == "[]"


def test_strict_dtype_promotion_is_on_here():
  import jax.numpy as jnp

  with pytest.raises(Exception, match="strict"):
    jnp.zeros(2, jnp.int32) + jnp.zeros(2, jnp.float32)


def test_exports_do_not_shadow_submodules():
  import importlib
  import pkgutil

  import jaxscale

  submodules = {info.name for info in pkgutil.iter_modules(jaxscale.__path__)}
  assert not submodules & set(jaxscale._EXPORTS), "an export would hide a submodule"
  from jaxscale import train  # the module, whatever was imported before

  assert train is importlib.import_module("jaxscale.train") and callable(jaxscale.train_model)


def test_compilation_cache_is_pruned_to_its_limit(tmp_path):
  import os

  from jaxscale import compilation_cache

  for i in range(10):
    path = tmp_path / f"entry{i}"
    path.write_bytes(b"x" * 1000)
    os.utime(path, (i, i))  # entry0 is the oldest
  assert compilation_cache.prune(str(tmp_path), 20_000) == 0
  assert compilation_cache.prune(str(tmp_path), 8_000) == 4000  # down to 3/4 of the limit
  assert sorted(p.name for p in tmp_path.iterdir()) == [f"entry{i}" for i in range(4, 10)]
