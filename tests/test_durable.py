"""Runs that survive: checkpoints, `bench run --resume` after a kill -9, and `bench eval`."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from bench import schema
from bench.cli import main
from conftest import TINY, bench_command, child_env, csv_rows, tiny_config

# 4 short epochs: 2 training, 2 validation and 2 test batches of 8 images each
SHORT = {**TINY, "epochs": 4, "batch_size": 8, "limit_train_batches": 2, "limit_val_batches": 2,
         "limit_test_batches": 2}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """An uninterrupted 4-epoch run (offline W&B, both checkpoints): its summary and folder."""
    from bench.config import build_config
    from bench.run import execute

    results = tmp_path_factory.mktemp("durable")
    cfg = build_config(SHORT, {"results": str(results), "run_id": "reference"})
    summary = execute(cfg)
    return {"summary": summary, "dir": results / "default" / "runs" / "reference",
            "results": results}


def test_checkpoints_named_in_summary_and_loadable(reference):
    from bench.module import SpikingClassifier

    d, s = reference["dir"], reference["summary"]
    assert s["checkpoints"] == {"last": "last.ckpt", "best": "best.ckpt"}
    assert json.loads((d / "summary.json").read_text())["checkpoints"] == s["checkpoints"]
    assert not list(d.glob(".*.ckpt*")) and not list(d.glob("*-v1.ckpt"))  # no temp or versioned
    for name in ("last.ckpt", "best.ckpt"):
        model = SpikingClassifier.load_from_checkpoint(d / name, map_location="cpu")
        assert model.cfg.to_dict() == s["config"]
    import torch

    last = torch.load(d / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["epoch"] == 3 and last["optimizer_states"] and last["lr_schedulers"]
    best = torch.load(d / "best.ckpt", map_location="cpu", weights_only=True)
    metrics = pd.read_csv(d / "metrics.csv")
    # best.ckpt is the first epoch reaching the highest val/acc
    assert best["epoch"] == int(metrics["val/acc"].idxmax())
    assert "optimizer_states" not in best


def test_checkpoint_none_and_a_callers_model_checkpoint(tmp_path, capsys):
    assert main(["run", "--set", "checkpoint=sometimes"]) == 2
    assert "config key 'checkpoint'" in capsys.readouterr().err
    from lightning.pytorch.callbacks import ModelCheckpoint

    from bench.run import execute

    cfg = tiny_config(tmp_path, epochs=1, batch_size=8, limit_train_batches=2,
                      limit_val_batches=2, limit_test_batches=2, wandb="disabled",
                      checkpoint="none", run_id="none")
    mine = ModelCheckpoint(dirpath=tmp_path / "mine", filename="x")
    assert execute(cfg, callbacks=[mine])["checkpoints"] == {}
    assert not list((tmp_path / "default" / "runs" / "none").glob("*.ckpt"))
    assert (tmp_path / "mine" / "x.ckpt").is_file()


def test_resume_after_kill_9_equals_uninterrupted_run(reference, tmp_path, capsys):
    run_id = "killed"
    d = reference["results"] / "default" / "runs" / run_id
    sets = [a for k, v in SHORT.items() for a in ("--set", f"{k}={v}")]
    proc = subprocess.Popen(bench_command("run", *sets, "--set", f"run_id={run_id}",
                                   "--results", str(reference["results"])),
                            env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 600
        while csv_rows(d / "metrics.csv") < 2 and proc.poll() is None:
            assert time.monotonic() < deadline, "the run never finished its 2nd epoch"
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert json.loads((d / "summary.json").read_text())["status"] == "running"

    # as a user's shell runs it (W&B not silenced): the console holds no W&B warning
    loud = {k: v for k, v in child_env().items() if k != "WANDB_SILENT"}
    out = subprocess.run(bench_command("run", "--resume", str(d)), env=loud, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    console = out.stdout + out.stderr
    assert "wandb: WARNING" not in console and "Tip:" not in console, console
    assert "deprecated" not in console, console  # Lightning's use of a deprecated torch API
    # the summary table's numbers as a reader wants them: 4 significant digits, 64,464
    assert re.search(r"^test_acc +0\.\d{1,4}$", out.stdout, re.M), out.stdout
    assert re.search(r"^spikes_total_per_image +\d{1,3}(,\d{3})*$", out.stdout, re.M), out.stdout
    ref, s = reference["dir"], json.loads((d / "summary.json").read_text())
    assert s["status"] == "completed" and s["run_id"] == run_id and s["epochs_completed"] == 4
    assert s["test_acc"] == reference["summary"]["test_acc"]
    assert s["spikes_per_image"] == reference["summary"]["spikes_per_image"]
    got, want = pd.read_csv(d / "metrics.csv"), pd.read_csv(ref / "metrics.csv")
    assert list(got["epoch"]) == [0, 1, 2, 3]
    pd.testing.assert_frame_equal(got.drop(columns="time_s"), want.drop(columns="time_s"),
                                  check_exact=True)
    for name in ("grads.csv", "layers.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(d / name), pd.read_csv(ref / name),
                                      check_exact=True)
    # one W&B run, continued: the resumed offline folder carries the first one's id
    runs = sorted(p.name for p in (d / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and len({r.rsplit("-", 1)[1] for r in runs}) == 1, runs

    # a completed run, a folder without a checkpoint or without config: one line, exit 2
    capsys.readouterr()
    for folder, needle in ((d, "already completed"), (tmp_path, "no config.json")):
        assert main(["run", "--resume", str(folder)]) == 2
        err = capsys.readouterr().err
        assert needle in err and len(err.strip().splitlines()) == 1, err


def test_resume_refuses_folder_without_last_ckpt(tmp_path, capsys):
    d = tmp_path / "default" / "runs" / "x"
    d.mkdir(parents=True)
    (d / "config.json").write_text("{}")
    assert main(["run", "--resume", str(d)]) == 2
    err = capsys.readouterr().err.strip()
    assert "no last.ckpt" in err and len(err.splitlines()) == 1


def _eval_summary(run: Path, eval_id_prefix: str) -> dict:
    found = sorted((run / "evals").glob(f"{eval_id_prefix}*/summary.json"))
    assert found, list((run / "evals").iterdir())
    return json.loads(found[-1].read_text())


def test_eval_of_last_ckpt_reproduces_the_run(reference, capsys):
    d, s = reference["dir"], reference["summary"]
    assert main(["eval", str(d / "last.ckpt")]) == 0
    e = _eval_summary(d, "test-last-")
    assert e["status"] == "completed" and e["eval_of"] == "reference" and e["split"] == "test"
    assert e["checkpoint"] == "last" and e["epochs_completed"] == 4
    assert e["test_acc"] == s["test_acc"]
    assert e["spikes_per_image"] == s["spikes_per_image"]
    assert e["max_spike_per_probe"] == s["max_spike_per_probe"]
    assert e["energy_uj_per_image"] == s["energy_uj_per_image"]
    layers = pd.read_csv(d / "evals" / e["eval_id"] / "layers.csv")
    assert set(layers["split"]) == {"test"} and len(layers) == len(s["spikes_per_image"])
    assert e["wandb_dir"] and list(Path(e["wandb_dir"]).glob("*.wandb"))
    # README "The run record": a run's fields but two, and the eval's own
    run_fields = {f.name for f in schema.SUMMARY_FIELDS if f.always} - {"checkpoints", "wandb_run"}
    assert set(e) == run_fields | {f.name for f in schema.EVAL_FIELDS}


def test_eval_under_value_counting_changes_energy_not_accuracy(reference):
    d, s = reference["dir"], reference["summary"]
    assert s["config"]["energy_counting"] == "packet"
    assert main(["eval", str(d), "--set", "energy_counting=value", "--set", "wandb=disabled",
                 "--split", "val"]) == 0
    e = _eval_summary(d, "val-best-")
    assert e["checkpoint"] == "best"
    assert e["sets"] == {"energy_counting": "value", "wandb": "disabled"}
    assert e["energy"]["counting"] == "value"
    assert main(["eval", str(d), "--set", "wandb=disabled", "--split", "val"]) == 0
    same = [json.loads(p.read_text()) for p in (d / "evals").glob("val-best-*/summary.json")]
    event = next(x for x in same if x["config"]["energy_counting"] == "packet")
    assert e["val_acc"] == event["val_acc"] and e["test_acc"] is None
    assert e["spikes_per_image"] == event["spikes_per_image"]
    # by value a spike of k is k events: more than one per non-zero spike when N > 1
    assert e["energy_uj_per_image"] > event["energy_uj_per_image"]


@pytest.mark.parametrize("sets, needle", [
    (["N=2"], "config key 'N' defines the trained network (4)"),
    (["arch=sew_resnet18"], "config key 'arch' defines the trained network"),
    (["T=2"], "config key 'T'"),
    (["rounding=round"], "config key 'rounding'"),
    (["study=other"], "config key 'study' names the trained run"),
    (["colour=red"], "unknown config key 'colour'"),
])
def test_eval_refuses_network_changes_in_one_line(reference, capsys, sets, needle):
    before = sorted((reference["dir"] / "evals").glob("*")) \
        if (reference["dir"] / "evals").is_dir() else []
    args = [a for kv in sets for a in ("--set", kv)]
    assert main(["eval", str(reference["dir"]), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1 and "Traceback" not in err
    after = sorted((reference["dir"] / "evals").glob("*")) \
        if (reference["dir"] / "evals").is_dir() else []
    assert after == before  # nothing written


def test_eval_of_missing_or_foreign_target_is_one_line(tmp_path, capsys):
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    for target, needle in ((tmp_path, "no best.ckpt or last.ckpt"),
                           (junk, "not a readable bench checkpoint"),
                           (tmp_path / "nope", "not a run folder or a .ckpt file")):
        assert main(["eval", str(target)]) == 2
        err = capsys.readouterr().err.strip()
        assert needle in err and len(err.splitlines()) == 1


def test_report_rows_include_evals(reference):
    from bench.report.load import load_records

    if not (reference["dir"] / "evals").is_dir():
        assert main(["eval", str(reference["dir"]), "--set", "wandb=disabled"]) == 0
    records = load_records([reference["results"] / "default"])
    evals = records.runs[records.runs["eval_of"] == "reference"]
    assert len(evals) == len(list((reference["dir"] / "evals").glob("*/summary.json")))
    assert (evals["uid"].str.startswith("default/reference/evals/")).all()
    runs = records.runs[records.runs["eval_of"] == ""]
    assert "default/reference" in set(runs["uid"])
