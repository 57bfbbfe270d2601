"""What a trial carries in Optuna besides its searched params: replicate values, the run's
headline numbers (user attributes, for optuna-dashboard's plots) and its live progress.

A replicate key (`bench.replicates`, e.g. seed) is not an Optuna parameter: each grid point is
enqueued once per replicate value with that value as a user attribute, so parameter importance
and the sampler see configurations, and `bench status` averages the replicates.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from bench import schema
from bench.record import read_summary
from bench.sweep.spec import SweepSpec

PROGRESS = schema.PROGRESS  # user attr: {trial, epoch, epochs, metric, value, elapsed_s}
# study user attr: the configuration with the best MEAN metric over its replicates
BEST_ATTR = schema.BEST_ATTR
# summary.json fields copied into every finished trial's user attributes
HEADLINE = (schema.TEST_ACC, schema.VAL_ACC, schema.SPIKES_TOTAL_PER_IMAGE,
            schema.ENERGY_UJ_PER_IMAGE, schema.DURATION_S, schema.EPOCHS_COMPLETED,
            schema.WANDB_RUN, schema.WANDB_DIR)


def enqueue_args(spec: SweepSpec, slot: int, point: dict[str, Any]) -> tuple[dict, dict]:
    """(params, user_attrs) to enqueue one slot: replicate keys go to the user attributes."""
    params = {k: v for k, v in point.items() if k not in spec.replicates}
    attrs = {schema.SLOT: slot, **{k: v for k, v in point.items() if k in spec.replicates}}
    return params, attrs


def replicate_values(spec: SweepSpec, user_attrs: dict[str, Any]) -> dict[str, Any]:
    """The replicate keys' values of a trial (e.g. {'seed': 1})."""
    return {k: user_attrs[k] for k in spec.replicates if k in user_attrs}


def param_value(t: FrozenTrial, key: str) -> Any:
    """A swept key's value for a trial: a searched param (sampled or enqueued) or a replicate."""
    if key in t.params:
        return t.params[key]
    fixed = t.system_attrs.get("fixed_params") or {}
    if key in fixed:
        return fixed[key]
    return t.user_attrs.get(key)


def headline(run_dir: str | Path) -> dict[str, Any]:
    """The run's headline numbers from its summary.json (missing or unfinished: {})."""
    summary = read_summary(run_dir)
    out = {}
    for key in HEADLINE:
        value = summary.get(key)
        if isinstance(value, float) and not math.isfinite(value):
            value = None
        if value is not None:
            out[key] = value
    return out


def set_headline(trial, run_dir: str | Path) -> None:
    """Copy the headline numbers into the trial's user attributes (optuna.Trial)."""
    for key, value in headline(run_dir).items():
        trial.set_user_attr(key, value)


def name_metric(study, spec: SweepSpec) -> None:
    """The objective's name in optuna-dashboard (not "Objective 0")."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # set_metric_names is marked experimental
        study.set_metric_names(spec.metric_names)


def superseded(trials: list[FrozenTrial]) -> set[int]:
    """Numbers of interrupted trials that were re-enqueued (their retry carries the history)."""
    out: set[int] = set()
    for t in trials:
        out.update(t.system_attrs.get("retry_history", []))
    return out


def configurations(trials: list[FrozenTrial], spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Completed trials grouped by configuration (the swept keys but the replicate ones), each
    {params, mean, std (ddof 1; None for one run), n, trials}, best mean first (ties: the
    configuration first run). `spec` is the resolved sweep (SPEC_ATTR). A single-objective
    study only: a multi-objective one has a Pareto front, not a best."""
    if (spec.get("bench") or {}).get("objectives"):
        return []
    reps = set((spec.get("bench") or {}).get("replicates") or [])
    keys = [k for k, body in (spec.get("parameters") or {}).items()
            if "value" not in body and k not in reps]
    gone = superseded(trials)
    groups: dict[str, dict[str, Any]] = {}
    for t in trials:
        if t.state != TrialState.COMPLETE or t.number in gone or t.values is None:
            continue
        params = {k: param_value(t, k) for k in keys}
        group = groups.setdefault(repr(sorted(params.items(), key=lambda kv: kv[0])),
                                  {"params": params, "values": [], "trials": []})
        group["values"].append(float(t.values[0]))
        group["trials"].append(t.number)
    out = [{"params": g["params"], "mean": statistics.fmean(g["values"]),
            "std": statistics.stdev(g["values"]) if len(g["values"]) > 1 else None,
            "n": len(g["values"]), "trials": sorted(g["trials"])} for g in groups.values()]
    sign = 1.0 if (spec.get("metric") or {}).get("goal", "minimize") == "minimize" else -1.0
    return sorted(out, key=lambda c: (sign * c["mean"], c["trials"][0]))


def best_configuration(trials: list[FrozenTrial], spec: dict[str, Any]) -> dict[str, Any] | None:
    """The configuration with the best mean over its replicates (not one lucky seed)."""
    found = configurations(trials, spec)
    return found[0] if found else None


def record_best(study, spec: dict[str, Any]) -> None:
    """Keep the best configuration by mean in the study's user attributes (BEST_ATTR), for
    optuna-dashboard and any reader of the study: optuna's own best_trial is one trial."""
    best = best_configuration(study.get_trials(deepcopy=False), spec)
    if best is not None:
        study.set_user_attr(BEST_ATTR, best)
