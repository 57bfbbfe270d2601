"""The facts a reader needs before any number: data sets, epochs, fixed settings, energy
settings, bench commit, build time, and which run records were used or left out (and why).

The build time is `SOURCE_DATE_EPOCH` when set (the reproducible-builds convention: two builds
of the same records then give byte-identical pages), else the current UTC time.
"""

from __future__ import annotations

import os
import time

import pandas as pd

from bench import schema
from bench.report.load import ENERGY_KEYS, NOT_GROUPING, Records

# Shown on lines of their own, not among the fixed settings.
OWN_LINES = ("dataset", "epochs") + ENERGY_KEYS


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
            f"bench commit: {_commits(done)}; report built {build_time()}.",
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
    """key=value for every config key with one value across the runs used."""
    out = []
    for key in records.config_keys:
        if key in keys or key in NOT_GROUPING or key in OWN_LINES or key not in done.columns:
            continue
        values = done[key].map(lambda v: "null" if v is None or v != v else _plain(v))
        if values.nunique() == 1 and len(values):
            out.append(f"{key}={values.iloc[0]}")
    return ", ".join(out) or "none"


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
