"""One instrumented training run: config -> data + model -> Lightning fit/test + probes -> record.

`execute` is what `bench run` and every sweep trial call; it never needs a W&B server.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

import lightning as L

from bench import schema
from bench.config import RunConfig, build_config, load_yaml, parse_sets, plugin_layer
from bench.errors import BenchError, one_line
from bench.record import (RunLock, RunRecord, check_writable, read_summary, remove_stale_temps,
                          run_dir)
from bench.stopping import (EXIT_CODES, disk_full, interrupted, signals_stop_the_run,
                            stop_callback)

SUMMARY_TABLE_KEYS = (schema.TEST_ACC, schema.SPIKES_TOTAL_PER_IMAGE,
                      schema.NONZERO_TOTAL_PER_IMAGE, schema.ENERGY_UJ_PER_IMAGE, schema.DURATION_S)


def new_run_id(cfg: RunConfig) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return f"{cfg.arch}-{cfg.tag()}-s{cfg.seed}-{stamp}-{secrets.token_hex(2)}"


class RecordWriter(L.Callback):
    """Copies what the probes measured into the run record at each epoch end (listed last).

    Its checkpointed state is the number of rows each CSV held at the checkpoint: loading it
    (resume) cuts the CSVs back to those rows, so no row is lost or written twice.
    """

    def __init__(self, record: RunRecord, probes: dict[str, L.Callback]) -> None:
        self.record, self.probes = record, probes
        self.epochs_completed = 0
        self.last_row: dict[str, Any] = {}  # last epoch's metrics (test resets callback_metrics)
        self._grads_written = 0
        self._t0 = time.perf_counter()

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._t0 = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        m = trainer.callback_metrics
        row: dict[str, Any] = {schema.EPOCH: trainer.current_epoch,
                               schema.STEP: trainer.global_step,
                               schema.TIME_S: round(time.perf_counter() - self._t0, 3)}
        for key in schema.EPOCH_METRICS:
            if key in m:
                row[key] = float(m[key])
        self.record.add_metrics(row)
        self.last_row = row
        spikes = self.probes.get("spikes")
        if spikes is not None and "val" in spikes.last:
            self.record.add_layers("val", trainer.current_epoch, spikes.last["val"])
        grads = self.probes.get("grads")
        if grads is not None:
            self.record.add_grads(grads.rows[self._grads_written:])
            self._grads_written = len(grads.rows)
        self.epochs_completed = trainer.current_epoch + 1

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        spikes = self.probes.get("spikes")
        if spikes is not None and "test" in spikes.last:
            # test rows carry the number of trained epochs
            self.record.add_layers("test", self.epochs_completed, spikes.last["test"])

    def state_dict(self) -> dict[str, Any]:
        return {"rows": dict(self.record.rows), "epochs_completed": self.epochs_completed,
                "last_row": dict(self.last_row)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.record.truncate(state_dict["rows"])
        self.epochs_completed = int(state_dict["epochs_completed"])
        self.last_row = dict(state_dict.get("last_row") or {})


def build_probes(cfg: RunConfig) -> dict[str, L.Callback]:
    if not cfg.probes:
        return {}
    from bench.energy.probe import EnergyProbe
    from bench.probes.gradients import GradNormProbe
    from bench.probes.spikes import SpikeProbe

    return {"spikes": SpikeProbe(), "grads": GradNormProbe(every=cfg.grad_every),
            "energy": EnergyProbe(cfg.energy_settings())}


# summary.json's probe fields when a probe is off (probes=false), in the record's order
PROBE_FIELDS: dict[str, Any] = {
    schema.SPIKES_PER_IMAGE: {}, schema.SPIKES_TOTAL_PER_IMAGE: None,
    schema.NONZERO_PER_IMAGE: {}, schema.NONZERO_TOTAL_PER_IMAGE: None,
    schema.MAX_SPIKE_PER_PROBE: {}, schema.ENERGY_UJ_PER_IMAGE: None, schema.ENERGY: None,
    schema.GRAD_NORM_PER_BLOCK: {}}


def summarize(trainer: L.Trainer | None, probes: dict[str, L.Callback], writer: RecordWriter | None,
              started: float, split: str = "test") -> dict[str, Any]:
    """The measured fields of summary.json (README, "The run record"); spikes and energy are
    those of `split` (a run's test set; an eval's chosen split), from each probe's summary()."""
    m = trainer.callback_metrics if trainer is not None else {}
    test_acc, test_loss = schema.logged("test", schema.ACC), schema.logged("test", schema.LOSS)
    val_acc = schema.logged("val", schema.ACC)
    # a run resumed after its last epoch trains nothing: its val/acc is the checkpoint's row
    val = m[val_acc] if val_acc in m else (writer.last_row.get(val_acc) if writer else None)
    out: dict[str, Any] = {
        schema.TEST_ACC: float(m[test_acc]) if test_acc in m else None,
        schema.TEST_LOSS: float(m[test_loss]) if test_loss in m else None,
        schema.VAL_ACC: float(val) if val is not None else None,
        schema.EPOCHS_COMPLETED: writer.epochs_completed if writer else 0,
        schema.DURATION_S: round(time.perf_counter() - started, 3),
        **PROBE_FIELDS,
    }
    for probe in probes.values():
        out.update(probe.summary(split))
    return out


