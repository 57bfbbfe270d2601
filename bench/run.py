"""One instrumented training run: config -> data + model -> Lightning fit/test + probes -> record.

`execute` is what `bench run` and every sweep trial call; it never needs a W&B server.
"""

from __future__ import annotations

import secrets
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import lightning as L

from bench import schema
from bench.config import RunConfig, build_config, load_yaml, parse_sets, plugin_layer
from bench.errors import BenchError
from bench.record import RunRecord, run_dir

SUMMARY_TABLE_KEYS = (schema.TEST_ACC, schema.SPIKES_TOTAL_PER_IMAGE,
                      schema.NONZERO_TOTAL_PER_IMAGE, schema.ENERGY_UJ_PER_IMAGE, schema.DURATION_S)


def new_run_id(cfg: RunConfig) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return f"{cfg.arch}-{cfg.tag()}-s{cfg.seed}-{stamp}-{secrets.token_hex(2)}"


def _limit(value: float) -> float | int:
    return value if value <= 1.0 else int(value)


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


def summarize(trainer: L.Trainer | None, probes: dict[str, L.Callback], writer: RecordWriter | None,
              started: float, split: str = "test") -> dict[str, Any]:
    """The measured fields of summary.json (README, "The run record"); spikes and energy are
    those of `split` (a run's test set; an eval's chosen split)."""
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
    }
    spikes = probes.get("spikes")
    table = spikes.last.get(split, {}) if spikes is not None else {}
    # the probes' per-probe numbers and their sums (a layers.csv column is a summary field)
    for per_probe, total in ((schema.SPIKES_PER_IMAGE, schema.SPIKES_TOTAL_PER_IMAGE),
                             (schema.NONZERO_PER_IMAGE, schema.NONZERO_TOTAL_PER_IMAGE)):
        out[per_probe] = {p: s[per_probe] for p, s in table.items()}
        out[total] = sum(out[per_probe].values()) if table else None
    out[schema.MAX_SPIKE_PER_PROBE] = {p: s[schema.MAX_SPIKE] for p, s in table.items()}
    energy = probes.get("energy")
    breakdown = energy.last.get(split) if energy is not None else None
    out[schema.ENERGY_UJ_PER_IMAGE] = breakdown[schema.ENERGY_TOTAL_UJ] if breakdown else None
    out[schema.ENERGY] = breakdown
    grads = probes.get("grads")
    out[schema.GRAD_NORM_PER_BLOCK] = dict(grads.epoch_means) if grads is not None else {}
    return out


