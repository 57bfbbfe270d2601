"""A run that does not end well: real signals to `bench run` (exit 130/143, one line naming
`bench run --resume`, then the resume completes), a full disk (checkpoints included), a run
folder in use, damaged or foreign checkpoints, read-only folders, a diverging loss."""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from bench.cli import main
from conftest import TINY, bench_command, child_env, csv_rows, tiny_config

# epochs of 2 training, 2 validation and 2 test batches of 8 images
QUICK = {**TINY, "epochs": 3, "batch_size": 8, "limit_train_batches": 2, "limit_val_batches": 2,
         "limit_test_batches": 2, "wandb": "disabled", "arch": "spiking_resnet18"}
WAIT_S = 600  # generous: the machine may be shared; the tests decide from files, not time


def _summary(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text())


def _sets(config: dict) -> list[str]:
    return [a for k, v in config.items() for a in ("--set", f"{k}={v}")]


def _signal_when(proc: subprocess.Popen, ready, sig: int) -> tuple[int, str]:
    """Send `sig` once ready() holds (state, not time); (exit code, stderr)."""
    deadline = time.monotonic() + WAIT_S
    while not ready() and proc.poll() is None:
        assert time.monotonic() < deadline, "the run never reached the state to signal it in"
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be signalled"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=WAIT_S)
    return proc.returncode, err


def _resume_line(err: str, folder: Path) -> list[str]:
    return [ln for ln in err.splitlines() if f"bench run --resume {folder}" in ln]


def test_sigterm_and_ctrl_c_stop_bench_run_and_resume_completes_it(tmp_path):
    d = tmp_path / "default" / "runs" / "sig"
    start = bench_command("run", *_sets(QUICK), "--set", "run_id=sig", "--results", str(tmp_path))
    # SIGTERM (a scheduler's time limit) once epoch 0 is checkpointed
    proc = subprocess.Popen(start, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    rc, err = _signal_when(proc, lambda: (d / "last.ckpt").is_file(), signal.SIGTERM)
    assert rc == 143, err[-2000:]
    lines = _resume_line(err, d)
    assert len(lines) == 1 and lines[0].startswith("bench run: interrupted (SIGTERM) after ")
    assert "Traceback" not in err
    s = _summary(d)
    assert s["status"] == "interrupted" and s["error"] == "interrupted (SIGTERM)"
    done = csv_rows(d / "metrics.csv")
    assert s["epochs_completed"] >= 1

    # Ctrl-C (SIGINT) of the resumed run once it wrote one more epoch
    proc = subprocess.Popen(bench_command("run", "--resume", str(d)), env=child_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if done < QUICK["epochs"] - 1:
        rc, err = _signal_when(proc, lambda: csv_rows(d / "metrics.csv") > done, signal.SIGINT)
        assert rc == 130, err[-2000:]
        assert len(_resume_line(err, d)) == 1 and "Detected KeyboardInterrupt" not in err
        assert _summary(d)["error"] == "interrupted (SIGINT)"
        again = subprocess.run(bench_command("run", "--resume", str(d)), env=child_env(),
                               capture_output=True, text=True, timeout=WAIT_S)
    else:
        again = subprocess.CompletedProcess(proc.args, proc.wait(timeout=WAIT_S), "", "")
    assert again.returncode == 0, again.stderr[-2000:]
    s = _summary(d)
    assert s["status"] == "completed" and s["epochs_completed"] == QUICK["epochs"]
    assert list(pd.read_csv(d / "metrics.csv")["epoch"]) == [0, 1, 2]  # each epoch once


# ---- an interrupted run folder, made in-process (no signal needed) ---------------------------

@pytest.fixture(scope="module")
def stopped(tmp_path_factory) -> Path:
    """A run stopped after epoch 0 (last.ckpt and best.ckpt of epoch 0, status interrupted)."""
    import lightning as L

    from bench.run import execute
    from bench.stopping import RunInterrupted

    class StopAtEpoch1(L.Callback):
        def on_train_epoch_start(self, trainer, pl_module) -> None:
            if trainer.current_epoch == 1:
                raise RunInterrupted("SIGTERM")

    results = tmp_path_factory.mktemp("stopped")
    cfg = tiny_config(results, **{**QUICK, "run_id": "stopped"})
    with pytest.raises(RunInterrupted):
        execute(cfg, callbacks=[StopAtEpoch1()])
    folder = results / "default" / "runs" / "stopped"
    assert _summary(folder)["status"] == "interrupted"
    return folder


def _copy(folder: Path, tmp_path: Path, name: str = "run") -> Path:
    dest = tmp_path / "default" / "runs" / name
    shutil.copytree(folder, dest)
    return dest


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _one_line(capsys) -> str:
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and "Traceback" not in err + out, err
    return err


def _edit_config(d: Path, **changes) -> None:
    saved = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**saved, **changes}))