# ---- one run: its folder opened, trained, recorded ------------------------------------------

def execute(cfg: RunConfig, *, trial: int | None = None, callbacks: Sequence[L.Callback] = (),
            resume: bool = False, keep_last: bool = True) -> dict:
    """Train and test one run, writing its record; returns summary.json's content.

    resume=True: if the run folder holds last.ckpt and its summary is not "completed", carry on
    from that checkpoint in the same folder (bench/checkpoint.py); otherwise start afresh.
    keep_last=False: a completed run that kept best.ckpt drops last.ckpt (a sweep trial: only
    a running trial needs it). On failure the record's summary gets its status (see `ending`)
    and the one-line error, and the exception is re-raised for the caller (CLI or sweep).
    """
    if not cfg.run_id:
        cfg = cfg.replace(run_id=new_run_id(cfg))
    with open_run(cfg, resume) as ckpt:
        return train(cfg, ckpt, trial=trial, callbacks=callbacks, keep_last=keep_last)


@contextlib.contextmanager
def open_run(cfg: RunConfig, resume: bool) -> Iterator[Path | None]:
    """The run folder, checked, locked and cleaned, for as long as the run lasts; yields the
    checkpoint to resume from (None: a fresh start). Every refusal is a one-line BenchError
    before anything of the record is written: data missing, folder read-only or in use,
    a damaged or foreign last.ckpt."""
    from bench.checkpoint import LAST, check_resume, clear_checkpoints, resumable
    from bench.data import check_available

    check_available(cfg)
    folder = run_dir(cfg)
    check_writable(folder)
    with RunLock(folder):
        remove_stale_temps(folder)  # a kill -9 in the middle of an atomic write
        if resume and resumable(folder):
            check_resume(folder)
            yield folder / LAST
        else:
            clear_checkpoints(folder)  # a fresh start never inherits an older run's weights
            yield None


def train(cfg: RunConfig, ckpt: Path | None, *, trial: int | None = None,
          callbacks: Sequence[L.Callback] = (), keep_last: bool = True) -> dict:
    """The run in a folder that open_run holds: fit (from `ckpt`), test, record."""
    from bench.data import build_datamodule
    from bench.module import SpikingClassifier
    from bench import tracking

    started = time.perf_counter()
    record = RunRecord(cfg, trial, resume=ckpt is not None)
    probes = build_probes(cfg)
    writer = RecordWriter(record, probes)
    trainer, logger = None, None
    try:
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        datamodule = build_datamodule(cfg)
        module = SpikingClassifier(cfg, datamodule.num_classes, datamodule.in_channels)
        logger = tracking.make_logger(
            cfg, record.dir, trial, resume_id=tracking.wandb_run_id(record.dir) if ckpt else None)
        listed = [*probes.values(), *callbacks,
                  *tracking.callbacks(logger, probes.get("spikes")), writer]
        trainer = build_trainer(cfg, record.dir, listed, logger)
        fit_and_test(trainer, module, datamodule, ckpt)
        if not keep_last:
            drop_last(record.dir)
        return record_completed(record, trainer, probes, writer, logger, started)
    except BaseException as exc:
        record_failure(record, exc, trainer, probes, writer, logger, started)
        raise


