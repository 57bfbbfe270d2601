"""What one trial does: its params, its run config, bench.run.execute, its metric, how it ended."""

from __future__ import annotations

import csv
import gc
import math
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from bench.errors import BenchError, one_line
from bench.record import write_failure_summary
from bench.schema import METRICS_FILE
from bench.sweep.attrs import replicate_values, set_headline
from bench.sweep.spec import SUMMARY_METRICS, SweepSpec


class MetricMissing(ValueError):
    """The sweep's metric is missing or not finite in a finished run's record."""


# Errors that are a result of the trial's settings, not a bug in bench: the trial fails with
# its one-line error and no traceback. Any other exception is a bug: its full traceback goes to
# the worker's stderr, the trial's user attr "traceback" and summary.json's "traceback".
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (
    BenchError,  # a bad value in the trial's grid point (config validation, a missing data set)
    FloatingPointError,  # the loss went non-finite (bench.module): these settings diverge
    MemoryError,  # these settings (batch size, model) do not fit in host memory
    MetricMissing,  # the run ended without the sweep's metric, e.g. it never validated
)
# torch.cuda.OutOfMemoryError (these settings do not fit on the GPU), matched by name so that
# the sweep's parent process, which never trains, need not import torch
EXPECTED_BY_NAME = ("OutOfMemoryError",)
# a record's error after its worker was stopped mid-trial (bench.sweep.workers, Lightning)
INTERRUPT_ERRORS = ("interrupted", "TrialInterrupted", "RunInterrupted", "SIGTERMException",
                    "disk full")


@dataclass(frozen=True)
class Outcome:
    """How a trial ended; `stopped`: why it was stopped (re-queued, not failed)."""

    state: TrialState
    value: float | list[float] | None = None  # a list: one per objective (bench.objectives)
    error: str | None = None  # one line
    traceback: str | None = None  # a bug's only
    stopped: str | None = None


def expected(exc: BaseException) -> bool:
    """A trial error that is a result of its settings (EXPECTED_ERRORS), not a bug."""
    return isinstance(exc, EXPECTED_ERRORS) or type(exc).__name__ in EXPECTED_BY_NAME


def interrupted_error(error: Any) -> bool:
    """A record's error that says the trial was stopped, not that it failed."""
    return isinstance(error, str) and error.startswith(INTERRUPT_ERRORS)


# ---- the trial's work -----------------------------------------------------------------------

def make_sampler(spec: SweepSpec, trial_number: int) -> optuna.samplers.BaseSampler:
    """Seeded by trial number, so K processes never draw the same points (grid trials are
    all enqueued with fixed params: the sampler is unused; a re-run keeps its params)."""
    if spec.method == "bayes":
        # constant_liar: running trials count as bad guesses, so parallel workers spread out
        return optuna.samplers.TPESampler(seed=trial_number, constant_liar=True)
    return optuna.samplers.RandomSampler(seed=trial_number)


def suggest(trial: optuna.Trial, spec: SweepSpec) -> dict[str, Any]:
    """The trial's swept values: enqueued grid points come back as given, others are sampled."""
    out = {}
    for name, dist in spec.distributions().items():
        if isinstance(dist, CategoricalDistribution):
            out[name] = trial.suggest_categorical(name, dist.choices)
        elif isinstance(dist, IntDistribution):
            out[name] = trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
        else:
            assert isinstance(dist, FloatDistribution)
            out[name] = trial.suggest_float(name, dist.low, dist.high, step=dist.step,
                                            log=dist.log)
    return {**out, **replicate_values(spec, trial.user_attrs)}


def trial_layers(spec: SweepSpec, params: dict[str, Any], results: str,
                 run_id: str) -> list[dict[str, Any]]:
    """Config layers of a trial: fixed values < sampled params < the sweep's own keys."""
    own: dict[str, Any] = {"study": spec.name, "results": str(results), "run_id": run_id}
    if spec.project and "project" not in spec.fixed and "project" not in params:
        own["project"] = spec.project
    defaults = {"progress_bar": False}  # K workers' progress bars would interleave
    return [defaults, spec.fixed, params, own]


