"""`bench eval`: a trained model measured again without training, into an eval record.

The checkpoint's own config rebuilds the trained network; `--set` may change anything that does
not change that network (energy model and counting, probes, batch size, batch limits, hardware,
gradient-only estimator settings), never a key of `bench.config.NETWORK_KEYS`. The record is
`<run folder>/evals/<eval_id>/`: config.json, summary.json (a run's summary fields, measured on
the chosen split, plus `eval_of`, `eval_id`, `checkpoint`, `split`, `sets`), layers.csv (the
split's probe rows) and the offline W&B run (job_type "eval").
"""

from __future__ import annotations

import secrets
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L

from bench import schema
from bench.checkpoint import BEST, LAST
from bench.config import NETWORK_KEYS, RunConfig, parse_sets, record_layer
from bench.errors import BenchError
from bench.record import RunRecord, check_writable
from bench.run import build_probes, lightning_warnings, make_trainer, readable
from bench.stopping import EXIT_CODES, disk_full, interrupted, signals_stop_the_run

IDENTITY_KEYS = ("study", "run_id", "results")  # an eval is recorded beside the run it measures
SPLITS = ("test", "val")


def resolve_target(target: str | Path) -> tuple[Path, Path]:
    """(run folder, checkpoint file) of a run folder (best.ckpt, else last.ckpt) or a .ckpt."""
    path = Path(target)
    if path.is_dir():
        for name in (BEST, LAST):
            if (path / name).is_file():
                return path, path / name
        raise BenchError(f"{path}: no {BEST} or {LAST} in this folder (the run kept no "
                         f"checkpoint: checkpoint=none, or it stopped before its first epoch ended)")
    if path.is_file() and path.suffix == ".ckpt":
        return path.parent, path
    raise BenchError(f"{path}: not a run folder or a .ckpt file")


EVAL_HINT = "evaluate another checkpoint of the run (best.ckpt or last.ckpt), or re-train it"


def load_trained(ckpt: Path):
    """(SpikingClassifier with the checkpoint's weights, epochs it was trained); every check
    (file, weights, the run folder's config.json) before anything is loaded into the model."""
    from bench.checkpoint import check_weights, config_diff, read_checkpoint, saved_config
    from bench.module import SpikingClassifier

    # weights_only inside: a checkpoint given on the command line executes no pickled code
    state = read_checkpoint(ckpt, EVAL_HINT)
    hp = state["hyper_parameters"]
    if (ckpt.parent / schema.CONFIG_FILE).is_file():  # a foreign .ckpt dropped in a run folder
        diff = config_diff(hp["config"], saved_config(ckpt.parent),
                           names=(*NETWORK_KEYS, "run_id"))
        if diff:
            raise BenchError(f"{ckpt} is not the checkpoint of the run in its folder: "
                             f"{'; '.join(diff[:4])}; copy it out of that folder to evaluate "
                             "it on its own")
    config = record_layer(hp["config"], str(ckpt))  # its plugins only if passed again
    try:
        module = SpikingClassifier(config, hp["num_classes"], hp["in_channels"])
    except Exception as exc:  # noqa: BLE001 - a config this version can't build
        raise BenchError(f"{ckpt}: not a readable bench checkpoint (its config: "
                         f"{type(exc).__name__}: {exc})") from None
    check_weights(module, state["state_dict"], ckpt, EVAL_HINT)
    module.load_state_dict(state["state_dict"])
    return module, int(state.get("epoch", -1)) + 1


def eval_config(trained: RunConfig, sets: dict[str, Any]) -> RunConfig:
    """The trained config with `sets` applied; BenchError if one would change the network."""
    cfg = trained.replace(**sets)
    for key in (*NETWORK_KEYS, *IDENTITY_KEYS):
        before, after = getattr(trained, key), getattr(cfg, key)
        if before != after:
            what = "defines the trained network" if key in NETWORK_KEYS else "names the trained run"
            raise BenchError(f"config key '{key}' {what} ({before!r}); "
                             f"eval can't change it to {after!r}")
    return cfg


