"""The trial table of a sweep (pandas to_markdown) and the live progress lines.

Both read only the study's storage, so `bench status` works from any machine that can reach it.
"""

from __future__ import annotations

import math
import sys
from datetime import datetime
from typing import Any, TextIO

import pandas as pd
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from bench import schema
from bench.sweep.attrs import best_configuration, param_value, superseded


def swept_names(spec: dict[str, Any]) -> list[str]:
    """Parameters of the resolved sweep that vary (`value` ones are fixed)."""
    return [k for k, body in spec.get("parameters", {}).items() if "value" not in body]


def visible(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """All trials but interrupted ones that were re-run (their retry stands for them)."""
    gone = superseded(trials)
    return [t for t in trials if t.number not in gone]


def objectives(spec: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, goal) of each value a trial returns: bench.objectives, or the sweep's metric."""
    listed = (spec.get("bench") or {}).get("objectives") or []
    if listed:
        return [(o["name"], o.get("goal", "minimize")) for o in listed]
    metric = spec.get("metric", {})
    return [(metric.get("name", "value"), metric.get("goal", "minimize"))]


def values_of(t: FrozenTrial, n: int) -> list[float | None]:
    """A trial's objective values (None each before it completed)."""
    return list(t.values) if t.values is not None and len(t.values) == n else [None] * n


def counts(trials: list[FrozenTrial]) -> dict[str, int]:
    shown = visible(trials)
    n = {s: sum(t.state == s for t in shown) for s in TrialState}
    return {"done": n[TrialState.COMPLETE] + n[TrialState.PRUNED],
            "running": n[TrialState.RUNNING], "failed": n[TrialState.FAIL],
            "left": n[TrialState.WAITING]}


def count_text(c: dict[str, int]) -> str:
    return f"done {c['done']} | running {c['running']} | failed {c['failed']} | left {c['left']}"


def seconds(t: FrozenTrial) -> float | None:
    if t.datetime_start is None:
        return None
    end = t.datetime_complete or datetime.now()
    return round((end - t.datetime_start).total_seconds(), 1)


def frame(trials: list[FrozenTrial], spec: dict[str, Any]) -> pd.DataFrame:
    """One row per trial, best first by the sweep's metric; failures and waiting ones last."""
    goals = objectives(spec)
    metrics = [m for m, _ in goals]
    names = swept_names(spec)
    rows = []
    for t in visible(trials):
        row: dict[str, Any] = {"trial": t.number, "state": t.state.name}
        row.update({k: param_value(t, k) for k in names})
        row.update(zip(metrics, values_of(t, len(metrics))))
        row["seconds"] = seconds(t)
        started = t.state != TrialState.WAITING  # a re-queued trial carries its old attrs
        row["run"] = t.user_attrs.get(schema.RUN_ID) if started else None
        row[schema.ERROR] = (t.user_attrs.get(schema.ERROR) or "") if started else ""
        rows.append(row)
    df = pd.DataFrame(rows, columns=["trial", "state", *names, *metrics, "seconds", "run",
                                     schema.ERROR])
    ascending = goals[0][1] == "minimize"  # by the first objective
    df = df.sort_values([metrics[0], "trial"], ascending=[ascending, True], na_position="last",
                        kind="stable")
    if not df[schema.ERROR].astype(bool).any():
        df = df.drop(columns=schema.ERROR)
    return df.reset_index(drop=True)


def table(trials: list[FrozenTrial], spec: dict[str, Any]) -> str:
    df = frame(trials, spec)
    if df.empty:
        return "(no trials yet)"
    df = df.astype(object).where(df.notna(), None)  # tabulate prints None as missingval
    return df.to_markdown(index=False, floatfmt=".4g", missingval="")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def progress_line(t: FrozenTrial, spec: dict[str, Any], c: dict[str, int]) -> str:
    goals = objectives(spec)
    params = " ".join(f"{k}={_fmt(param_value(t, k))}" for k in swept_names(spec))
    shown = " ".join(f"{m}={'-' if v is None or not math.isfinite(v) else _fmt(v)}"
                     for (m, _), v in zip(goals, values_of(t, len(goals))))
    line = (f"trial {t.number:>4} {t.state.name:<8} {params}  {shown}  "
            f"{_fmt(seconds(t))} s  [{count_text(c)}]")
    error = t.user_attrs.get(schema.ERROR)
    if t.state == TrialState.FAIL and error:
        line += f"  error: {error[:160]}"
    return line


class Progress:
    """Prints one line per trial that finishes after it was made."""

    def __init__(self, storage: BaseStorage, sid: int, spec: dict[str, Any],
                 out: TextIO | None = None) -> None:
        self.storage, self.sid, self.spec = storage, sid, spec
        self.out = out or sys.stdout
        self.seen = {t.number for t in self.trials() if t.state.is_finished()}

    def trials(self) -> list[FrozenTrial]:
        return self.storage.get_all_trials(self.sid, deepcopy=False)

    def poll(self) -> None:
        trials = self.trials()
        gone = superseded(trials)
        new = [t for t in trials if t.state.is_finished() and t.number not in self.seen]
        if not new:
            return
        c = counts(trials)
        for t in sorted(new, key=lambda t: t.datetime_complete or datetime.now()):
            self.seen.add(t.number)
            if t.number not in gone:
                print(progress_line(t, self.spec, c), file=self.out, flush=True)


def best_text(trials: list[FrozenTrial], spec: dict[str, Any]) -> str | None:
    """'best configuration by its mean over 3 replicates: arch=sparse_resnet18, test_acc
    0.9133 ± 0.0115 (n=3, trials 1, 3, 5)'; None before any trial completed."""
    best = best_configuration(trials, spec)
    if best is None:
        return None
    metric = spec.get("metric", {}).get("name", "value")
    params = ", ".join(f"{k}={_fmt(v)}" for k, v in best["params"].items()) or "the one configuration"
    spread = f" ± {best['std']:.4g}" if best["std"] is not None else ""
    runs = "replicate" if best["n"] == 1 else "replicates"
    return (f"best configuration by its mean over {best['n']} {runs}: {params}, {metric} "
            f"{best['mean']:.4g}{spread} (n={best['n']}, trials "
            f"{', '.join(map(str, best['trials']))})")


def front_text(front: list[FrozenTrial], spec: dict[str, Any]) -> str | None:
    """A multi-objective study's Pareto front (optuna's study.best_trials) as a table; None
    for a single-objective study."""
    goals = objectives(spec)
    if len(goals) < 2:
        return None
    if not front:
        return "Pareto front: no completed trial yet"
    names = swept_names(spec)
    rows = [{"trial": t.number, **{k: param_value(t, k) for k in names},
             **dict(zip((f"{m} ({g})" for m, g in goals), t.values))}
            for t in sorted(front, key=lambda t: t.number)]
    df = pd.DataFrame(rows)
    return (f"Pareto front ({len(front)} trial{'s' if len(front) != 1 else ''}, "
            f"study.best_trials):\n{df.to_markdown(index=False, floatfmt='.4g')}")