def execute(cfg: RunConfig, *, trial: int | None = None, callbacks: Sequence[L.Callback] = (),
            resume: bool = False) -> dict:
    """Train and test one run, writing its record; returns summary.json's content.

    resume=True: if the run folder holds last.ckpt and its summary is not "completed", carry on
    from that checkpoint in the same folder (bench/checkpoint.py); otherwise start afresh.
    On failure the record's summary gets status "failed" (or "pruned") and the one-line error,
    and the exception is re-raised for the caller (CLI or sweep) to handle.
    """
    from lightning.pytorch.callbacks import Checkpoint

    from bench.checkpoint import (LAST, AtomicCheckpointIO, RngState, checkpoint_callbacks,
                                  checkpoint_files, clear_checkpoints, resumable)
    from bench.data import build_datamodule, check_available
    from bench.module import SpikingClassifier
    from bench import tracking

    if not cfg.run_id:
        cfg = cfg.replace(run_id=new_run_id(cfg))
    started = time.perf_counter()
    check_available(cfg)  # a missing data set is a one-line error before anything is written
    ckpt = run_dir(cfg) / LAST if resume and resumable(run_dir(cfg)) else None
    if ckpt is None:
        clear_checkpoints(run_dir(cfg))  # a fresh start never inherits an older run's weights
    record = RunRecord(cfg, trial, resume=ckpt is not None)
    probes, writer, trainer, logger = build_probes(cfg), None, None, None
    try:
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        datamodule = build_datamodule(cfg)
        module = SpikingClassifier(cfg, datamodule.num_classes, datamodule.in_channels)
        writer = RecordWriter(record, probes)
        logger = tracking.make_logger(
            cfg, record.dir, trial, resume_id=tracking.wandb_run_id(record.dir) if ckpt else None)
        saving = checkpoint_callbacks(cfg, record.dir)
        trainer = L.Trainer(
            accelerator=cfg.accelerator, devices=1, precision=cfg.precision, max_epochs=cfg.epochs,
            limit_train_batches=_limit(cfg.limit_train_batches),
            limit_val_batches=_limit(cfg.limit_val_batches),
            limit_test_batches=_limit(cfg.limit_test_batches),
            callbacks=[*probes.values(), *callbacks, *tracking.callbacks(logger), writer,
                       RngState(), *saving],
            logger=logger or False, plugins=[AtomicCheckpointIO()],
            enable_checkpointing=any(isinstance(c, Checkpoint) for c in [*saving, *callbacks]),
            enable_progress_bar=cfg.progress_bar,
            enable_model_summary=False, num_sanity_val_steps=0, log_every_n_steps=10,
            deterministic="warn" if cfg.deterministic else False,
            default_root_dir=str(record.dir),
        )
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", ".*does not have many workers.*")
            warnings.filterwarnings("ignore", ".*log_every_n_steps.*")
            # the run folder holds the record (and, resuming, its checkpoints) by design
            warnings.filterwarnings("ignore", ".*exists and is not empty.*")
            # weights_only: resuming a folder executes no pickled code (its state is plain data)
            trainer.fit(module, datamodule=datamodule, ckpt_path=str(ckpt) if ckpt else None,
                        weights_only=True)
            trainer.test(module, datamodule=datamodule, verbose=False)
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
    except BaseException as exc:
        status = schema.PRUNED if type(exc).__name__ == "TrialPruned" else schema.FAILED
        error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")
        summary = summarize(trainer, probes, writer, started)
        summary[schema.CHECKPOINTS] = checkpoint_files(record.dir)
        try:  # a broken W&B run must not hide the real error
            summary.update(tracking.run_fields(logger))
            final = record.write_summary({schema.STATUS: status, schema.ERROR: error, **summary})
            if logger is not None:  # a pruned or failed run's epochs so far
                tracking.log_layers(logger, record.dir)
            tracking.finish(logger, final, record.dir)
        except Exception:  # noqa: BLE001
            record.write_summary({schema.STATUS: status, schema.ERROR: error, **summary})
        raise


def _print_config(cfg: RunConfig) -> None:
    items = [f"{k}={v}" for k, v in cfg.to_dict().items()]
    print("config: " + " ".join(items), flush=True)


def _print_summary(summary: dict, path: Path) -> None:
    from tabulate import tabulate

    rows = [(k, summary.get(k)) for k in SUMMARY_TABLE_KEYS]
    rows.append(("record", str(path)))
    if summary.get(schema.WANDB_DIR):
        rows.append(("wandb (offline: `wandb sync DIR`)", summary[schema.WANDB_DIR]))
    print(tabulate(rows, headers=["", summary[schema.CONFIG]["arch"]], floatfmt=".4g"))


def main_run(config_file: str | None = None, sets: list[str] | None = None,
             results: str | None = None, resume: str | None = None,
             plugins: list[str] | None = None) -> int:
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
    _print_config(cfg)
    try:
        summary = execute(cfg, trial=trial, resume=bool(resume))
    except BenchError:
        raise
    except Exception as exc:  # noqa: BLE001 - a failed run is one line plus its record
        print(f"bench run: run failed: {type(exc).__name__}: {exc} (record: {run_dir(cfg)})",
              file=sys.stderr)
        return 1
    _print_summary(summary, run_dir(cfg))
    return 0