def evaluate(target: str | Path, sets: dict[str, Any] | None = None, split: str = "test") -> dict:
    """Measure a trained model on `split`; write and return the eval record's summary."""
    from bench.data import build_datamodule, check_available
    from bench.run import PROBE_FIELDS, ending, summarize
    from bench.tracking import finish, log_layers, make_logger, run_folder

    if split not in SPLITS:
        raise BenchError(f"--split: {split!r} is not one of {', '.join(SPLITS)}")
    run, ckpt = resolve_target(target)
    module, epochs = load_trained(ckpt)
    sets = dict(sets or {})
    cfg = eval_config(module.cfg, sets)
    check_available(cfg)
    check_writable(run / schema.EVALS_DIR)  # e.g. a read-only run folder: one line, nothing run
    module.cfg = cfg
    print(f"eval of {ckpt}", flush=True)
    eval_id = f"{split}-{ckpt.stem}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
    which = ckpt.stem if ckpt.parent == run and ckpt.name in (BEST, LAST) else str(ckpt)
    identity = {schema.EVAL_OF: cfg.run_id, schema.EVAL_ID: eval_id, schema.CHECKPOINT: which,
                schema.SPLIT: split, schema.SETS: sets}
    record = RunRecord(cfg, directory=run / schema.EVALS_DIR / eval_id)
    probes = build_probes(cfg)
    probes.pop("grads", None)  # nothing is trained
    started, trainer, logger = time.perf_counter(), None, None
    try:
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        datamodule = build_datamodule(cfg)
        logger = make_logger(cfg, record.dir, job_type="eval", name=f"{cfg.run_id}/{eval_id}",
                             config={**cfg.to_dict(), **identity})
        trainer = make_trainer(cfg, record.dir, list(probes.values()), logger,
                               enable_checkpointing=False)
        with lightning_warnings():
            run_split = trainer.test if split == "test" else trainer.validate
            run_split(module, datamodule=datamodule, verbose=False)
        summary = {**summarize(trainer, probes, None, started, split),
                   schema.EPOCHS_COMPLETED: epochs}
        table = probes["spikes"].last.get(split) if "spikes" in probes else None
        if table:
            record.add_layers(split, epochs, table)
            if logger is not None:
                log_layers(logger, record.dir)
        summary[schema.WANDB_DIR] = run_folder(logger)
        final = record.write_summary({schema.STATUS: schema.COMPLETED, schema.ERROR: None,
                                      **identity, **summary})
        finish(logger, final)
        return final
    except BaseException as exc:
        status, error = ending(exc)
        summary = {**PROBE_FIELDS, schema.WANDB_DIR: None}
        try:  # never hides exc: a broken W&B run, a still-full disk
            summary = summarize(trainer, probes, None, started, split)
            summary[schema.WANDB_DIR] = finish(logger, {**summary, schema.STATUS: status})
        except Exception:  # noqa: BLE001
            summary[schema.WANDB_DIR] = None
        try:
            record.write_summary({schema.STATUS: status, schema.ERROR: error, **identity,
                                  **summary})
        except Exception:  # noqa: BLE001
            pass
        raise


def main_eval(target: str, sets: list[str] | None = None, split: str = "test") -> int:
    """`bench eval`: 0 done, 1 failed, 2 a refusal or a full disk (one line), 130/143 stopped by
    SIGINT/SIGTERM (one line; the same command measures it again)."""
    from tabulate import tabulate

    from bench.run import ending

    try:
        with signals_stop_the_run():
            summary = evaluate(target, parse_sets(sets), split)
    except BenchError:
        raise
    except BaseException as exc:  # noqa: BLE001 - an eval that ended early is one line
        status, error = ending(exc)
        if status == schema.INTERRUPTED:
            full = disk_full(exc)
            print(f"bench eval: {'error: ' if full else ''}{error}; "
                  f"{'free space, then ' if full else ''}run the same command again",
                  file=sys.stderr, flush=True)
            return 2 if full else EXIT_CODES.get(interrupted(exc) or "", 130)
        if not isinstance(exc, Exception):
            raise
        print(f"bench eval: eval failed: {error}", file=sys.stderr)
        return 1
    acc = schema.TEST_ACC if split == "test" else schema.VAL_ACC
    rows = [(k, readable(summary[k])) for k in (acc, schema.SPIKES_TOTAL_PER_IMAGE,
                                                schema.ENERGY_UJ_PER_IMAGE, schema.CHECKPOINT)]
    rows.append(("record", str(Path(target if Path(target).is_dir() else Path(target).parent)
                               / schema.EVALS_DIR / summary[schema.EVAL_ID])))
    if summary.get(schema.WANDB_DIR):
        rows.append(("wandb (offline: `wandb sync DIR`)", summary[schema.WANDB_DIR]))
    print(tabulate(rows, headers=["", f"eval of {summary[schema.EVAL_OF]}"],
                   disable_numparse=True))
    return 0
