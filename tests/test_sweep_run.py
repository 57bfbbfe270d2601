"""`bench sweep` end to end on digits with the real bench.run.execute (tiny budget):
parallel workers, SIGKILL and resume, a failing trial; `bench status`."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState

from bench.sweep import main_status

# one tiny instrumented run: ~1 s on a laptop core
TINY = {"dataset": "digits", "epochs": 1, "limit_train_batches": 2, "limit_val_batches": 2,
        "limit_test_batches": 2, "batch_size": 32, "wandb": "disabled", "grad_every": 1}
RECORD = ("config.json", "summary.json", "metrics.csv", "layers.csv", "grads.csv")


def write_sweep(path: Path, name: str, swept: dict, **fixed) -> Path:
    params = {k: {"values": v} for k, v in swept.items()}
    params.update({k: {"value": v} for k, v in {**TINY, **fixed}.items()})
    path.write_text(yaml.safe_dump({"name": name, "method": "grid", "parameters": params,
                                    "metric": {"name": "test_acc", "goal": "maximize"}}))
    return path


def command(file: Path, results: Path, workers: int) -> list[str]:
    return [sys.executable, "-m", "bench.cli", "sweep", str(file), "--workers", str(workers),
            "--results", str(results)]


def env() -> dict[str, str]:
    return {**os.environ, "WANDB_SILENT": "true", "WANDB_MODE": "disabled"}


def trials(results: Path, name: str) -> list[optuna.trial.FrozenTrial]:
    storage = JournalStorage(JournalFileBackend(str(results / name / "optuna.journal")))
    return optuna.load_study(study_name=name, storage=storage).trials


def summaries(results: Path, name: str) -> dict[str, dict]:
    runs = results / name / "runs"
    return {d.name: json.loads((d / "summary.json").read_text())
            for d in sorted(runs.iterdir()) if (d / "summary.json").is_file()}


def key(t: optuna.trial.FrozenTrial) -> tuple:
    return tuple(sorted(t.params.items()))


def test_grid_of_six_with_three_workers(tmp_path, capsys):
    file = write_sweep(tmp_path / "six.yaml", "six", {"arch": ["spiking_resnet18",
                                                               "sparse_resnet18"],
                                                      "seed": [0, 1, 2]})
    results = tmp_path / "results"
    out = subprocess.run(command(file, results, 3), env=env(), capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    done = [t for t in trials(results, "six") if t.state == TrialState.COMPLETE]
    assert len(done) == 6 and len(trials(results, "six")) == 6
    assert len({key(t) for t in done}) == 6
    assert {key(t) for t in done} == {(("arch", a), ("seed", s)) for a in
                                      ("spiking_resnet18", "sparse_resnet18") for s in (0, 1, 2)}
    records = summaries(results, "six")
    assert sorted(records) == [f"trial-{n:04d}" for n in range(6)]
    for t in done:  # each trial's record is its own run, and the study holds its metric
        run = results / "six" / "runs" / f"trial-{t.number:04d}"
        assert all((run / f).is_file() for f in RECORD)
        s = records[run.name]
        assert s["status"] == "completed" and s["trial"] == t.number
        assert s["config"]["arch"] == t.params["arch"] and s["config"]["seed"] == t.params["seed"]
        assert s["config"]["study"] == "six" and s["config"]["epochs"] == 1
        assert t.value == pytest.approx(s["test_acc"])
        assert t.user_attrs["run_dir"] == str(run)
    lines = [ln for ln in out.stdout.splitlines() if re.match(r"trial +\d+ COMPLETE ", ln)]
    assert len(lines) == 6 and "[done 6 | running 0 | failed 0 | left 0]" in out.stdout
    saved = yaml.safe_load((results / "six" / "sweep.yaml").read_text())
    assert saved["parameters"]["arch"] == {"values": ["spiking_resnet18", "sparse_resnet18"]}
    assert saved["parameters"]["epochs"] == {"value": 1}
    # `bench status` prints the same table, best test_acc first
    assert main_status(str(results / "six")) == 0
    table = capsys.readouterr().out
    rows = [ln for ln in table.splitlines() if re.match(r"\|\s+\d+ \| COMPLETE", ln)]
    accs = [float(r.split("|")[5]) for r in rows]
    assert len(rows) == 6 and accs == sorted(accs, reverse=True)
    assert accs[0] == pytest.approx(max(t.value for t in done), abs=1e-4)


def test_sigkill_then_resume_runs_every_point_once(tmp_path):
    file = write_sweep(tmp_path / "kill.yaml", "kill", {"seed": [0, 1, 2]},
                       arch="spiking_resnet18", epochs=2)
    results = tmp_path / "results"
    proc = subprocess.Popen(command(file, results, 2), env=env(), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    running: list[str] = []
    states: dict[str, str] = {}
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            states = {k: s.get("status") for k, s in _summaries(results, "kill").items()}
            running = [k for k, s in states.items() if s == "running"]
            if "completed" in states.values() and running:
                break
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the sweep and its workers, mid-trial
        proc.wait()
    # read after the kill: nothing can write any more, and a run that finished between the poll
    # and the kill counts as finished (reading checkpoints first gave it time to finish)
    states = {k: s.get("status") for k, s in summaries(results, "kill").items()}
    completed = [k for k, s in states.items() if s == "completed"]
    killed = [k for k in running if states.get(k) == "running"]
    snapshot = {k: {f.name: f.read_bytes() for f in (results / "kill" / "runs" / k).iterdir()}
                for k in completed}
    assert snapshot and killed, "the sweep ended before it could be killed mid-trial"

    out = subprocess.run(command(file, results, 2), env=env(), capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "re-queued interrupted trials" in out.stdout
    all_trials = trials(results, "kill")
    done = [t for t in all_trials if t.state == TrialState.COMPLETE]
    assert sorted(t.params["seed"] for t in done) == [0, 1, 2]  # each point once
    for t in all_trials:  # nothing else: only interrupted trials, each re-run exactly once
        if t.state != TrialState.COMPLETE:
            assert t.state == TrialState.FAIL and "interrupted" in t.user_attrs["error"]
            retries = [r for r in all_trials if r.system_attrs.get("failed_trial") == t.number]
            assert len(retries) == 1 and retries[0].params == t.params
    for run, files in snapshot.items():  # what was recorded before the kill is untouched
        for name, data in files.items():
            assert (results / "kill" / "runs" / run / name).read_bytes() == data, (run, name)
    records = summaries(results, "kill")
    for run in running:  # a killed run's record says so (or it finished just before the kill)
        assert records[run]["status"] in ("failed", "completed")
        if records[run]["status"] == "failed":
            assert records[run]["error"].startswith("interrupted")
    completed_records = [s for s in records.values() if s["status"] == "completed"]
    assert sorted(s["config"]["seed"] for s in completed_records) == [0, 1, 2]


def _summaries(results: Path, name: str) -> dict[str, dict]:
    try:
        return summaries(results, name)
    except (OSError, ValueError):  # a record being written right now
        return {}


def test_failing_trial_is_isolated_and_counted(tmp_path):
    file = write_sweep(tmp_path / "fail.yaml", "fail", {"arch": ["spiking_resnet18",
                                                                 "no_such_net"]})
    results = tmp_path / "results"
    out = subprocess.run(command(file, results, 1), env=env(), capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 1, out.stdout + out.stderr  # one failed trial
    by_arch = {t.params["arch"]: t for t in trials(results, "fail")}
    assert by_arch["spiking_resnet18"].state == TrialState.COMPLETE
    bad = by_arch["no_such_net"]
    assert bad.state == TrialState.FAIL
    assert "arch" in bad.user_attrs["error"] and "no_such_net" in bad.user_attrs["error"]
    record = summaries(results, "fail")[f"trial-{bad.number:04d}"]
    assert record["status"] == "failed" and record["error"] == bad.user_attrs["error"]
    assert "Traceback" not in out.stderr
    assert re.search(r"trial +1 FAIL .*error: BenchError: config key 'arch'", out.stdout)
    assert "[done 1 | running 0 | failed 1 | left 0]" in out.stdout


def test_nan_loss_trial_is_failed_and_the_sweep_goes_on(tmp_path):
    # lr=1e30 blows the weights up: the loss is NaN within a few steps
    file = write_sweep(tmp_path / "nan.yaml", "nan", {"lr": [0.08, 1e30]},
                       arch="spiking_resnet18", limit_train_batches=4)
    results = tmp_path / "results"
    out = subprocess.run(command(file, results, 1), env=env(), capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 1, out.stdout + out.stderr
    by_lr = {t.params["lr"]: t for t in trials(results, "nan")}
    assert by_lr[0.08].state == TrialState.COMPLETE
    bad = by_lr[1e30]
    assert bad.state == TrialState.FAIL and bad.user_attrs["error"].startswith("Diverged: ")
    assert " is NaN at epoch 0, step " in bad.user_attrs["error"]
    assert "Traceback" not in out.stderr and "traceback" not in bad.user_attrs
    record = summaries(results, "nan")[f"trial-{bad.number:04d}"]
    assert record["status"] == "diverged" and record["error"] in bad.user_attrs["error"]
    assert (results / "nan" / "runs" / f"trial-{bad.number:04d}" / "config.json").is_file()


def test_hyperband_reports_every_epoch_to_the_pruner(tmp_path):
    path = tmp_path / "hb.yaml"
    params = {k: {"value": v} for k, v in {**TINY, "epochs": 2, "arch": "spiking_resnet18"}.items()}
    params["lr"] = {"min": 0.01, "max": 0.1, "distribution": "log_uniform_values"}
    path.write_text(yaml.safe_dump({
        "name": "hb", "method": "random", "run_cap": 2,
        "metric": {"name": "val/acc", "goal": "maximize"}, "parameters": params,
        "early_terminate": {"type": "hyperband", "min_iter": 1, "eta": 2}}))
    results = tmp_path / "results"
    out = subprocess.run(command(path, results, 1), env=env(), capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    done = trials(results, "hb")
    assert len(done) == 2 and len({t.params["lr"] for t in done}) == 2
    for t in done:
        assert t.state in (TrialState.COMPLETE, TrialState.PRUNED)
        assert 0.01 <= t.params["lr"] <= 0.1
        # the Lightning pruning callback reported val/acc after each validation epoch
        expected = 2 if t.state == TrialState.COMPLETE else len(t.intermediate_values)
        assert sorted(t.intermediate_values) == list(range(expected)) and expected >= 1
        status = summaries(results, "hb")[f"trial-{t.number:04d}"]["status"]
        assert status == ("completed" if t.state == TrialState.COMPLETE else "pruned")


# ---- the study logic without training (fast) ------------------------------------------------

def journal_study(tmp_path: Path, spec):
    from bench.sweep.storage import open_storage
    from bench.sweep.queue import open_study

    storage = open_storage(None, tmp_path / spec.name)
    return storage, open_study(spec, storage)


def grid_spec(name: str = "g", **top):
    from bench.sweep.spec import parse_spec

    return parse_spec({"name": name, "method": "grid", **top,
                       "parameters": {"seed": {"values": [0, 1, 2]}, "N": {"values": [1, 4]}}})


def test_enqueue_is_idempotent_and_a_dead_creator_is_taken_over(tmp_path):
    from bench.sweep.queue import CREATOR_ATTR, ENQUEUED_ATTR, open_study, study_id

    spec = grid_spec()
    storage, study = journal_study(tmp_path, spec)
    again = open_study(spec, storage)  # a re-run, or a second process: loads, adds nothing
    assert len(again.trials) == 6 and len({queued(t) for t in again.trials}) == 6
    assert [t.user_attrs["slot"] for t in again.trials] == list(range(6))
    # a creator killed half-way through enqueueing: the next process enqueues the rest
    dead = _dead_owner()
    half = optuna.create_study(study_name="h", storage=storage, direction="maximize")
    sid = study_id(storage, "h")
    storage.set_study_system_attr(sid, CREATOR_ATTR, dead)
    for slot, params in enumerate(grid_spec("h").slots()[:2]):
        half.enqueue_trial(params, user_attrs={"slot": slot})
    loaded = open_study(grid_spec("h"), storage)
    assert [t.user_attrs["slot"] for t in loaded.trials] == list(range(6))
    assert {queued(t) for t in loaded.trials} == {queued(t) for t in again.trials}
    assert storage.get_study_user_attrs(sid)[ENQUEUED_ATTR] == 6


def queued(t: optuna.trial.FrozenTrial) -> tuple:
    return tuple(sorted(t.system_attrs["fixed_params"].items()))


def _dead_owner(trial: int = -1) -> dict:
    """The owner record of a process that has exited."""
    from bench.sweep.storage import owner_info

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return {**owner_info(trial), "pid": proc.pid, "start": "0"}


def test_rerun_with_other_settings_exits_2(tmp_path, capsys):
    from bench.cli import main

    file = write_sweep(tmp_path / "g.yaml", "g", {"seed": [0, 1]})
    from bench.sweep.spec import load_spec

    journal_study(tmp_path, load_spec(file))
    rc = main(["sweep", str(file), "--set", "epochs=3", "--results", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and "differs in: parameters.epochs" in err and err.count("\n") == 1


def test_recover_settles_dead_trials_from_their_records(tmp_path):
    from bench.record import write_json_atomic
    from bench.sweep.storage import OWNER
    from bench.sweep.queue import pop_waiting, recover, study_id

    spec = grid_spec()
    storage, study = journal_study(tmp_path, spec)
    sid = study_id(storage, "g")
    runs = tmp_path / "runs"
    ids = [pop_waiting(storage, sid) for _ in range(4)]
    records = [{"status": "completed", "test_acc": 0.75}, {"status": "running"},
               {"status": "failed", "error": "FloatingPointError: loss is nan"}, None]
    for n, (tid, record) in enumerate(zip(ids, records)):
        storage.set_trial_param(tid, "seed", [0, 1, 2, 0][n],
                                optuna.distributions.CategoricalDistribution((0, 1, 2)))
        if n < 3:  # trial 3 has no owner yet: just popped by a live worker
            storage.set_trial_system_attr(tid, OWNER, _dead_owner(n))
            (runs / str(n)).mkdir(parents=True)
            write_json_atomic(runs / str(n) / "summary.json", record)
            storage.set_trial_user_attr(tid, "run_dir", str(runs / str(n)))
    requeued = recover(study, storage, spec)
    t = {x.number: x for x in storage.get_all_trials(sid)}
    assert requeued == [1]
    assert t[0].state == TrialState.COMPLETE and t[0].value == 0.75  # died before telling
    assert t[1].state == TrialState.FAIL and t[1].user_attrs["error"].startswith("interrupted")
    assert json.loads((runs / "1" / "summary.json").read_text())["status"] == "interrupted"
    assert t[2].state == TrialState.FAIL and "nan" in t[2].user_attrs["error"]
    assert t[3].state == TrialState.RUNNING
    retry = [x for x in t.values() if x.system_attrs.get("failed_trial") == 1]
    assert len(retry) == 1 and retry[0].state == TrialState.WAITING
    assert retry[0].params == t[1].params and retry[0].user_attrs["slot"] == t[1].user_attrs["slot"]
    assert recover(study, storage, spec) == []  # settled once


def test_workers_are_pinned_one_gpu_each(monkeypatch):
    from bench.sweep.workers import cpu_threads, gpu_env

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    assert gpu_env(3) == [{"CUDA_VISIBLE_DEVICES": g} for g in ("0", "1", "0")]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    assert gpu_env(2) == [{}, {}]
    assert cpu_threads(2, [{}, {}]) == max(1, (os.cpu_count() or 1) // 2)
    assert cpu_threads(1, [{}]) is None


def test_multi_objective_sweep_end_to_end(tmp_path, capsys):
    """bench.objectives through real trials: a two-direction study whose trial values are the
    runs' own summary numbers, and `bench status` naming its Pareto front."""
    params = {"arch": {"values": ["spiking_resnet18", "sparse_resnet18"]}}
    params.update({k: {"value": v} for k, v in TINY.items()})
    file = tmp_path / "pareto.yaml"
    file.write_text(yaml.safe_dump({
        "name": "pareto", "method": "grid", "parameters": params,
        "metric": {"name": "test_acc", "goal": "maximize"},
        "bench": {"objectives": [{"name": "test_acc", "goal": "maximize"},
                                 {"name": "energy_uj_per_image", "goal": "minimize"}]}}))
    results = tmp_path / "results"
    out = subprocess.run(command(file, results, 1), env=env(), capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    storage = JournalStorage(JournalFileBackend(str(results / "pareto" / "optuna.journal")))
    study = optuna.load_study(study_name="pareto", storage=storage)
    assert study.directions == [optuna.study.StudyDirection.MAXIMIZE,
                                optuna.study.StudyDirection.MINIMIZE]
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(done) == 2
    records = summaries(results, "pareto")
    for t in done:
        s = records[f"trial-{t.number:04d}"]
        assert t.values == [s["test_acc"], s["energy_uj_per_image"]]
        assert s["energy_uj_per_image"] > 0
    capsys.readouterr()
    assert main_status(str(results / "pareto")) == 0
    printed = capsys.readouterr().out
    front = {t.number for t in study.best_trials}
    assert front and f"Pareto front ({len(front)} trial" in printed
    assert "energy_uj_per_image (minimize)" in printed