def _truncate(d: Path) -> None:
    data = (d / "last.ckpt").read_bytes()
    (d / "last.ckpt").write_bytes(data[: len(data) // 2])


def _flip(d: Path) -> None:
    data = bytearray((d / "last.ckpt").read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside a tensor: only the zip CRC sees it
    (d / "last.ckpt").write_bytes(bytes(data))


DAMAGE = {
    "zero_bytes": (lambda d: (d / "last.ckpt").write_bytes(b""), "not a readable bench checkpoint (empty file, 0 bytes)"),
    "truncated": (_truncate, "not a readable bench checkpoint (truncated"),
    "flipped_byte": (_flip, "damaged: the CRC of "),
    "garbage": (lambda d: (d / "last.ckpt").write_bytes(os.urandom(4096)),
                "not a readable bench checkpoint"),
    "config_N": (lambda d: _edit_config(d, N=2), "N 4 in the checkpoint vs 2 in config.json"),
    "config_arch": (lambda d: _edit_config(d, arch="sew_resnet18"),
                    "arch 'spiking_resnet18' in the checkpoint vs 'sew_resnet18' in config.json"),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_resume_checks_last_ckpt_before_loading_it(case, stopped, tmp_path, capsys):
    d = _copy(stopped, tmp_path)
    damage, words = DAMAGE[case]
    damage(d)
    before = _snapshot(d)
    assert main(["run", "--resume", str(d)]) == 2
    err = _one_line(capsys)
    assert words in err and str(d / "last.ckpt") in err, err
    assert "fresh run" in err  # what can be done
    assert _snapshot(d) == before  # nothing written, the record kept


def test_a_live_run_folder_is_refused_and_a_stale_lock_taken_over(stopped, tmp_path, capsys):
    from bench.record import LOCK_FILE, RunLock

    d = _copy(stopped, tmp_path)
    with RunLock(d):  # this process holds the folder, as a live run does
        before = _snapshot(d)
        assert main(["run", "--resume", str(d)]) == 2
        err = _one_line(capsys)
        assert f"in use by pid {os.getpid()} on " in err and str(d) in err
        assert _snapshot(d) == before
    # the holder is gone (kill -9 leaves the file, never the flock); a kill -9 mid-save left
    # checkpoint and summary temp files behind
    (d / LOCK_FILE).write_text("pid 999999999 on elsewhere\n")
    for stale in (".last.ckpt.k9x1", ".best.ckpt.ab12", ".summary.json.zz9"):
        (d / stale).write_bytes(b"half a file")
    assert main(["run", "--resume", str(d)]) == 0
    assert _summary(d)["status"] == "completed"
    assert not [p.name for p in d.glob(".*") if p.name != LOCK_FILE]
    assert list(pd.read_csv(d / "metrics.csv")["epoch"]) == [0, 1, 2]


def test_eval_names_the_checkpoint_it_read_and_refuses_a_foreign_one(stopped, tmp_path,
                                                                     capsys):
    d = _copy(stopped, tmp_path)
    assert main(["eval", str(d), "--set", "wandb=disabled"]) == 0
    out = capsys.readouterr().out
    assert f"eval of {d / 'best.ckpt'}" in out
    # another run's best.ckpt dropped into this folder
    other = _copy(stopped, tmp_path, "other")
    _edit_config(other, run_id="other")
    (d / "config.json").write_text((other / "config.json").read_text())
    before = _snapshot(d)
    assert main(["eval", str(d)]) == 2
    err = _one_line(capsys)
    assert f"{d / 'best.ckpt'} is not the checkpoint of the run in its folder" in err
    assert "run_id 'stopped' in the checkpoint vs 'other' in config.json" in err
    assert _snapshot(d) == before
    (d / "best.ckpt").write_bytes(b"")
    assert main(["eval", str(d / "best.ckpt")]) == 2
    assert "(empty file, 0 bytes)" in _one_line(capsys)


# ---- a full disk -------------------------------------------------------------------------

def _torch_save_failing(real, calls: list, fail_at: int, context: bool):
    """torch.save that fails as on a full disk from call `fail_at` on: the RuntimeError of its
    zip writer, with (a Python file) or without (C++ fwrite) the OSError as its context."""
    def save(obj, f, *args, **kwargs):
        calls.append(1)
        if len(calls) < fail_at:
            return real(obj, f, *args, **kwargs)
        f.write(b"PK half a checkpoint")
        if context:
            try:
                raise OSError(errno.ENOSPC, "No space left on device")
            except OSError:
                raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos "
                                   "704 vs 598")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter "
                           "failed writing file data/3: file write failed")
    return save


@pytest.mark.parametrize("context, free, full", [(True, 10**12, True), (False, 0, True),
                                                 (False, 10**12, False)])
def test_a_checkpoint_write_on_a_full_disk_is_disk_full(tmp_path, monkeypatch, context, free,
                                                        full):
    import torch

    from bench import checkpoint, stopping

    monkeypatch.setattr(checkpoint.torch, "save", _torch_save_failing(torch.save, [], 1, context))
    monkeypatch.setattr(stopping.shutil, "disk_usage",
                        lambda p: shutil._ntuple_diskusage(10**13, 10**13 - free, free))
    with pytest.raises((OSError, RuntimeError)) as info:
        checkpoint.AtomicCheckpointIO().save_checkpoint({"x": 1}, tmp_path / "last.ckpt")
    assert stopping.disk_full(info.value) is full
    if full:
        assert info.value.errno == errno.ENOSPC and info.value.filename == str(
            tmp_path / "last.ckpt")
    assert list(tmp_path.iterdir()) == []  # no temp file, no half checkpoint


def test_a_full_disk_at_a_checkpoint_stops_the_run_and_resume_completes_it(
        tmp_path, monkeypatch, capsys):
    import torch

    from bench import checkpoint

    d = tmp_path / "default" / "runs" / "full"
    calls: list = []
    # 2 saves per epoch (last, best): the disk fills up at epoch 1's last.ckpt (its rows are
    # written: 2 epochs trained, 1 checkpointed; resuming redoes epoch 1)
    monkeypatch.setattr(checkpoint.torch, "save", _torch_save_failing(torch.save, calls, 3, True))
    args = ["run", *_sets({**QUICK, "progress_bar": False}), "--set", "run_id=full",
            "--results", str(tmp_path)]
    assert main(args) == 2
    err = capsys.readouterr().err
    line = [ln for ln in err.splitlines() if ln.startswith("bench run:")]
    assert line == [f"bench run: error: disk full (No space left on device) writing "
                    f"{d / 'last.ckpt'} after 2 epoch(s): free space, then continue with: "
                    f"bench run --resume {d}"], err
    s = _summary(d)
    assert s["status"] == "interrupted" and s["error"].startswith("disk full")
    assert not list(d.glob(".*.ckpt.*"))
    monkeypatch.undo()
    assert main(["run", "--resume", str(d)]) == 0
    assert _summary(d)["status"] == "completed"
    assert list(pd.read_csv(d / "metrics.csv")["epoch"]) == [0, 1, 2]


def test_a_full_disk_in_a_trial_checkpoint_requeues_it(tmp_path, monkeypatch):
    from optuna.trial import TrialState

    from bench.sweep import objective as objective_mod
    from bench.sweep.queue import WorkerJob, pop_waiting, run_trial, study_id
    from test_sweep_run import grid_spec, journal_study

    spec = grid_spec()
    storage, study = journal_study(tmp_path, spec)
    sid = study_id(storage, "g")

    def torch_save_fails(*args, **kwargs):
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos")

    monkeypatch.setattr(objective_mod, "objective", torch_save_fails)
    tid = pop_waiting(storage, sid)
    assert run_trial(study, storage, tid, WorkerJob(spec, None, str(tmp_path))) == "disk full"
    every = storage.get_all_trials(sid)
    assert every[0].state == TrialState.FAIL and every[0].user_attrs["error"] == "disk full"
    assert [t.state for t in every if t.system_attrs.get("failed_trial") == 0] == [
        TrialState.WAITING]


class _FullStream:
    def write(self, text: str) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    def flush(self) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")


def test_a_log_handler_on_a_full_disk_prints_no_logging_traceback(capsys, monkeypatch):
    from bench.stopping import signals_stop_the_run

    monkeypatch.setattr(logging, "raiseExceptions", True)
    log = logging.getLogger("bench.test.full")
    log.addHandler(logging.StreamHandler(_FullStream()))
    try:
        with signals_stop_the_run():
            log.warning("a line W&B would write to its debug.log")
    finally:
        log.handlers.clear()
    assert "Logging error" not in capsys.readouterr().err


def _mount_tmpfs(where: Path, size: str) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True).returncode == 0


@pytest.fixture
def tiny_disk(tmp_path):
    """A 2 MiB file system (root only: else skipped): the record fits, a checkpoint does not."""
    where = tmp_path / "disk"
    if not _mount_tmpfs(where, "2m"):
        pytest.skip("mounting a tmpfs needs root on Linux")
    yield where
    subprocess.run(["umount", "-l", str(where)], check=False)


def test_a_really_full_disk_stops_bench_run_in_one_line(tiny_disk):
    out = subprocess.run(bench_command("run", *_sets({**QUICK, "epochs": 1, "progress_bar": False}),
                                "--set", "run_id=full", "--results", str(tiny_disk)),
                         env=child_env(), capture_output=True, text=True, timeout=WAIT_S)
    d = tiny_disk / "default" / "runs" / "full"
    assert out.returncode == 2, out.stderr[-2000:]
    mine = [ln for ln in out.stderr.splitlines() if ln.startswith("bench run")]
    assert len(mine) == 1 and mine[0].startswith("bench run: error: disk full"), out.stderr
    assert "Traceback" not in out.stderr and "Logging error" not in out.stderr
    assert _summary(d)["status"] == "interrupted"
    assert not list(d.glob(".*.ckpt.*"))


def test_read_only_folders_are_one_line(stopped, tmp_path, capsys):
    where = tmp_path / "ro"
    if not _mount_tmpfs(where, "200m"):
        pytest.skip("mounting a tmpfs needs root on Linux")
    try:
        d = _copy(stopped, where)
        subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True)
        assert main(["eval", str(d), "--set", "wandb=disabled"]) == 2
        assert f"Read-only file system {d / 'evals'}" in _one_line(capsys)
        assert main(["run", *_sets(QUICK), "--results", str(where / "results")]) == 2
        assert f"Read-only file system {where / 'results'}" in _one_line(capsys)
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_read_only_folders_are_one_line_anywhere(stopped, tmp_path, monkeypatch, capsys):
    """The same refusal without root: the file system's answer injected."""
    from bench import record

    d = _copy(stopped, tmp_path)

    def read_only(dir, prefix):
        raise OSError(errno.EROFS, "Read-only file system", str(dir))

    monkeypatch.setattr(record.tempfile, "mkstemp", read_only)
    assert main(["eval", str(d), "--set", "wandb=disabled"]) == 2
    assert f"Read-only file system {d / 'evals'}" in _one_line(capsys)
    assert main(["run", *_sets(QUICK), "--set", "run_id=x", "--results", str(tmp_path)]) == 2
    assert f"Read-only file system {tmp_path / 'default' / 'runs' / 'x'}" in _one_line(capsys)


