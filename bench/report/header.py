"""The facts a reader needs before any number: data sets, epochs, fixed settings, energy
settings, bench commit, build time, and which run records were used or left out (and why).

The build time is `SOURCE_DATE_EPOCH` when set (the reproducible-builds convention: two builds
of the same records then give byte-identical pages), else the current UTC time.
"""

from __future__ import annotations

import dataclasses
import os
import time

import pandas as pd

from bench import schema
from bench.report.load import ENERGY_KEYS, NOT_GROUPING, Records

# Shown on lines of their own, not among the fixed settings.
OWN_LINES = ("dataset", "epochs") + ENERGY_KEYS
# Keys that change what a run keeps or shows, never a number in the report.
BOOKKEEPING = ("wandb_system_metrics", "wandb_model_artifacts", "checkpoint", "record",
               "progress_bar")
LIBRARIES = ("torch", "lightning", "spikingjelly", "wandb", "optuna")


def build_time() -> str:
    stamp = os.environ.get("SOURCE_DATE_EPOCH")
    seconds = int(stamp) if stamp and stamp.strip().isdigit() else int(time.time())
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(seconds))


def header_lines(records: Records, done: pd.DataFrame, keys: list[str]) -> list[str]:
    """One bullet per fact, about the completed runs the tables use."""
    return [f"Data set(s): {_values(done, 'dataset')}.",
            f"Epochs: {_values(done, 'epochs')} (configured); completed: "
            f"{_values(done, schema.EPOCHS_COMPLETED)}.",
            f"Grouped by (varies across the runs): {', '.join(keys) or 'nothing'}.",
            f"Fixed settings (the same in every run used): {fixed_settings(records, done, keys)}.",
            f"Energy settings: {_values(done, 'energy_settings', sep='; ')}.",
            f"bench commit: {_commits(done)}; libraries: {library_versions(done)}; report built "
            f"{build_time()}.",
            runs_line(records)]


def _values(done: pd.DataFrame, col: str, sep: str = ", ") -> str:
    """'digits' or 'cifar10 (4 runs), digits (2 runs)'; 'not recorded' when absent."""
    if col not in done.columns or done[col].dropna().empty:
        return "not recorded"
    counts = done[col].dropna().map(_plain).value_counts(sort=False)
    if len(counts) == 1:
        return str(counts.index[0])
    return sep.join(f"{v} ({n} run{'s' if n != 1 else ''})" for v, n in sorted(counts.items()))


def _plain(v) -> str:
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)


def fixed_settings(records: Records, done: pd.DataFrame, keys: list[str]) -> str:
    """key=value for every config key with one value across the runs used that acts on them:
    a data set's own keys only for runs on it, an architecture's options (ResNet's stem,
    shortcut) only for architectures that have them, neuron keys only for spiking runs."""
    idle = inert_keys(done)
    out = []
    for key in records.config_keys:
        if key in keys or key in NOT_GROUPING or key in OWN_LINES or key not in done.columns \
                or key in idle:
            continue
        values = done[key].map(lambda v: "null" if v is None or v != v else _plain(v))
        if values.nunique() == 1 and len(values):
            value = values.iloc[0]
            if key == "lr" and value == "null":  # the optimizer's default, as the run used it
                value = _default_lr(done)
            out.append(f"{key}={value}")
    return ", ".join(out) or "none"


def inert_keys(done: pd.DataFrame) -> set[str]:
    """Config keys that act on none of the runs (the registries say which keys apply)."""
    from bench.config import ARCH_OPTIONS
    from bench.neurons.settings import NeuronSettings
    from bench.registry import ARCHITECTURES, DATASETS

    idle = set(BOOKKEEPING)
    datasets = [str(d) for d in done.get("dataset", pd.Series(dtype=object)).dropna().unique()]
    if "fake" in datasets and "fake_like" in done.columns:
        datasets += [str(d) for d in done.loc[done["dataset"] == "fake", "fake_like"].unique()]
    every = {k for d in DATASETS.names() for k in DATASETS.meta(d, "reads", ())}
    read = {k for d in datasets for k in DATASETS.meta(d, "reads", ())}
    idle |= every - read
    archs = [str(a) for a in done.get("arch", pd.Series(dtype=object)).dropna().unique()]
    options = {k for a in archs for k in ARCHITECTURES.meta(a, "options", {}) or {}}
    idle |= set(ARCH_OPTIONS) - options
    if archs and not any(ARCHITECTURES.meta(a, "spiking") for a in archs):
        idle |= {f.name for f in dataclasses.fields(NeuronSettings)} | {"T", "backend"}
    return idle


def _default_lr(done: pd.DataFrame) -> str:
    from bench.config import RunConfig

    optimizer = str(done["optimizer"].iloc[0]) if "optimizer" in done.columns else "sgd"
    return f"{RunConfig(optimizer=optimizer).resolved_lr():g} (the {optimizer} default)"


def library_versions(done: pd.DataFrame) -> str:
    """'torch 2.5.1, lightning 2.4.0, ...' from the runs' config.json `versions` (the run row's
    column, load.read_run); a library whose version differs between runs lists each with its
    run count."""
    seen: dict[str, dict[str, int]] = {}
    for versions in done.get(schema.VERSIONS, pd.Series(dtype=object)):
        versions = versions if isinstance(versions, dict) else {}
        for lib in LIBRARIES:
            if lib in versions:
                seen.setdefault(lib, {}).setdefault(str(versions[lib]), 0)
                seen[lib][str(versions[lib])] += 1
    if not seen:
        return "not recorded"
    return ", ".join(f"{lib} " + (next(iter(v)) if len(v) == 1 else " / ".join(
        f"{ver} ({n} runs)" for ver, n in sorted(v.items()))) for lib, v in seen.items())


def _commits(done: pd.DataFrame) -> str:
    if "git_commit" not in done.columns or done["git_commit"].dropna().empty:
        return "not recorded (runs made outside a git checkout)"
    commits = done["git_commit"].fillna("not recorded").astype(str)
    counts = commits.value_counts(sort=False)
    if len(counts) == 1:
        return f"{counts.index[0][:12]} (all runs used)"
    return "several: " + ", ".join(f"{c[:12]} ({n} runs)" for c, n in sorted(counts.items()))


def runs_line(records: Records) -> str:
    """Used vs excluded records, naming the ones still running when the report was built."""
    runs = records.runs
    used = int((runs[schema.STATUS] == schema.COMPLETED).sum())
    left = runs[runs[schema.STATUS] != schema.COMPLETED]
    text = f"Runs: {used} used (completed) of {len(runs)} run records"
    if left.empty:
        return text + "; none excluded."
    counts = left[schema.STATUS].value_counts(sort=False)
    text += "; excluded: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    running = records.still_running()
    if len(running):
        text += (f". Still running when this report was built (numbers will change once they "
                 f"finish): {', '.join(sorted(running['uid']))}")
    return text + "."
