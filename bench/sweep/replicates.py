"""Replicates (`bench.replicates`, e.g. seed): one row per configuration in `bench status`,
the sweep metric's mean and sample standard deviation over its completed replicates."""

from __future__ import annotations

from typing import Any

import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from bench.sweep.attrs import param_value
from bench.sweep.status import swept_names, visible


def replicate_keys(spec: dict[str, Any]) -> list[str]:
    return list((spec.get("bench") or {}).get("replicates") or [])


def replicate_frame(trials: list[FrozenTrial], spec: dict[str, Any]) -> pd.DataFrame:
    """Configuration keys, n, <metric> mean, <metric> std (ddof 1; empty for n = 1), the
    replicate values seen; best mean first."""
    metric = spec.get("metric", {}).get("name", "value")
    reps = replicate_keys(spec)
    keys = [k for k in swept_names(spec) if k not in reps]
    rows = [{**{k: param_value(t, k) for k in keys}, "value": t.value,
             **{r: param_value(t, r) for r in reps}}
            for t in visible(trials) if t.state == TrialState.COMPLETE and t.value is not None]
    columns = [*keys, "n", f"{metric} mean", f"{metric} std", *reps]
    if not rows:
        return pd.DataFrame(columns=columns)
    df = pd.DataFrame(rows)
    by = keys or (lambda _: "all")
    out = df.groupby(by, sort=False, dropna=False).agg(
        n=("value", "size"), mean=("value", "mean"), std=("value", "std"),
        **{r: (r, lambda v: ",".join(str(x) for x in sorted(v))) for r in reps})
    out = out.reset_index(drop=not keys).rename(
        columns={"mean": f"{metric} mean", "std": f"{metric} std"})
    ascending = spec.get("metric", {}).get("goal", "minimize") == "minimize"
    out = out.sort_values(f"{metric} mean", ascending=ascending, kind="stable")
    return out[columns].reset_index(drop=True)


def replicate_table(trials: list[FrozenTrial], spec: dict[str, Any]) -> str:
    df = replicate_frame(trials, spec)
    if df.empty:
        return "(no completed replicates yet)"
    df = df.astype(object).where(df.notna(), None)
    return df.to_markdown(index=False, floatfmt=".4g", missingval="")