def objective(trial: optuna.Trial, spec: SweepSpec, params: dict[str, Any], results: str,
              run_id: str) -> float | list[float]:
    from bench.config import build_config
    from bench.record import run_dir
    from bench.run import execute
    from bench.sweep.progress import TrialReporter

    cfg = build_config(*trial_layers(spec, params, results, run_id))
    # intermediate values and live progress every epoch; pruning only with early_terminate
    # a multi-objective trial reports no intermediate value (Optuna allows none)
    reporter = TrialReporter(trial, None if spec.objectives else spec.monitor(),
                             shown=spec.monitor() or "val/acc", prune=bool(spec.early_terminate))
    try:  # a re-queued trial's folder exists: it continues from its last checkpoint; a
        # completed one keeps best.ckpt only (last.ckpt is for resuming: twice the disk)
        summary = execute(cfg, trial=trial.number, callbacks=[reporter],
                          resume=run_dir(cfg).exists(), keep_last=False)
    finally:  # completed, pruned or failed: the dashboard gets the run's numbers
        set_headline(trial, run_dir(cfg))
    if spec.objectives:
        return [metric_value(m, summary, run_dir(cfg)) for m in spec.metric_names]
    return metric_value(spec.metric, summary, run_dir(cfg))


def metric_value(name: str, summary: dict[str, Any], run_dir: Path) -> float:
    """A summary.json scalar, or the last value of a metrics.csv column (e.g. val/acc)."""
    value: Any = None
    try:
        if name in SUMMARY_METRICS:
            value = summary.get(name)
        else:
            value = None
            with open(Path(run_dir) / METRICS_FILE, newline="") as f:
                for row in csv.DictReader(f):
                    if row.get(name) not in (None, ""):
                        value = float(row[name])
        if value is not None and math.isfinite(float(value)):
            return float(value)
    except (ValueError, TypeError, csv.Error):
        pass
    raise MetricMissing(f"metric '{name}' is {str(value)[:40]} in the run record")


# ---- how it ended ---------------------------------------------------------------------------

def evaluate(trial: optuna.Trial, spec: SweepSpec, results: str, run_dir: Path) -> Outcome:
    """Run the objective; whatever it raises becomes the trial's outcome (a stop, a failure
    of its settings, or a bug) instead of ending the worker."""
    params: dict[str, Any] = {}
    try:
        params = suggest(trial, spec)
        value = objective(trial, spec, params, results, run_dir.name)
        return Outcome(TrialState.COMPLETE, value=value)
    except optuna.TrialPruned:
        return Outcome(TrialState.PRUNED)
    except BaseException as exc:  # noqa: BLE001 - the trial fails (or stops), the sweep goes on
        return _failed(exc, spec, trial.number, params, run_dir)
    finally:
        _free_memory()


def _failed(exc: BaseException, spec: SweepSpec, number: int, params: dict[str, Any],
            run_dir: Path) -> Outcome:
    """Called while `exc` is being handled (a bare raise re-raises it)."""
    from bench.stopping import disk_full, stop_requested

    if disk_full(exc, run_dir):  # checkpoints included (torch.save's RuntimeError)
        return Outcome(TrialState.FAIL, stopped="disk full")
    if stop_requested() or interrupted_error(one_line(exc)):
        return Outcome(TrialState.FAIL, stopped=f"interrupted ({stop_requested() or 'SIGTERM'})")
    if not isinstance(exc, Exception):
        raise  # SystemExit or KeyboardInterrupt that nobody asked for
    error = one_line(exc)
    trace = None if expected(exc) else traceback.format_exc()
    if trace is not None:  # a bug, not a bad setting: show where
        print(f"trial {number}: {trace}", file=sys.stderr, flush=True)
    failure_record(run_dir, spec, number, params, error, trace)
    return Outcome(TrialState.FAIL, error=error, traceback=trace)


def failure_record(run_dir: Path, spec: SweepSpec, number: int, params: dict[str, Any],
                   error: str, trace: str | None = None) -> None:
    """A trial that failed before its run started still leaves summary.json (reports see it);
    a bug's traceback is kept beside the error (execute's own record has only the one line)."""
    write_failure_summary(run_dir, study=spec.name, trial=number, config={**spec.fixed, **params},
                          error=error, traceback=trace)


def _free_memory() -> None:
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()  # after a CUDA OOM the next trial starts clean
