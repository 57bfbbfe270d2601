"""What a trial carries in Optuna besides its searched params: replicate values, the run's
headline numbers (user attributes, for optuna-dashboard's plots) and its live progress.

A replicate key (`bench.replicates`, e.g. seed) is not an Optuna parameter: each grid point is
enqueued once per replicate value with that value as a user attribute, so parameter importance
and the sampler see configurations, and `bench status` averages the replicates.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from optuna.trial import FrozenTrial

from bench import schema
from bench.record import read_summary
from bench.sweep.spec import SweepSpec

PROGRESS = "progress"  # user attr: {trial, epoch, epochs, metric, value, elapsed_s}
# summary.json fields copied into every finished trial's user attributes
HEADLINE = (schema.TEST_ACC, schema.VAL_ACC, schema.SPIKES_TOTAL_PER_IMAGE,
            schema.ENERGY_UJ_PER_IMAGE, schema.DURATION_S, schema.EPOCHS_COMPLETED,
            schema.WANDB_RUN, schema.WANDB_DIR)


def enqueue_args(spec: SweepSpec, slot: int, point: dict[str, Any]) -> tuple[dict, dict]:
    """(params, user_attrs) to enqueue one slot: replicate keys go to the user attributes."""
    params = {k: v for k, v in point.items() if k not in spec.replicates}
    attrs = {"slot": slot, **{k: v for k, v in point.items() if k in spec.replicates}}
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
        study.set_metric_names([spec.metric])


def superseded(trials: list[FrozenTrial]) -> set[int]:
    """Numbers of interrupted trials that were re-enqueued (their retry carries the history)."""
    out: set[int] = set()
    for t in trials:
        out.update(t.system_attrs.get("retry_history", []))
    return out
