"""What a run shows in W&B, read back from the offline `.wandb` log with `wandb leet inspect`
(the tiny digits runs of conftest's `digits_study`, trained once per session)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import tiny_config

WANDB = str(Path(sys.executable).parent / "wandb")


def inspect(log: Path, *flags: str):
    out = subprocess.run([WANDB, "leet", "inspect", "--json", *flags, str(log)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def wandb_log(folder: str | Path) -> Path:
    logs = list(Path(folder).glob("*.wandb"))
    assert len(logs) == 1, f"no single .wandb log in {folder}"
    return logs[0]


@pytest.fixture(scope="module")
def sparse_run(digits_study) -> dict:
    """The Sparse-ResNet18 run: its summary.json, record folder, W&B records and summary."""
    summary = digits_study["sparse_resnet18"]
    log = wandb_log(summary["wandb_dir"])
    records = [json.loads(line) for line in inspect(log).splitlines() if line.strip()]
    return {"summary": summary, "folder": Path(summary["wandb_dir"]), "records": records,
            "record_dir": Path(digits_study["results"]) / "tiny" / "runs" / "sparse_resnet18",
            "wandb": json.loads(inspect(log, "--summary"))}


def of_type(records: list[dict], kind: str) -> list[dict]:
    return [r[kind] for r in records if r["type"] == kind]


def test_name_tags_notes_group_and_config_once(sparse_run):
    run = of_type(sparse_run["records"], "run")[0]
    assert run["display_name"] == "tiny/sparse_resnet18-T1N4-seed3"
    assert run["tags"] == ["study:tiny", "dataset:digits", "arch:sparse_resnet18",
                           "estimator:sigmoid"]
    assert run["run_group"] == "tiny" and run["job_type"] == "run"
    assert "sparse_resnet18 on digits, T=1, N=4" in run["notes"] and "2 epochs" in run["notes"]
    config = sparse_run["wandb"]["config"]
    # every run config key once (no nested config.<key> copy from save_hyperparameters)
    assert not any(k.startswith("config") for k in config)
    assert {k for k in config if not k.startswith("_")} == set(sparse_run["summary"]["config"])
    assert config["lr"] == 0.08 and sparse_run["summary"]["config"]["lr"] is None  # resolved
    assert config["wandb_system_metrics"] is True
    assert of_type(sparse_run["records"], "stats"), "system metrics on by default"


def test_summary_is_the_last_logged_value(sparse_run):
    history = of_type(sparse_run["records"], "history")
    rows = [h["item"] for h in history]
    last_grad = [r for r in rows if "grad_norm/block0" in r][-1]["grad_norm/block0"]
    summary = sparse_run["wandb"]["summary"]
    assert summary["grad_norm/block0"] == pytest.approx(last_grad)
    assert summary["grad_norm_epoch_mean/block0"] == pytest.approx(
        sparse_run["summary"]["grad_norm_per_block"]["block0"])
    # best.ckpt is chosen on the max val/acc: so is the runs table's val/acc (define_metric)
    val_acc = [r["val/acc"] for r in rows if "val/acc" in r]
    assert len(val_acc) == 2 and summary["val/acc"]["max"] == pytest.approx(max(val_acc))
    assert summary["best/val_acc"] == pytest.approx(max(val_acc))
    assert summary["best/epoch"] == int(np.argmax(val_acc))
    metrics = pd.read_csv(sparse_run["record_dir"] / "metrics.csv")
    best = metrics.loc[metrics["val/acc"].idxmax()]
    assert summary["best/energy_uj_per_image"] == pytest.approx(best["val/energy_uj_per_image"])
    # per-epoch validation spikes per probe as curves; test numbers only in the summary
    curves = [r for r in rows if "val_spikes/sum1" in r]
    layers = pd.read_csv(sparse_run["record_dir"] / "layers.csv")
    expected = layers[(layers.split == "val") & (layers.probe == "sum1")]["spikes_per_image"]
    assert [r["val_spikes/sum1"] for r in curves] == pytest.approx(list(expected))
    assert sum(k.startswith("val_spikes/") for k in curves[0]) == 28  # every probe
    assert not any(k.startswith("test/") for r in rows for k in r)
    assert summary["test/spikes/sum1_per_image"] == pytest.approx(
        sparse_run["summary"]["spikes_per_image"]["sum1"])
    # console captured (the Logs tab), offline too
    assert (sparse_run["folder"] / "files" / "output.log").is_file()
    assert summary["test_acc"] == pytest.approx(sparse_run["summary"]["test_acc"])
    assert sparse_run["summary"]["val_acc"] == pytest.approx(metrics["val/acc"].iloc[-1])
    assert summary["status"] == "completed"
    # the learning rate at every optimizer step (the scheduler steps every batch)
    lr = [r for r in rows if any(k.startswith("lr-") for k in r)]
    assert len(lr) == int(metrics["step"].iloc[-1]) > 2


def test_layer_table_and_avalanche_in_depth_order(sparse_run):
    tables = sparse_run["folder"] / "files" / "media" / "table"
    layers = json.loads(next(tables.glob("layers_*.table.json")).read_text())
    csv = pd.read_csv(sparse_run["record_dir"] / "layers.csv")
    assert layers["columns"] == ["split", "epoch", "probe", "kind", "index", "spikes_per_image",
                                 "nonzero_per_image", "max_spike", "rate"]
    assert len(layers["data"]) == len(csv) == 3 * 28  # val epochs 0, 1 and test; 28 probes
    assert {(r[0], r[1]) for r in layers["data"]} == {("val", 0), ("val", 1), ("test", 2)}
    lines = json.loads(next(tables.glob("avalanche_table_*.table.json")).read_text())
    by_key: dict[str, list] = {}
    for step, key, value in lines["data"]:
        by_key.setdefault(key, []).append((step, value))
    assert sorted(by_key) == ["test", "val (epoch 1)"]
    for key, split, epoch in (("test", "test", 2), ("val (epoch 1)", "val", 1)):
        sums = csv[(csv.split == split) & (csv.epoch == epoch) & csv.probe.str.match(r"sum\d")]
        expected = sums.sort_values("index")["spikes_per_image"].tolist()
        assert [s for s, _ in by_key[key]] == list(range(8))  # sum0..sum7
        assert [v for _, v in by_key[key]] == pytest.approx(expected)


def test_run_record_is_an_artifact(sparse_run):
    artifacts = of_type(sparse_run["records"], "artifact")
    record = [a for a in artifacts if a["type"] == "run-record"]
    assert len(record) == 1 and record[0]["name"] == "record-tiny-sparse_resnet18"
    files = {c["path"] for c in record[0]["manifest"]["contents"]}
    assert files == {"config.json", "summary.json", "metrics.csv", "layers.csv", "grads.csv"}
    (model,) = [a for a in artifacts if a["type"] == "model"]  # the run's checkpoints
    assert {c["path"] for c in model["manifest"]["contents"]} == {
        f"{which}.ckpt" for which in sparse_run["summary"]["checkpoints"]}
    assert sparse_run["summary"]["wandb_run"].endswith("/" + of_type(
        sparse_run["records"], "run")[0]["run_id"])


def test_trial_user_attrs_point_at_the_wandb_run(sparse_run):
    from bench.sweep.attrs import headline

    attrs = headline(sparse_run["record_dir"])
    run = of_type(sparse_run["records"], "run")[0]
    assert attrs["wandb_run"] == f"bench/{run['run_id']}"
    assert attrs["wandb_dir"] == str(sparse_run["folder"])
    assert attrs["test_acc"] == sparse_run["summary"]["test_acc"]
    assert attrs["val_acc"] is not None and attrs["epochs_completed"] == 2


def test_checkpoints_become_a_model_artifact(tmp_path):
    import wandb

    from bench.tracking import log_artifacts

    record = tmp_path / "study" / "runs" / "r1"
    record.mkdir(parents=True)
    for name in ("summary.json", "metrics.csv", "best.ckpt", "last.ckpt"):
        (record / name).write_text(name)
    run = wandb.init(mode="offline", dir=str(tmp_path), project="t",
                     settings=wandb.Settings(silent=True, x_disable_stats=True))
    log_artifacts(run, record)
    folder = Path(run.dir).parent
    run.finish()
    records = [json.loads(x) for x in inspect(wandb_log(folder)).splitlines() if x.strip()]
    found = {a["type"]: a for a in of_type(records, "artifact")}
    assert found["model"]["name"] == "model-study-r1"
    assert {c["path"] for c in found["model"]["manifest"]["contents"]} == {"best.ckpt",
                                                                           "last.ckpt"}
    assert {c["path"] for c in found["run-record"]["manifest"]["contents"]} == {
        "summary.json", "metrics.csv"}


def test_system_metrics_switch_and_trial_names(tmp_path):
    from bench.tracking import make_logger, run_name

    on = make_logger(tiny_config(tmp_path, wandb="offline"), tmp_path)
    off = make_logger(tiny_config(tmp_path, wandb="offline", wandb_system_metrics=False),
                      tmp_path, trial=7)
    assert on._wandb_init["settings"].x_disable_stats is False
    assert off._wandb_init["settings"].x_disable_stats is True
    assert off._wandb_init["job_type"] == "sweep-trial"
    cfg = tiny_config(tmp_path, study="avalanche", arch="sew_resnet18", seed=1)
    assert run_name(cfg, 7) == "avalanche/sew_resnet18-T1N4-seed1-t0007"


def test_every_artifact_entry_lies_in_the_run_record_and_travels_with_a_copy(sparse_run,
                                                                              tmp_path):
    """Staged files and checkpoints are inside results/ (absolute paths): a copy of results/
    made elsewhere, with the original renamed away, holds every file the .wandb log names."""
    import shutil

    results = sparse_run["record_dir"].parents[2].resolve()
    copy = tmp_path / "elsewhere" / "results"
    shutil.copytree(results, copy)
    moved = results.with_name(results.name + "-renamed")
    results.rename(moved)
    try:
        log = wandb_log(copy / sparse_run["folder"].relative_to(results))
        records = [json.loads(x) for x in inspect(log).splitlines() if x.strip()]
        entries = [c for a in of_type(records, "artifact") for c in a["manifest"]["contents"]]
        assert len(entries) >= 5 + 2  # the record's five files, two checkpoints, tables
        for entry in entries:
            path = Path(entry["local_path"])
            assert path.is_absolute(), entry
            assert (copy / path.relative_to(results)).is_file(), entry  # in the copy
            assert not path.exists()  # the original is gone: nothing is read from it
    finally:
        moved.rename(results)


def test_model_artifacts_are_opt_in_for_sweep_trials(tmp_path):
    import wandb

    from bench.tracking import finish

    record = tmp_path / "study" / "runs" / "t1"
    record.mkdir(parents=True)
    for name in ("summary.json", "best.ckpt"):
        (record / name).write_text(name)
    types = {}
    for trial, wanted in ((3, None), (3, True), (None, None)):
        run = wandb.init(mode="offline", dir=str(tmp_path), project="t",
                         settings=wandb.Settings(silent=True, x_disable_stats=True))
        folder = Path(run.dir).parent

        class Logger:  # finish() reads only .experiment
            experiment = run

        finish(Logger(), {"status": "completed", "trial": trial,
                          "config": {"wandb_model_artifacts": wanted}}, record)
        records = [json.loads(x) for x in inspect(wandb_log(folder)).splitlines() if x.strip()]
        types[(trial, wanted)] = sorted(a["type"] for a in of_type(records, "artifact"))
    assert types == {(3, None): ["run-record"], (3, True): ["model", "run-record"],
                     (None, None): ["model", "run-record"]}