class _NoTips(logging.Filter):
    """Lightning's Trainer advertises Lightning's cloud products on the console ("💡 Tip: ...
    try installing litlogger"): a line about its offers, not about this run."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


def no_lightning_tips() -> None:
    """Before a Trainer is built (`make_trainer`)."""
    log = logging.getLogger("lightning.pytorch.utilities.rank_zero")  # rank_zero_info's
    if not any(isinstance(f, _NoTips) for f in log.filters):
        log.addFilter(_NoTips())


def make_trainer(cfg: RunConfig, folder: Path, callbacks: list[L.Callback], logger: Any,
                 **stage: Any) -> L.Trainer:
    """A Trainer of `bench run` or `bench eval` (`stage`: what only training sets): the stop
    callback first, so a signal ends the stage at the next batch."""
    no_lightning_tips()
    return L.Trainer(
        accelerator=cfg.accelerator, devices=1, precision=cfg.precision,
        limit_val_batches=cfg.limit_val_batches, limit_test_batches=cfg.limit_test_batches,
        callbacks=[stop_callback(), *callbacks], logger=logger or False,
        enable_progress_bar=cfg.progress_bar, enable_model_summary=False,
        deterministic="warn" if cfg.deterministic else False, default_root_dir=str(folder),
        **stage)


def build_trainer(cfg: RunConfig, folder: Path, callbacks: list[L.Callback],
                  logger: Any) -> L.Trainer:
    """The run's Trainer; the run-folder callbacks (RNG state, checkpoints) come after the
    caller's, so a checkpoint covers every row written before it."""
    from lightning.pytorch.callbacks import Checkpoint

    from bench.checkpoint import AtomicCheckpointIO, RngState, checkpoint_callbacks

    saving = checkpoint_callbacks(cfg, folder)
    return make_trainer(
        cfg, folder, [*callbacks, RngState(), *saving], logger,
        max_epochs=cfg.epochs, limit_train_batches=cfg.limit_train_batches,
        plugins=[AtomicCheckpointIO()],
        enable_checkpointing=any(isinstance(c, Checkpoint) for c in [*saving, *callbacks]),
        # every step: the scheduler steps every batch, so the lr and loss curves get a point per
        # step (Lightning's LearningRateMonitor logs only on steps that update the logs)
        num_sanity_val_steps=0, log_every_n_steps=1)


@contextlib.contextmanager
def lightning_warnings() -> Iterator[None]:
    """Lightning's warnings that say nothing about a bench run, silenced while it runs."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        warnings.filterwarnings("ignore", ".*log_every_n_steps.*")
        # the run folder holds the record (and, resuming, its checkpoints) by design
        warnings.filterwarnings("ignore", ".*exists and is not empty.*")
        # Lightning's own use of a torch API torch deprecated: nothing the user can act on
        warnings.filterwarnings("ignore", r".*isinstance\(treespec, LeafSpec\).*")
        yield


def fit_and_test(trainer: L.Trainer, module: L.LightningModule, datamodule: Any,
                 ckpt: Path | None) -> None:
    with lightning_warnings():
        # weights_only: resuming a folder executes no pickled code (its state is plain data)
        trainer.fit(module, datamodule=datamodule, ckpt_path=str(ckpt) if ckpt else None,
                    weights_only=True)
        trainer.test(module, datamodule=datamodule, verbose=False)


def drop_last(folder: Path) -> None:
    """A finished run keeps best.ckpt for `bench eval`; last.ckpt (twice its size) was only
    for resuming. A run that kept no best.ckpt keeps its last."""
    from bench.checkpoint import BEST, LAST

    if (folder / BEST).is_file():
        (folder / LAST).unlink(missing_ok=True)


def record_completed(record: RunRecord, trainer: L.Trainer, probes: dict[str, L.Callback],
                     writer: RecordWriter, logger: Any, started: float) -> dict:
    from bench import tracking
    from bench.checkpoint import checkpoint_files

    summary = summarize(trainer, probes, writer, started)
    summary[schema.CHECKPOINTS] = checkpoint_files(record.dir)
    if logger is not None and "spikes" in probes and "test" in probes["spikes"].last:
        tracking.log_test_spikes(logger, probes["spikes"].last["test"])
        tracking.log_layers(logger, record.dir)
    summary.update(tracking.run_fields(logger))
    final = record.write_summary({schema.STATUS: schema.COMPLETED, schema.ERROR: None,
                                  **summary})
    tracking.finish(logger, final, record.dir)  # the final record goes into the artifact
    return final


def ending(exc: BaseException) -> tuple[str, str]:
    """(status, one-line error) of a run that raised `exc`: a signal or a full disk is a stop
    (`interrupted`, it can be resumed), a NaN loss `diverged`, the sweep's pruner `pruned`."""
    from bench.module import Diverged

    signame = interrupted(exc)
    if signame is not None:
        return schema.INTERRUPTED, f"interrupted ({signame})"
    if disk_full(exc):
        where = getattr(exc, "filename", None)
        return schema.INTERRUPTED, "disk full (No space left on device)" + (
            f" writing {where}" if where else "")
    optuna = sys.modules.get("optuna")  # imported by whoever can prune a run
    if optuna is not None and isinstance(exc, optuna.TrialPruned):
        return schema.PRUNED, one_line(exc)
    if isinstance(exc, Diverged):
        return schema.DIVERGED, str(exc)
    return schema.FAILED, one_line(exc)


