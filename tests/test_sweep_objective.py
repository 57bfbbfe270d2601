"""A sweep trial's errors, in process: a bug keeps its traceback, a user error is one line."""

from __future__ import annotations

import json

import pytest
from optuna.trial import TrialState
from test_sweep_run import grid_spec, journal_study

from bench.errors import BenchError
from bench.sweep.objective import MetricMissing, expected


def _run_one(tmp_path, monkeypatch, fake_execute):
    """Claim trial 0 of a grid and run it with bench.run.execute replaced."""
    import bench.run
    from bench.sweep.queue import pop_waiting, run_trial, study_id
    from bench.sweep.queue import WorkerJob

    monkeypatch.setattr(bench.run, "execute", fake_execute)
    spec = grid_spec()
    storage, study = journal_study(tmp_path, spec)
    tid = pop_waiting(storage, study_id(storage, "g"))
    assert run_trial(study, storage, tid, WorkerJob(spec, None, str(tmp_path))) == "done"
    trial = storage.get_trial(tid)
    record = json.loads((tmp_path / "g" / "runs" / "trial-0000" / "summary.json").read_text())
    return trial, record


def lookup_that_has_a_bug(cfg, **kwargs):
    return {}["test_acc"]


def test_a_bug_fails_the_trial_with_its_traceback(tmp_path, monkeypatch, capsys):
    trial, record = _run_one(tmp_path, monkeypatch, lookup_that_has_a_bug)
    assert trial.state == TrialState.FAIL
    assert trial.user_attrs["error"] == "KeyError: 'test_acc'"
    trace = trial.user_attrs["traceback"]
    assert trace.startswith("Traceback (most recent call last):")
    assert "in lookup_that_has_a_bug" in trace and "in objective" in trace
    assert trace.rstrip().endswith("KeyError: 'test_acc'")
    assert record["status"] == "failed" and record["error"] == "KeyError: 'test_acc'"
    assert record["traceback"] == trace and record["trial"] == 0
    assert f"trial 0: {trace}" in capsys.readouterr().err


def bad_setting(cfg, **kwargs):
    raise BenchError("config key 'lr': 0.0 must be > 0")


def test_a_user_error_fails_the_trial_in_one_line(tmp_path, monkeypatch, capsys):
    trial, record = _run_one(tmp_path, monkeypatch, bad_setting)
    assert trial.state == TrialState.FAIL
    assert trial.user_attrs["error"] == "BenchError: config key 'lr': 0.0 must be > 0"
    assert "traceback" not in trial.user_attrs
    assert record["status"] == "failed" and record["error"] == trial.user_attrs["error"]
    assert "traceback" not in record
    assert capsys.readouterr().err == ""


class OutOfMemoryError(RuntimeError):
    """Named as torch.cuda's."""


@pytest.mark.parametrize("exc, result", [
    (BenchError("bad value"), True), (FloatingPointError("nan loss"), True),
    (MemoryError(), True), (MetricMissing("metric 'x' is None"), True),
    (OutOfMemoryError("CUDA out of memory"), True),
    (ValueError("a bug"), False), (KeyError("a bug"), False), (RuntimeError("a bug"), False),
    (TypeError("a bug"), False),
])
def test_only_the_listed_errors_are_expected(exc, result):
    assert expected(exc) is result
