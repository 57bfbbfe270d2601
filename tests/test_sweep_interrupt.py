"""Interrupted sweeps lose nothing: Ctrl-C (SIGINT to the terminal's process group), SIGTERM
to the parent (a scheduler's time limit) and SIGKILL of the parent alone, each followed by the
same command; a torn journal line; a full disk."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState

from bench.cli import main
from test_sweep_run import _summaries, command, env, grid_spec, journal_study, trials, write_sweep

# (signal, to the whole process group as a terminal's Ctrl-C does)
STOPS = {"sigint_ctrl_c": (signal.SIGINT, True), "sigterm_parent": (signal.SIGTERM, False),
         "sigkill_parent": (signal.SIGKILL, False)}


def session_pids(sid: int) -> list[int]:
    """Live processes of a session (the sweep, its workers and anything they started)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] not in ("Z", "X"):
            out.append(int(stat.parent.name))
    return out


def wait_for(check, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


@pytest.mark.parametrize("how", sorted(STOPS))
def test_interrupted_sweep_then_the_same_command_runs_every_point_once(how, tmp_path):
    sig, group = STOPS[how]
    file = write_sweep(tmp_path / "stop.yaml", "stop", {"seed": [0, 1, 2]},
                       arch="spiking_resnet18", epochs=2)
    results = tmp_path / "results"
    proc = subprocess.Popen(command(file, results, 2), env=env(), start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    running = wait_for(lambda: proc.poll() is not None or any(
        s.get("status") == "running" for s in _summaries(results, "stop").values()), 300)
    assert running and proc.poll() is None, "the sweep ended before it could be stopped"
    (os.killpg if group else os.kill)(proc.pid, sig)
    out, err = proc.communicate(timeout=120)
    # no process of the sweep outlives it: workers die with their parent, even after kill -9
    assert wait_for(lambda: not session_pids(proc.pid), 20), session_pids(proc.pid)
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
    else:
        assert proc.returncode == 130, out + err
        assert f"stopped by {signal.Signals(sig).name}" in out
        assert err.strip().splitlines() == ["bench sweep: interrupted"], err
        for t in trials(results, "stop"):  # stopped trials were re-queued, never failed
            assert t.state in (TrialState.COMPLETE, TrialState.WAITING, TrialState.FAIL)
            if t.state == TrialState.FAIL:
                # Ctrl-C reaches the workers themselves, before the parent's SIGTERM
                assert t.user_attrs["error"] in ("interrupted (SIGINT)", "interrupted (SIGTERM)")
        records = _summaries(results, "stop")
        assert all(r["status"] in ("completed", "interrupted") for r in records.values())

    again = subprocess.run(command(file, results, 2), env=env(), capture_output=True, text=True,
                           timeout=400)
    assert again.returncode == 0, again.stdout + again.stderr
    every = trials(results, "stop")
    done = [t for t in every if t.state == TrialState.COMPLETE]
    assert sorted(t.params["seed"] for t in done) == [0, 1, 2]  # each point once
    for t in every:
        assert t.state in (TrialState.COMPLETE, TrialState.FAIL)
        if t.state == TrialState.FAIL:  # only stopped attempts, each run again once
            assert t.user_attrs["error"].startswith("interrupted")
            assert len([r for r in every if r.system_attrs.get("failed_trial") ==
                        t.system_attrs.get("failed_trial", t.number)
                        and r.state == TrialState.COMPLETE]) == 1
    records = _summaries(results, "stop")  # a retry continues its first attempt's folder
    assert sorted(records) == ["trial-0000", "trial-0001", "trial-0002"]
    assert sorted(r["config"]["seed"] for r in records.values()
                  if r["status"] == "completed") == [0, 1, 2]


def test_a_torn_last_journal_line_is_cut_off_and_the_sweep_completes(tmp_path, capsys):
    file = write_sweep(tmp_path / "torn.yaml", "torn", {"seed": [0]}, arch="spiking_resnet18")
    from bench.sweep.spec import load_spec

    results = tmp_path / "results"
    journal_study(results, load_spec(file))  # the study, its slot enqueued
    journal = results / "torn" / "optuna.journal"
    last = journal.read_bytes().splitlines(keepends=True)[-1]
    with open(journal, "ab") as f:  # a write cut off half-way (power loss, full disk)
        f.write(last[: len(last) // 2])
    assert main(["sweep", str(file), "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert len([ln for ln in out.splitlines() if ln.startswith("repaired ")]) == 1
    backups = list((results / "torn").glob("optuna.journal.torn-*"))
    assert [b.read_bytes() for b in backups] == [last[: len(last) // 2]]
    assert [t.state for t in trials(results, "torn")] == [TrialState.COMPLETE]
    assert main(["status", str(results / "torn")]) == 0


def test_a_full_disk_in_a_trial_requeues_it_and_stops_its_worker(tmp_path, monkeypatch):
    from bench.sweep import objective as objective_mod
    from bench.sweep.queue import pop_waiting, run_trial, study_id
    from bench.sweep.queue import WorkerJob

    spec = grid_spec()
    storage, study = journal_study(tmp_path, spec)
    sid = study_id(storage, "g")
    tid = pop_waiting(storage, sid)

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", "metrics.csv")

    monkeypatch.setattr(objective_mod, "objective", no_space)
    assert run_trial(study, storage, tid, WorkerJob(spec, None, str(tmp_path))) == "disk full"
    every = storage.get_all_trials(sid)
    stopped = every[0]
    assert stopped.state == TrialState.FAIL and stopped.user_attrs["error"] == "disk full"
    retry = [t for t in every if t.system_attrs.get("failed_trial") == stopped.number]
    assert len(retry) == 1 and retry[0].state == TrialState.WAITING
    assert retry[0].system_attrs["fixed_params"] == stopped.system_attrs["fixed_params"]


def _worker_on_a_full_disk(job) -> None:
    """A worker that claims a trial, then finds the disk full."""
    from bench.sweep.storage import OWNER, open_storage, owner_info
    from bench.sweep.queue import pop_waiting, study_id
    from bench.sweep.workers import DISK_FULL

    storage = open_storage(job.storage, Path(job.results) / job.spec.name)
    tid = pop_waiting(storage, study_id(storage, job.spec.name))
    storage.set_trial_system_attr(tid, OWNER, owner_info(storage.get_trial(tid).number))
    os._exit(DISK_FULL)


def test_a_full_disk_stops_the_sweep_in_one_line_and_it_resumes_later(tmp_path, monkeypatch,
                                                                     capsys):
    from bench.sweep import start, workers

    file = write_sweep(tmp_path / "full.yaml", "full", {"seed": [0, 1]})
    monkeypatch.setattr(start, "START_METHOD", "fork")  # the fake worker below is inherited
    monkeypatch.setattr(workers, "worker_main", _worker_on_a_full_disk)
    rc = main(["sweep", str(file), "--results", str(tmp_path)])
    out, err = capsys.readouterr()
    assert rc == 2 and err.count("\n") == 1 and "disk full" in err and "Traceback" not in err
    every = trials(tmp_path, "full")
    assert [t.state for t in every] == [TrialState.FAIL, TrialState.WAITING, TrialState.WAITING]
    assert every[0].user_attrs["error"] == "interrupted (disk full)"
    assert every[2].system_attrs["retry_history"] == [0]  # the same point, queued again
    assert every[2].system_attrs["fixed_params"] == every[0].system_attrs["fixed_params"]


def _worker_killed_on_trial_0(job) -> None:
    """A worker that is killed (kill -9, the OOM killer) in trial 0 and completes the others."""
    from bench.sweep.storage import OWNER, open_storage, owner_info
    from bench.sweep.queue import pop_waiting, study_id

    storage = open_storage(job.storage, Path(job.results) / job.spec.name)
    sid = study_id(storage, job.spec.name)
    while (tid := pop_waiting(storage, sid)) is not None:
        number = storage.get_trial(tid).number
        storage.set_trial_system_attr(tid, OWNER, owner_info(number))
        if number == 0:
            os.kill(os.getpid(), signal.SIGKILL)
        storage.set_trial_state_values(tid, TrialState.COMPLETE, values=[1.0])
    os._exit(0)


def test_a_killed_worker_has_its_trial_requeued_and_is_replaced(tmp_path, monkeypatch, capsys):
    from bench.sweep import start, workers

    file = write_sweep(tmp_path / "k9.yaml", "k9", {"seed": [0, 1]})
    monkeypatch.setattr(start, "START_METHOD", "fork")
    monkeypatch.setattr(workers, "worker_main", _worker_killed_on_trial_0)
    assert main(["sweep", str(file), "--results", str(tmp_path)]) == 0
    every = trials(tmp_path, "k9")
    assert [t.state for t in every] == [TrialState.FAIL] + [TrialState.COMPLETE] * 2
    assert every[0].user_attrs["error"].startswith("worker process died (signal SIGKILL")
    assert every[2].system_attrs["retry_history"] == [0]
    assert every[2].system_attrs["fixed_params"] == every[0].system_attrs["fixed_params"]
    assert "done 2 | running 0 | failed 0 | left 0" in capsys.readouterr().out