def record_failure(record: RunRecord, exc: BaseException, trainer: L.Trainer | None,
                   probes: dict[str, L.Callback], writer: RecordWriter, logger: Any,
                   started: float) -> None:
    """The record of a run that did not complete: its status, error and what it measured so
    far. Never raises: a broken W&B run or a still-full disk must not hide `exc`."""
    from bench import tracking
    from bench.checkpoint import checkpoint_files

    status, error = ending(exc)
    fields: dict[str, Any] = {schema.STATUS: status, schema.ERROR: error}
    try:
        fields.update(summarize(trainer, probes, writer, started))
        fields[schema.CHECKPOINTS] = checkpoint_files(record.dir)
        fields.update(tracking.run_fields(logger))
        final = record.write_summary(fields)
        if logger is not None:  # a pruned or failed run's epochs so far
            tracking.log_layers(logger, record.dir)
        tracking.finish(logger, final, record.dir)
    except Exception:  # noqa: BLE001
        try:
            record.write_summary(fields)
        except Exception:  # noqa: BLE001 - e.g. the disk is still full
            pass


def _print_config(cfg: RunConfig) -> None:
    items = [f"{k}={v}" for k, v in cfg.to_dict().items()]
    print("config: " + " ".join(items), flush=True)


def _print_summary(summary: dict, path: Path) -> None:
    from tabulate import tabulate

    # formatted here: tabulate's floatfmt skips a column that also holds the record's paths
    rows = [(k, readable(summary.get(k))) for k in SUMMARY_TABLE_KEYS]
    rows.append(("record", str(path)))
    if summary.get(schema.WANDB_DIR):
        rows.append(("wandb (offline: `wandb sync DIR`)", summary[schema.WANDB_DIR]))
    print(tabulate(rows, headers=["", summary[schema.CONFIG]["arch"]], disable_numparse=True))


def readable(value: Any) -> str:
    """0.9239, 1.913, 64,464: four significant digits, whole numbers from 100 up."""
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.4g}"
    return "n/a" if value is None else str(value)


def main_run(config_file: str | None = None, sets: list[str] | None = None,
             results: str | None = None, resume: str | None = None,
             plugins: list[str] | None = None) -> int:
    """`bench run`: 0 completed, 1 failed or diverged, 2 a refusal or a full disk (one line),
    130/143 stopped by SIGINT/SIGTERM (one line naming `bench run --resume`)."""
    trial = None
    if resume:
        from bench.checkpoint import resume_config

        if config_file or sets or results:  # --plugin: its recorded plugins, passed again
            raise BenchError("--resume continues the run with its own config.json: "
                             "no --config, --set or --results with it")
        cfg, trial = resume_config(resume)
    else:
        layers: list[dict[str, Any]] = []
        if config_file:
            layers.append(load_yaml(config_file))
        layers.append(parse_sets(sets))
        if results:
            layers.append({"results": results})
        cfg = build_config(*layers, plugin_layer(layers, plugins))
    if not cfg.run_id:
        cfg = cfg.replace(run_id=new_run_id(cfg))
    if not resume and run_dir(cfg).exists():  # another run's record (a sweep trial's, ...)
        raise BenchError(f"run folder {run_dir(cfg)} already exists; choose another run_id or "
                         "study (or continue that run with `bench run --resume DIR`)")
    try:
        with signals_stop_the_run(), open_run(cfg, bool(resume)) as ckpt:
            _print_config(cfg)
            summary = train(cfg, ckpt, trial=trial)
    except BenchError:
        raise
    except BaseException as exc:  # noqa: BLE001 - a run that ended early is one line
        return _ended_early(exc, run_dir(cfg))
    _print_summary(summary, run_dir(cfg))
    return 0


def _ended_early(exc: BaseException, folder: Path) -> int:
    """The one line and exit code of a run that did not complete (its record says why)."""
    from bench.checkpoint import LAST

    status, error = ending(exc)
    if status == schema.INTERRUPTED:
        epochs = read_summary(folder).get(schema.EPOCHS_COMPLETED)
        after = f" after {epochs} epoch(s)" if isinstance(epochs, int) else ""
        again = (f"continue with: bench run --resume {folder}" if (folder / LAST).is_file()
                 else f"no checkpoint to resume from (record: {folder}): start it again")
        if disk_full(exc):
            print(f"bench run: error: {error}{after}: free space, then {again}",
                  file=sys.stderr, flush=True)
            return 2
        print(f"bench run: {error}{after}; {again}", file=sys.stderr, flush=True)
        return EXIT_CODES.get(interrupted(exc) or "", 130)
    if not isinstance(exc, Exception):
        raise exc
    what = "diverged" if status == schema.DIVERGED else "failed"
    print(f"bench run: run {what}: {error} (record: {folder})", file=sys.stderr, flush=True)
    return 1