# ---- how a run ended, in its record, the sweep and the report --------------------------------

def test_ending_tells_stops_divergence_pruning_and_failures_apart():
    import optuna

    from bench.module import Diverged
    from bench.run import ending
    from bench.stopping import RunInterrupted

    class TrialPruned(Exception):  # a look-alike name is not optuna's pruning
        pass

    assert ending(RunInterrupted("SIGTERM")) == ("interrupted", "interrupted (SIGTERM)")
    assert ending(OSError(errno.ENOSPC, "No space left on device", "m.csv")) == (
        "interrupted", "disk full (No space left on device) writing m.csv")
    assert ending(Diverged("loss is NaN at epoch 2, step 7")) == (
        "diverged", "loss is NaN at epoch 2, step 7")
    assert ending(optuna.TrialPruned("epoch 3"))[0] == "pruned"
    assert ending(TrialPruned("x")) == ("failed", "TrialPruned: x")


def test_a_diverged_run_shows_as_diverged_in_the_report(tmp_path):
    from bench.report.load import load_records

    for run_id, status in (("a", "completed"), ("b", "diverged")):
        folder = tmp_path / "s" / "runs" / run_id
        folder.mkdir(parents=True)
        (folder / "summary.json").write_text(json.dumps({
            "status": status, "error": None if status == "completed" else "loss is NaN at "
            "epoch 0, step 1", "run_id": run_id, "study": "s", "trial": None, "test_acc": 0.5,
            "config": {"arch": "sew_resnet18", "seed": 0, "T": 1, "N": 4}}))
    records = load_records([tmp_path / "s"])
    assert records.status_counts() == {"completed": 1, "diverged": 1}
    assert len(records.completed) == 1
    assert records.runs.set_index("run_id").loc["b", "status"] == "diverged"


def test_a_completed_sweep_trial_keeps_best_ckpt_only(tmp_path):
    from bench.sweep.queue import WorkerJob, pop_waiting, run_trial, study_id
    from bench.sweep.spec import parse_spec
    from test_sweep_run import journal_study

    fixed = {**QUICK, "epochs": 1, "progress_bar": False}
    spec = parse_spec({"name": "g", "method": "grid", "metric": {"name": "test_acc",
                                                                 "goal": "maximize"},
                       "parameters": {"seed": {"values": [0]},
                                      **{k: {"value": v} for k, v in fixed.items()}}})
    storage, study = journal_study(tmp_path, spec)
    tid = pop_waiting(storage, study_id(storage, "g"))
    assert run_trial(study, storage, tid, WorkerJob(spec, None, str(tmp_path))) == "done"
    d = tmp_path / "g" / "runs" / "trial-0000"
    assert _summary(d)["status"] == "completed"
    assert sorted(p.name for p in d.glob("*.ckpt")) == ["best.ckpt"]
    assert _summary(d)["checkpoints"] == {"best": "best.ckpt"}
