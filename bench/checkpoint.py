"""Checkpoints of a run and what resuming one restores.

A run folder keeps `last.ckpt` (full training state, rewritten each epoch: resume from it) and/or
`best.ckpt` (weights of the best epoch by val/acc: measure it with `bench eval`), per the config
key `checkpoint`. Both are Lightning ModelCheckpoints saved at the end of each training epoch,
after RecordWriter has written that epoch's rows (Lightning runs checkpoint callbacks last), so
a checkpoint always covers every row before it: resuming cuts the CSVs back to the row counts the
checkpoint holds and carries on from the next epoch. Lightning restores weights, optimiser,
scheduler and loop state; `RngState` adds the global RNGs and the data module (bench/data) the
training loader's shuffling generator, so a resumed run draws what the uninterrupted run would
have drawn.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from bench import schema
from bench.config import RunConfig
from bench.errors import BenchError
from bench.record import read_summary

LAST, BEST = schema.LAST_CKPT, schema.BEST_CKPT
MONITOR, MODE = schema.logged("val", schema.ACC), "max"


class AtomicCheckpointIO(TorchCheckpointIO):
    """torch.save into a temp file beside the target, fsync, rename: a kill or a full disk never
    leaves a half-written last.ckpt (Lightning's own save goes through a temp file in /tmp,
    which is a copy, not a rename, when /tmp is another file system)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


class _RunFolderCheckpoint(ModelCheckpoint):
    """A checkpoint file of the run folder (own classes: a caller's plain ModelCheckpoint gets a
    distinct state key)."""

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # the folder may have moved since it was written: it is this run's folder all the same,
        # so the best score so far is kept (Lightning drops it when the dirpath differs)
        super().load_state_dict({**state_dict, "dirpath": self.dirpath})


class LastCheckpoint(_RunFolderCheckpoint):
    """last.ckpt: the full training state at the end of the latest epoch."""


class BestCheckpoint(_RunFolderCheckpoint):
    """best.ckpt (weights and hyperparameters only: it is for evaluation, not for resuming)."""


def checkpoint_callbacks(cfg: RunConfig, folder: Path) -> list[ModelCheckpoint]:
    out: list[ModelCheckpoint] = []
    common = dict(dirpath=str(folder), save_on_train_epoch_end=True, enable_version_counter=False,
                  auto_insert_metric_name=False)
    if cfg.checkpoint in ("last", "both"):
        # the latest epoch as "top 1" of no metric: Lightning 2.6's save_last alone writes only
        # when a top-k checkpoint was written at the same step, i.e. at the end of training
        out.append(LastCheckpoint(filename=Path(LAST).stem, save_top_k=1, **common))
    if cfg.checkpoint in ("best", "both"):
        out.append(BestCheckpoint(filename=Path(BEST).stem, monitor=MONITOR, mode=MODE,
                                  save_top_k=1, save_weights_only=True, **common))
    return out


def checkpoint_files(folder: Path) -> dict[str, str]:
    """summary.json's `checkpoints`: which of last/best exist, as paths relative to the folder."""
    return {name: file for name, file in schema.CHECKPOINT_FILES.items()
            if (Path(folder) / file).is_file()}


def clear_checkpoints(folder: Path) -> None:
    for name in (LAST, BEST):
        (Path(folder) / name).unlink(missing_ok=True)


class RngState(L.Callback):
    """Global RNG states (python, numpy, torch, CUDA) in every checkpoint, put back when a run
    resumes (the loader's own shuffling generator is the data module's state: bench/data)."""

    def state_dict(self) -> dict[str, Any]:
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        state: dict[str, Any] = {
            "python": random.getstate(), "torch": torch.get_rng_state(),
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss]}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        random.setstate(state_dict["python"])
        torch.set_rng_state(state_dict["torch"])
        kind, keys, pos, has_gauss, gauss = state_dict["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])


def resumable(folder: Path) -> bool:
    """A run folder that `execute(..., resume=True)` continues: last.ckpt and not completed."""
    folder = Path(folder)
    return (folder / LAST).is_file() and _status(folder) != schema.COMPLETED


def _status(folder: Path) -> str | None:
    return read_summary(folder).get(schema.STATUS)


def resume_config(folder: str | Path) -> tuple[RunConfig, int | None]:
    """(config, trial) of an interrupted run folder from its config.json; BenchError (one line)
    when it can't be resumed."""
    from bench.config import build_config, record_layer

    folder = Path(folder)
    config_file = folder / schema.CONFIG_FILE
    if not config_file.is_file():
        raise BenchError(f"--resume {folder}: no {schema.CONFIG_FILE} there (not a run folder)")
    if not (folder / LAST).is_file():
        raise BenchError(f"--resume {folder}: no {LAST} there (the run kept no checkpoint yet, "
                         f"or ran with checkpoint=best/none)")
    if _status(folder) == schema.COMPLETED:
        raise BenchError(f"--resume {folder}: the run is already completed ({schema.SUMMARY_FILE})")
    try:
        saved = json.loads(config_file.read_text())
    except (OSError, ValueError):
        raise BenchError(f"--resume {folder}: {schema.CONFIG_FILE} is not valid JSON") from None
    if not isinstance(saved, dict):
        raise BenchError(f"--resume {folder}: {schema.CONFIG_FILE} is not a mapping of config keys")
    trial = saved.get(schema.TRIAL) if isinstance(saved.get(schema.TRIAL), int) else None
    # the folder may have moved since: it names the run (results/<study>/runs/<run_id>)
    here = folder.resolve()
    if here.parent.name != schema.RUNS_DIR:
        raise BenchError(f"--resume {folder}: expected a folder RESULTS/<study>/runs/<run_id>")
    where = {"results": str(here.parent.parent.parent), "study": here.parent.parent.name,
             "run_id": here.name}
    return build_config(record_layer(saved, f"--resume {folder}: {schema.CONFIG_FILE}"),
                        where), trial
