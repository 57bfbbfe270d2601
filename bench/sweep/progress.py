"""Live sweep progress, through the study's storage (so it works for any worker, any machine).

Worker side: `TrialReporter`, a Lightning callback, reports the monitored validation metric to
Optuna after every validation epoch (intermediate values, with or without a pruner; it prunes
only when the sweep has early_terminate) and writes the trial's `progress` user attribute.

Parent side: `LiveProgress` prints one line per trial-epoch event and one per finished trial,
plain lines (no carriage returns), readable in a terminal, with several workers, and in a log:

    [avalanche] trial 3 (arch=sew_resnet18 seed=1) epoch 5/200 val/acc=0.912 | 1/6 done, ETA 1h02m
"""

from __future__ import annotations

import math
import time
from typing import Any, TextIO

import lightning as L
import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from bench import schema
from bench.sweep.attrs import PROGRESS, param_value
from bench.sweep.status import Progress, counts, swept_names, visible


class TrialReporter(L.Callback):
    """After each validation epoch: trial.report(metric, epoch), the progress attribute, and
    pruning when `prune` (a NopPruner never prunes, but the sweep says whether to ask)."""

    def __init__(self, trial: optuna.Trial, monitor: str | None, shown: str,
                 prune: bool) -> None:
        self.trial, self.monitor, self.shown, self.prune = trial, monitor, shown, prune
        self._t0 = time.monotonic()

    def on_train_start(self, trainer, pl_module) -> None:
        self._t0 = time.monotonic()

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        epoch = trainer.current_epoch
        metrics = trainer.callback_metrics
        value = _finite(metrics.get(self.monitor)) if self.monitor else None
        if value is not None:
            self.trial.report(value, epoch)
        self.trial.set_user_attr(PROGRESS, {
            "trial": self.trial.number, "epoch": epoch + 1, "epochs": trainer.max_epochs,
            "metric": self.shown, "value": _finite(metrics.get(self.shown)),
            "elapsed_s": round(time.monotonic() - self._t0, 1)})
        if self.prune and value is not None and self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {epoch} ({self.monitor}={value:.4g})")


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def progress_of(t: FrozenTrial) -> dict[str, Any] | None:
    """The trial's own progress attribute (a re-queued trial carries its predecessor's)."""
    p = t.user_attrs.get(PROGRESS)
    return p if isinstance(p, dict) and p.get("trial") == t.number else None


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def eta_seconds(trials: list[FrozenTrial], spec: dict[str, Any], workers: int) -> float | None:
    """Seconds until the queue is done: epochs left x mean seconds per epoch so far / workers.

    Epochs left: the rest of each running trial plus every waiting trial's epochs. Seconds per
    epoch: over finished trials (their duration_s / epochs_completed) and running ones (elapsed
    training time / epochs done). None before the first epoch is measured."""
    seconds = epochs_done = epochs_left = 0.0
    running = waiting = 0
    for t in trials:
        total = _epochs(t, spec)
        if t.state == TrialState.WAITING:
            epochs_left += total
            waiting += 1
        elif t.state == TrialState.RUNNING:
            running += 1
            p = progress_of(t)
            if p:
                seconds += p.get("elapsed_s") or 0.0
                epochs_done += p["epoch"]
                epochs_left += max(0, int(p.get("epochs") or total) - p["epoch"])
            else:
                epochs_left += total
        elif t.state.is_finished() and t.user_attrs.get(schema.EPOCHS_COMPLETED):
            seconds += t.user_attrs.get(schema.DURATION_S) or 0.0  # from its summary: set_headline
            epochs_done += t.user_attrs[schema.EPOCHS_COMPLETED]
    if epochs_done == 0:
        return None
    parallel = max(1, min(workers, running + waiting))
    return epochs_left * seconds / epochs_done / parallel


def _epochs(t: FrozenTrial, spec: dict[str, Any]) -> int:
    value = param_value(t, "epochs")
    if value is None:
        value = (spec.get("parameters", {}).get("epochs") or {}).get("value")
    if value is None:
        from bench.config import RunConfig

        value = RunConfig().epochs
    return int(value)


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class LiveProgress(Progress):
    """Progress (a line per finished trial) plus a line per epoch of each running trial."""

    def __init__(self, storage: BaseStorage, sid: int, spec: dict[str, Any], workers: int = 1,
                 out: TextIO | None = None) -> None:
        super().__init__(storage, sid, spec, out)
        self.workers = workers
        self.shown: dict[int, int] = {}  # trial number -> last epoch printed

    def epoch_line(self, t: FrozenTrial, p: dict[str, Any], trials: list[FrozenTrial]) -> str:
        params = " ".join(f"{k}={_fmt(param_value(t, k))}" for k in swept_names(self.spec))
        value = "-" if p.get("value") is None else _fmt(p["value"])
        c = counts(trials)
        total = len(visible(trials))
        tail = f"{c['done']}/{total} done" + (f", {c['failed']} failed" if c["failed"] else "")
        eta = eta_seconds(visible(trials), self.spec, self.workers)
        tail += f", ETA {duration(eta)}" if eta is not None else ""
        where = f" ({params})" if params else ""
        return (f"[{self.spec.get('name', 'sweep')}] trial {t.number}{where} "
                f"epoch {p['epoch']}/{p['epochs']} {p['metric']}={value} | {tail}")

    def poll(self) -> None:
        trials = self.trials()
        for t in sorted(trials, key=lambda t: t.number):
            # a trial that ended since the last poll still gets its last epoch's line
            live = t.state == TrialState.RUNNING or (t.state.is_finished()
                                                     and t.number not in self.seen)
            p = progress_of(t) if live else None
            if p and p["epoch"] > self.shown.get(t.number, 0):
                # epochs that ended between two polls get their line too, from the value the
                # trial reported for them (a slow or busy parent must not drop a line)
                for epoch in range(self.shown.get(t.number, 0) + 1, p["epoch"]):
                    if epoch - 1 in t.intermediate_values:
                        missed = {**p, "epoch": epoch, "value": t.intermediate_values[epoch - 1]}
                        print(self.epoch_line(t, missed, trials), file=self.out, flush=True)
                self.shown[t.number] = p["epoch"]
                print(self.epoch_line(t, p, trials), file=self.out, flush=True)
        super().poll()

