"""Plugins: a user's own architecture, estimator, neuron, data set or energy model, registered by
importing their code before a config is checked.

Three ways in, all equivalent:
- a Python file: `bench run --plugin my.py`, or the config / sweep key `plugins: [my.py]`;
- an installed package declaring an entry point in the group `bench.plugins` (loaded at start);
- any module imported before bench runs (a notebook, `python -c "import mine; ..."`).
A sweep hands its worker processes every plugin module and file the parent has, so trials see
the same registries (`worker_plugins` / `load_worker_plugins`).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
import traceback
from importlib.metadata import entry_points
from pathlib import Path
from typing import Iterable

from bench.errors import BenchError
from bench.registry import registered_modules

ENTRY_POINT_GROUP = "bench.plugins"
_files: dict[str, str] = {}  # resolved path -> module name of plugin files loaded
_entry_points_loaded = False


def load_plugins(paths: Iterable[str] = ()) -> None:
    """Installed entry points once per process, then each plugin file (once per path)."""
    load_entry_points()
    for path in paths:
        load_file(path)


def load_file(path: str) -> str:
    """Import a plugin file as a module of its own; its module name. BenchError (one line,
    naming the file and line) for a missing file or an error while it runs."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise BenchError(f"plugin file not found: {path}")
    key = str(file.resolve())
    if key in _files:
        return _files[key]
    # a name of its own per path: two plugin files called model.py do not collide
    name = f"bench_plugin_{file.stem}_{hashlib.sha1(key.encode()).hexdigest()[:8]}"
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise BenchError(f"plugin {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # the user's code: say where, in one line
        del sys.modules[name]
        raise BenchError(f"plugin {path}{_where(exc, key)}: {type(exc).__name__}: {exc}") from None
    _files[key] = name
    return name


def _where(exc: BaseException, file: str) -> str:
    if isinstance(exc, SyntaxError) and exc.lineno:
        return f", line {exc.lineno}"
    lines = [f.lineno for f in traceback.extract_tb(exc.__traceback__) if f.filename == file]
    return f", line {lines[-1]}" if lines else ""


def load_entry_points() -> None:
    """Import every module an installed package declares under `bench.plugins`."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()
        except Exception as exc:
            raise BenchError(f"plugin entry point {ep.name} ({ep.value}): "
                             f"{type(exc).__name__}: {exc}") from None


def worker_plugins() -> dict[str, list[str]]:
    """What a sweep worker must import to see this process's registries: plugin files, and
    the other (non-bench) modules that registered entries."""
    own = set(_files.values())
    modules = registered_modules()
    imported = sorted(m for m in modules if m not in own and m != "__main__"
                      and m.split(".")[0] != "bench")
    return {"files": sorted(_files), "modules": imported}


def load_worker_plugins(plugins: dict[str, list[str]]) -> None:
    """In a worker process: what `worker_plugins()` listed in the parent."""
    load_plugins(plugins.get("files", []))
    for name in plugins.get("modules", []):
        try:
            importlib.import_module(name)
        except Exception as exc:
            raise BenchError(f"plugin module {name} (registered in the sweep's process) cannot "
                             f"be imported by its workers: {type(exc).__name__}: {exc}") from None
