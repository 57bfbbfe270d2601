"""End-to-end: one instrumented run on digits writes a complete, consistent record."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from bench import schema
from bench.cli import main

RECORD_FILES = ("config.json", "summary.json", "metrics.csv", "layers.csv", "grads.csv")
CSV_HEADERS = {
    "metrics.csv": "epoch,step,train/loss,train/acc,val/loss,val/acc,val/spikes_total_per_image,"
                   "val/energy_uj_per_image,time_s",
    "layers.csv": "split,epoch,probe,kind,index,levels,neurons,spikes_per_image,nonzero_per_image,"
                  "max_spike,rate",
    "grads.csv": "step,group,grad_norm"}


def record_dir(study: dict, arch: str) -> Path:
    return Path(study["results"]) / "tiny" / "runs" / arch


@pytest.mark.parametrize("arch", ["sew_resnet18", "sparse_resnet18"])
def test_record_files_and_sane_values(digits_study, arch):
    d = record_dir(digits_study, arch)
    for name in RECORD_FILES:
        assert (d / name).is_file(), name
    s = json.loads((d / "summary.json").read_text())
    assert list(s) == [f.name for f in schema.SUMMARY_FIELDS if f.always]  # README's, in order
    assert s["status"] == "completed" and s["error"] is None
    for key in ("dataset", "arch", "T", "N", "estimator", "barrier_estimator", "seed"):
        assert key in s["config"]
    assert s["config"]["arch"] == arch and s["run_id"] == arch
    assert 0.0 <= s["test_acc"] <= 1.0
    assert s["epochs_completed"] == 2
    assert set(f"sum{i}" for i in range(8)) <= set(s["spikes_per_image"])
    assert s["spikes_total_per_image"] > 0
    assert 0 < s["nonzero_total_per_image"] <= s["spikes_total_per_image"]
    assert s["energy_uj_per_image"] > 0
    assert s["energy"]["total_uj_per_image"] == s["energy_uj_per_image"]
    assert {"stem", "block0", "block7", "head", "total"} <= set(s["grad_norm_per_block"])
    assert all(v >= 0 for v in s["grad_norm_per_block"].values())
    config = json.loads((d / "config.json").read_text())
    assert config["versions"]["torch"] and config["arch"] == arch
    assert set(schema.PROVENANCE) <= set(config)
    # the CSV formats old records were written in (bench.schema names them; reports read both)
    for name, header in CSV_HEADERS.items():
        assert (d / name).read_text().splitlines()[0] == header
    metrics = pd.read_csv(d / "metrics.csv")
    assert list(metrics["epoch"]) == [0, 1]
    assert metrics["val/acc"].between(0, 1).all() and metrics["train/loss"].gt(0).all()
    grads = pd.read_csv(d / "grads.csv")
    assert grads["step"].nunique() == 6  # grad_every=1, 3 steps x 2 epochs


def test_summary_totals_equal_layers_csv(digits_study):
    for arch in ("sew_resnet18", "sparse_resnet18"):
        d = record_dir(digits_study, arch)
        s = json.loads((d / "summary.json").read_text())
        layers = pd.read_csv(d / "layers.csv")
        test = layers[layers.split == "test"]
        assert test["spikes_per_image"].sum() == pytest.approx(s["spikes_total_per_image"], rel=1e-12)
        assert test["nonzero_per_image"].sum() == pytest.approx(s["nonzero_total_per_image"], rel=1e-12)
        assert sorted(layers[layers.split == "val"].epoch.unique()) == [0, 1]
        # every z is an integer count: spikes per image times images is whole
        assert (test["max_spike"] == test["max_spike"].round()).all()


def test_avalanche_sew_exceeds_n_sparse_never(digits_study):
    n = 4
    sew = digits_study["sew_resnet18"]["max_spike_per_probe"]
    sparse = digits_study["sparse_resnet18"]["max_spike_per_probe"]
    sums = [f"sum{i}" for i in range(8)]
    assert max(sew[s] for s in sums) > n, sew
    assert all(sparse[s] <= n for s in sums), sparse


def test_offline_wandb_run_holds_spike_metrics(digits_study):
    wandb_dir = digits_study["sparse_resnet18"]["wandb_dir"]
    assert wandb_dir and Path(wandb_dir).is_dir()
    logs = list(Path(wandb_dir).glob("*.wandb"))
    assert logs, f"no .wandb log in {wandb_dir}"
    out = subprocess.run([str(Path(sys.executable).parent / "wandb"), "leet", "inspect", "--summary",
                          "--json", str(logs[0])], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "test/spikes/sum1_per_image" in text
    assert "test/spikes_total_per_image" in text
    assert "grad_norm/block0" in text and "energy_uj_per_image" in text


@pytest.mark.parametrize("args, needle", [
    (["--set", "colour=red"], "unknown config key 'colour'"),
    (["--set", "arch=resnet9000"], "config key 'arch'"),
    (["--set", "T=0"], "config key 'T'"),
    (["--set", "N=two"], "config key 'N'"),
    (["--set", "estimator=magic"], "sigmoid, ste, ste_clipped"),
    (["--set", "noequals"], "key=value"),
    (["--config", "/nonexistent/run.yaml"], "config file not found"),
])
def test_bad_input_one_line_exit_2(capsys, args, needle):
    assert main(["run", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_missing_cifar_is_one_line_exit_2(tmp_path, capsys):
    code = main(["run", "--set", "dataset=cifar10", "--set", f"data_root={tmp_path}",
                 "--set", "wandb=disabled", "--results", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "cifar10" in err and str(tmp_path) in err and len(err.splitlines()) == 1


def test_nan_loss_stops_the_run_as_diverged_in_one_line_and_keeps_the_record(tmp_path, capsys):
    code = main(["run", "--set", "dataset=digits", "--set", "lr=1e30", "--set", "epochs=1",
                 "--set", "limit_train_batches=4", "--set", "arch=spiking_resnet18",
                 "--set", "wandb=disabled", "--set", "progress_bar=false", "--set", "run_id=nan",
                 "--results", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    diverged = [ln for ln in err if ln.startswith("bench run: run diverged: loss is NaN at epoch 0")]
    assert len(diverged) == 1, err
    assert not any("Traceback" in ln for ln in err)
    s = json.loads((tmp_path / "default" / "runs" / "nan" / "summary.json").read_text())
    assert s["status"] == "diverged" and s["error"].startswith("loss is NaN at epoch 0, step ")
    assert (tmp_path / "default" / "runs" / "nan" / "config.json").is_file()
