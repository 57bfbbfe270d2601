"""summary.json's one writer (bench.record): reading, marking and failure summaries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import record, schema


def _write(folder: Path, data) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "summary.json"
    path.write_text(json.dumps(data))
    return path


def test_read_summary_of_missing_damaged_and_foreign_files(tmp_path):
    assert record.read_summary(None) == {} and record.read_summary(tmp_path / "none") == {}
    _write(tmp_path / "list", [1, 2])
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "summary.json").write_text('{"status": ')
    assert record.read_summary(tmp_path / "list") == {}
    assert record.read_summary(tmp_path / "broken") == {}
    _write(tmp_path / "ok", {"status": "running", "test_acc": None})
    assert record.read_summary(str(tmp_path / "ok")) == {"status": "running", "test_acc": None}


def test_mark_summary_keeps_what_was_measured(tmp_path):
    path = _write(tmp_path / "run", {"run_id": "run", "status": "running", "epochs_completed": 3})
    record.mark_summary(tmp_path / "run", "interrupted", "interrupted (SIGTERM)")
    assert json.loads(path.read_text()) == {"run_id": "run", "status": "interrupted",
                                            "epochs_completed": 3,
                                            "error": "interrupted (SIGTERM)"}
    record.mark_summary(tmp_path / "nothing", "failed", "x")  # no summary: nothing is created
    record.mark_summary(None, "failed", "x")
    assert not (tmp_path / "nothing").exists()


def test_mark_summary_on_a_full_disk_is_left_for_later(tmp_path, monkeypatch):
    path = _write(tmp_path / "run", {"status": "running"})

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(record, "write_json_atomic", full)
    record.mark_summary(tmp_path / "run", "failed", "x")
    assert json.loads(path.read_text()) == {"status": "running"}


def test_failure_summary_of_a_run_that_never_started(tmp_path):
    folder = tmp_path / "runs" / "trial-0007"
    record.write_failure_summary(folder, study="s", trial=7, config={"T": 0},
                                 error="BenchError: T must be >= 1")
    assert json.loads((folder / "summary.json").read_text()) == {
        "run_id": "trial-0007", "study": "s", "trial": 7, "config": {"T": 0},
        "status": "failed", "error": "BenchError: T must be >= 1"}


def test_failure_summary_keeps_an_existing_record(tmp_path):
    folder = tmp_path / "trial-0001"
    _write(folder, {"config": {"T": 1, "N": 4}, "run_id": "trial-0001", "study": "s",
                    "trial": 1, "status": "running", "val_acc": 0.5})
    record.write_failure_summary(folder, study="s", trial=1, config={"T": 1},
                                 error="FloatingPointError: loss is nan")
    assert json.loads((folder / "summary.json").read_text()) == {
        "run_id": "trial-0001", "study": "s", "trial": 1, "config": {"T": 1, "N": 4},
        "status": "failed", "val_acc": 0.5, "error": "FloatingPointError: loss is nan"}


def test_write_json_atomic_failure_keeps_the_old_file_and_no_temp(tmp_path):
    path = _write(tmp_path, {"status": "running"})
    loop: dict = {}
    loop["self"] = loop
    with pytest.raises(ValueError):
        record.write_json_atomic(path, loop)
    assert json.loads(path.read_text()) == {"status": "running"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


def test_schema_lists_name_documented_fields():
    fields = [f.name for f in schema.SUMMARY_FIELDS]
    assert len(set(fields)) == len(fields)
    assert set(schema.SUMMARY_SCALARS) | set(schema.SUMMARY_OBJECTS) < set(fields)
    assert not set(schema.SUMMARY_SCALARS) & set(schema.SUMMARY_OBJECTS)
    assert schema.STATUS in fields and schema.RUNNING in schema.STATUSES
    assert schema.EPOCH_METRICS == ["train/loss", "train/acc", "val/loss", "val/acc",
                                    "val/spikes_total_per_image", "val/energy_uj_per_image"]
    assert set(schema.CHECKPOINT_FILES.values()) == {"last.ckpt", "best.ckpt"}
