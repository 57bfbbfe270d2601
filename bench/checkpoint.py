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
import zipfile
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
from bench.stopping import as_disk_full, disk_full

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
        except BaseException as exc:
            full = disk_full(exc, path.parent)  # measured before the temp file frees its bytes
            Path(tmp).unlink(missing_ok=True)
            if full and not isinstance(exc, OSError):  # torch.save's RuntimeError
                raise as_disk_full(exc, path) from exc
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
    when it can't be resumed (its last.ckpt is checked when the run opens: check_resume)."""
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
    saved = saved_config(folder, "--resume ")
    trial = saved.get(schema.TRIAL) if isinstance(saved.get(schema.TRIAL), int) else None
    # the folder may have moved since: it names the run (results/<study>/runs/<run_id>)
    here = folder.resolve()
    if here.parent.name != schema.RUNS_DIR:
        raise BenchError(f"--resume {folder}: expected a folder RESULTS/<study>/runs/<run_id>")
    where = {"results": str(here.parent.parent.parent), "study": here.parent.parent.name,
             "run_id": here.name}
    return build_config(record_layer(saved, f"--resume {folder}: {schema.CONFIG_FILE}"),
                        where), trial


def saved_config(folder: Path, flag: str = "") -> dict[str, Any]:
    """A run folder's config.json as a dict; BenchError when it is not one."""
    try:
        saved = json.loads((folder / schema.CONFIG_FILE).read_text())
    except (OSError, ValueError, RecursionError):
        raise BenchError(f"{flag}{folder}: {schema.CONFIG_FILE} is not valid JSON") from None
    if not isinstance(saved, dict):
        raise BenchError(f"{flag}{folder}: {schema.CONFIG_FILE} is not a mapping of config keys")
    return saved


# ---- what a checkpoint holds, checked before it is loaded ------------------------------------

RESUME_HINT = ("start a fresh run with the same settings, or measure its best.ckpt with "
               "`bench eval`")
# keys a checkpoint may legitimately disagree on with its folder's config.json (it moved)
PLACE_KEYS = ("results",)


def read_checkpoint(path: Path, hint: str = RESUME_HINT) -> dict[str, Any]:
    """The content of a bench .ckpt (tensors memory-mapped, nothing pickled executed);
    BenchError in one line naming the file when it is empty, truncated, damaged or not
    bench's. Zip integrity first: torch.load of a cut file fails with IndexError, EOFError or
    a miniz message that say nothing of the file."""
    what = f"{path}: not a readable bench checkpoint"
    try:
        if path.stat().st_size == 0:
            raise BenchError(f"{what} (empty file, 0 bytes); {hint}")
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()  # every member's CRC: a truncated or flipped file fails here
    except zipfile.BadZipFile:
        raise BenchError(f"{what} (truncated, or not a checkpoint: no zip directory); "
                         f"{hint}") from None
    except (OSError, EOFError, ValueError) as exc:
        raise BenchError(f"{what} ({type(exc).__name__}: {exc}); {hint}") from None
    if bad is not None:
        raise BenchError(f"{what} (damaged: the CRC of {bad} fails); {hint}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user mistake
        raise BenchError(f"{what} ({type(exc).__name__}); {hint}") from None
    hp = state.get("hyper_parameters") if isinstance(state, dict) else None
    if not (isinstance(hp, dict) and isinstance(hp.get("config"), dict)
            and isinstance(state.get("state_dict"), dict)):
        raise BenchError(f"{what} (no saved config or weights); {hint}")
    return state


def config_diff(checkpoint: dict[str, Any], saved: dict[str, Any],
                names: tuple[str, ...] | None = None) -> list[str]:
    """'KEY A in the checkpoint vs B in config.json' for each config key that differs."""
    from bench.config import keys

    def plain(value: Any) -> Any:  # as config.json holds it (a tuple is a list there)
        return json.loads(json.dumps(value, default=str))

    out = []
    for key in names or tuple(k for k in keys() if k not in PLACE_KEYS):
        a, b = plain(checkpoint.get(key)), plain(saved.get(key))
        if key in checkpoint and key in saved and a != b:
            out.append(f"{key} {a!r} in the checkpoint vs {b!r} in {schema.CONFIG_FILE}")
    return out


def check_weights(module: torch.nn.Module, state_dict: dict[str, Any], path: Path,
                  hint: str = RESUME_HINT) -> None:
    """BenchError when the checkpoint's weights do not fit the network (names and shapes):
    Lightning's load_state_dict would print every key."""
    want = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    have = {k: tuple(getattr(v, "shape", ())) for k, v in state_dict.items()}
    missing, extra = sorted(set(want) - set(have)), sorted(set(have) - set(want))
    shapes = [f"{k} {have[k]} vs {want[k]}" for k in want if k in have and have[k] != want[k]]
    problems = ([f"missing {', '.join(missing[:3])}"] if missing else []) + (
        [f"unexpected {', '.join(extra[:3])}"] if extra else []) + shapes[:3]
    if problems:
        raise BenchError(f"{path}: its weights do not fit the network of its config "
                         f"({'; '.join(problems)}); {hint}")


def check_resume(folder: Path) -> dict[str, Any]:
    """Refuse (BenchError, one line) a last.ckpt that is damaged, another run's, or whose
    config differs from config.json: resuming it would train another network than the record
    says. Returns the checkpoint's content."""
    from bench.module import SpikingClassifier

    path = Path(folder) / LAST
    state = read_checkpoint(path)
    hp = state["hyper_parameters"]
    diff = config_diff(hp["config"], saved_config(Path(folder)))
    if diff:
        raise BenchError(f"{path} is not this run's checkpoint: {'; '.join(diff[:4])}; "
                         f"{RESUME_HINT}")
    try:
        module = SpikingClassifier(hp["config"], hp["num_classes"], hp["in_channels"])
    except Exception as exc:  # noqa: BLE001 - a config this version can't build
        raise BenchError(f"{path}: its config does not build a network here "
                         f"({type(exc).__name__}: {exc}); {RESUME_HINT}") from None
    check_weights(module, state["state_dict"], path)
    return state
