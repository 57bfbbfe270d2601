"""Plugins: a user's own architecture, estimator, neuron, data set or energy model, registered by
importing their code before a config is checked.

Three ways in, all equivalent:
- a Python file: `bench run --plugin my.py`, or the config / sweep key `plugins: [my.py]`;
- an installed package declaring an entry point in the group `bench.plugins` (loaded at start);
- any module imported before bench runs (a notebook, `python -c "import mine; ..."`).
A sweep hands its worker processes every plugin module and file the parent has, so trials see
the same registries (`worker_plugins` / `load_worker_plugins`).

A file named by a record (a run's config.json, a checkpoint) is never imported because the record
says so: `bench eval` and `bench run --resume` use it only when it is passed again (`--plugin`,
loaded first) or the record is trusted (`--trust-plugins`); see `recorded`. Evaluating someone
else's checkpoint must not run code it names.
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
_trust_records = False  # --trust-plugins: a record's plugin files may be imported as named


def trust_records(trust: bool = True) -> None:
    """Let (or stop) `recorded` hand a record's plugin files over as they are named."""
    global _trust_records
    _trust_records = trust


def recorded(paths: Iterable[str], source: str) -> tuple[str, ...]:
    """The plugin files a record names, as this process may load them: each one passed again
    (a file loaded here with the same path, or else the same file name: the one passed is
    used), or all as named when records are trusted; otherwise BenchError naming them."""
    paths = tuple(paths)
    if _trust_records:
        return paths
    by_name = {Path(key).name: key for key in _files}
    out, missing = [], []
    for path in paths:
        key = str(Path(path).expanduser().resolve())
        if key in _files or Path(path).name in by_name:
            out.append(path if key in _files else by_name[Path(path).name])
        else:
            missing.append(path)
    if missing:
        raise BenchError(f"{source} records plugin files {', '.join(missing)}: a recorded "
                         "plugin runs only when passed again (--plugin FILE, one per file) or "
                         "with --trust-plugins (a record must not run code of its own accord)")
    return tuple(dict.fromkeys(out))


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
    except BaseException as exc:  # the user's code: say where, in one line
        del sys.modules[name]
        if isinstance(exc, SystemExit):  # not bench's exit code to give
            raise BenchError(f"plugin {path}{_where(exc, key)}: called sys.exit({exc.code!r})"
                             ) from None
        if not isinstance(exc, Exception):  # Ctrl-C (or raised as one): the command stops
            exc.where = f" while importing plugin {path}"  # type: ignore[attr-defined]
            raise
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
        except SystemExit as exc:
            raise BenchError(f"plugin entry point {ep.name} ({ep.value}): called "
                             f"sys.exit({exc.code!r})") from None
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
