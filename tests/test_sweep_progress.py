"""`bench sweep` live progress, the Optuna study a user opens (metric name, intermediate values,
headline user attributes), seeds as replicates, and sweep files under W&B's schema."""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState

from bench.sweep import main_status
from bench.sweep.spec import load_spec, parse_spec

SWEEPS = Path(__file__).resolve().parents[1] / "sweeps"
TINY = {"dataset": "digits", "epochs": 2, "limit_train_batches": 2, "limit_val_batches": 2,
        "limit_test_batches": 2, "batch_size": 32, "grad_every": 1, "wandb": "disabled"}
LINE = re.compile(r"^\[prog\] trial (\d+) \(arch=(\w+) seed=(\d)\) epoch (\d)/2 "
                  r"val/acc=([0-9.]+) \| (\d)/2 done, ETA \d+m\d\ds$")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> dict:
    """One configuration x 2 seeds (replicates), 2 epochs each, 2 workers."""
    tmp = tmp_path_factory.mktemp("prog")
    params = {"arch": {"values": ["spiking_resnet18"]},
              "seed": {"values": [0, 1]}, **{k: {"value": v} for k, v in TINY.items()}}
    file = tmp / "prog.yaml"
    file.write_text(yaml.safe_dump({
        "name": "prog", "method": "grid", "parameters": params,
        "metric": {"name": "test_acc", "goal": "maximize"},
        "bench": {"replicates": ["seed"], "baseline": {"arch": "spiking_resnet18"}}}))
    results = tmp / "results"
    out = subprocess.run([sys.executable, "-m", "bench.cli", "sweep", str(file), "--workers", "2",
                          "--results", str(results)], env={**os.environ, "WANDB_MODE": "disabled"},
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    storage = JournalStorage(JournalFileBackend(str(results / "prog" / "optuna.journal")))
    return {"out": out.stdout, "results": results,
            "study": optuna.load_study(study_name="prog", storage=storage)}


def test_one_line_per_trial_epoch_with_eta(sweep):
    out = sweep["out"]
    assert "\r" not in out
    events = [LINE.match(line) for line in out.splitlines() if line.startswith("[prog]")]
    assert all(events), [ln for ln in out.splitlines() if ln.startswith("[prog]")]
    seen = sorted((int(m[1]), int(m[4])) for m in events)
    assert seen == [(t, e) for t in range(2) for e in (1, 2)]  # every trial, every epoch, once
    trials = {t.number: t for t in sweep["study"].trials}
    for m in events:
        t = trials[int(m[1])]
        assert (m[2], int(m[3])) == (t.params["arch"], t.user_attrs["seed"])
        # the line's metric is the value the trial reported for that epoch
        assert float(m[5]) == pytest.approx(t.intermediate_values[int(m[4]) - 1], abs=1e-4)


def test_study_names_its_metric_and_reports_every_epoch(sweep):
    study = sweep["study"]
    assert study.metric_names == ["test_acc"]
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(done) == 2
    for t in done:  # no early_terminate, still one intermediate value per epoch
        assert sorted(t.intermediate_values) == [0, 1]
        record = json.loads((Path(t.user_attrs["run_dir"]) / "summary.json").read_text())
        for key in ("test_acc", "val_acc", "spikes_total_per_image", "energy_uj_per_image",
                    "duration_s", "epochs_completed"):
            assert t.user_attrs[key] == record[key], key
        assert t.user_attrs["test_acc"] == pytest.approx(t.value)
        assert "wandb_run" not in t.user_attrs  # W&B disabled: no run to point at


def test_seed_is_a_replicate_not_a_searched_parameter(sweep):
    trials = sweep["study"].trials
    assert all(set(t.params) == {"arch"} for t in trials)
    assert sorted((t.params["arch"], t.user_attrs["seed"]) for t in trials) == [
        ("spiking_resnet18", 0), ("spiking_resnet18", 1)]
    for t in trials:  # the run itself used the replicate's seed
        record = json.loads((Path(t.user_attrs["run_dir"]) / "summary.json").read_text())
        assert record["config"]["seed"] == t.user_attrs["seed"]


def test_status_aggregates_replicates(sweep, capsys):
    assert main_status(str(sweep["results"] / "prog")) == 0
    out = capsys.readouterr().out
    assert "per configuration, over replicates (seed):" in out
    rows = [ln for ln in out.split("over replicates")[1].splitlines() if "resnet18" in ln]
    assert len(rows) == 1
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        arch, n, mean, std, seeds = cells
        values = [t.value for t in sweep["study"].trials if t.params["arch"] == arch]
        assert n == "2" and seeds == "0,1"
        assert float(mean) == pytest.approx(statistics.mean(values), abs=1e-4)
        assert float(std) == pytest.approx(statistics.stdev(values), abs=1e-4)
    # the trial table still shows each trial's seed
    assert re.search(r"\|\s+\d+ \| COMPLETE\s+\| \w+_resnet18\s+\|\s+1 \|", out)


# ---- sweep files and W&B's schema (fast) ----------------------------------------------------

# top-level keys and parameter shapes of W&B's sweep-configuration JSON schema (wandb/sweeps)
WANDB_TOP = {"apiVersion", "kind", "controller", "description", "program", "job", "image_uri",
             "entity", "project", "method", "command", "name", "run_cap", "metric", "metrics",
             "scheduler", "early_terminate", "parameters"}
WANDB_PARAM = ({"value", "distribution"}, {"values", "distribution"},
               {"min", "max", "distribution", "q"})


@pytest.mark.parametrize("file", sorted(SWEEPS.glob("*.yaml")), ids=lambda p: p.stem)
def test_sweep_files_are_wandb_schema_plus_the_bench_key(file):
    data = yaml.safe_load(file.read_text())
    assert set(data) - {"bench"} <= WANDB_TOP
    wandb = load_spec(file).to_wandb()
    assert set(wandb) <= WANDB_TOP
    for name, body in wandb["parameters"].items():
        assert any(set(body) <= shape for shape in WANDB_PARAM), (name, body)


def test_legacy_top_level_baseline_still_reads_and_continues_its_study(tmp_path):
    from bench.sweep.storage import open_storage
    from bench.sweep.queue import SPEC_ATTR, open_study, study_id

    body = {"name": "old", "method": "grid", "parameters": {"seed": {"values": [0, 1]}}}
    old = parse_spec({**body, "baseline": {"arch": "vgg16"}})
    assert old.baseline == {"arch": "vgg16"}
    assert old.to_dict()["bench"] == {"baseline": {"arch": "vgg16"}}
    storage = open_storage(None, tmp_path)
    open_study(old, storage)
    sid = study_id(storage, "old")
    legacy = {**json.loads(old.fingerprint()), "baseline": {"arch": "vgg16"}}
    del legacy["bench"]
    storage.set_study_user_attr(sid, SPEC_ATTR, legacy)  # as saved before `bench:` existed
    again = open_study(parse_spec({**body, "bench": {"baseline": {"arch": "vgg16"}}}), storage)
    assert len(again.trials) == 2
    with pytest.raises(Exception, match="given twice"):
        parse_spec({**body, "baseline": {"arch": "vgg16"}, "bench": {"baseline": {"N": 1}}})


def test_replicates_vary_slowest_in_the_grid():
    spec = parse_spec({"method": "grid", "bench": {"replicates": "seed"},
                       "parameters": {"seed": {"values": [0, 1]}, "N": {"values": [1, 4]}}})
    assert spec.slots() == [{"seed": 0, "N": 1}, {"seed": 0, "N": 4}, {"seed": 1, "N": 1},
                            {"seed": 1, "N": 4}]  # every configuration's seed 0 first
    assert list(spec.distributions()) == ["N"]
    fixed = parse_spec({"method": "grid", "bench": {"replicates": ["seed"]},
                        "parameters": {"seed": {"values": [0, 1]}, "N": {"values": [1, 4]}}},
                       sets=["seed=5"])
    assert fixed.replicates == () and fixed.slots() == [{"N": 1}, {"N": 4}]


@pytest.mark.parametrize("bench, needle", [
    ({"replicates": ["seed"]}, "needs method grid"),
    ({"replicates": [3]}, "bench.replicates must be a key"),
    ({"colour": 1}, "unknown key 'bench.colour'"),
])
def test_bad_bench_keys_are_one_line(bench, needle):
    from bench.errors import BenchError

    method = "random" if "needs method" in needle else "grid"
    with pytest.raises(BenchError, match=re.escape(needle)):
        parse_spec({"method": method, "run_cap": 2, "bench": bench,
                    "parameters": {"seed": {"values": [0, 1]}}})


def test_eta_is_epochs_left_times_seconds_per_epoch_over_busy_workers():
    from datetime import datetime

    from optuna.distributions import CategoricalDistribution
    from optuna.trial import FrozenTrial

    from bench.sweep.progress import duration, eta_seconds

    def trial(number, state, user_attrs, arch="a"):
        return FrozenTrial(number=number, state=state, value=0.5 if state.is_finished() else None,
                           datetime_start=datetime.now(), datetime_complete=None,
                           params={"arch": arch},
                           distributions={"arch": CategoricalDistribution(("a", "b"))},
                           user_attrs=user_attrs, system_attrs={}, intermediate_values={},
                           trial_id=number)

    spec = {"name": "s", "parameters": {"arch": {"values": ["a", "b"]}, "epochs": {"value": 10}}}
    done = trial(0, TrialState.COMPLETE, {"duration_s": 100.0, "epochs_completed": 10})
    running = trial(1, TrialState.RUNNING, {"progress": {"trial": 1, "epoch": 2, "epochs": 10,
                                                         "elapsed_s": 40.0}})
    waiting = trial(2, TrialState.WAITING, {})
    # 140 s over 12 epochs; 8 + 10 epochs left; 2 workers busy: 18 * 140 / 12 / 2 = 105 s
    assert eta_seconds([done, running, waiting], spec, workers=2) == pytest.approx(105.0)
    assert eta_seconds([done, running, waiting], spec, workers=1) == pytest.approx(210.0)
    assert eta_seconds([waiting], spec, workers=1) is None  # nothing measured yet
    # a re-queued trial's copied progress (another trial number) counts as not started
    stale = trial(3, TrialState.RUNNING, {"progress": {"trial": 1, "epoch": 9, "epochs": 10,
                                                       "elapsed_s": 1.0}})
    assert eta_seconds([done, stale], spec, workers=1) == pytest.approx(100.0)
    assert duration(105) == "1m45s" and duration(3720) == "1h02m"


def test_reports_read_the_baseline_under_bench_and_the_legacy_key():
    from types import SimpleNamespace

    from bench.report.load import sweep_baseline

    records = SimpleNamespace(studies=["new", "old"], sweeps={
        "new": {"bench": {"baseline": {"arch": "sew_resnet18"}}}, "old": {"baseline": {"N": 1}}})
    assert sweep_baseline(records) == {"arch": "sew_resnet18"}
    records.studies = ["old"]
    assert sweep_baseline(records) == {"N": 1}


def test_trial_reporter_reports_every_epoch_and_prunes_only_when_asked():
    from types import SimpleNamespace

    import torch

    from bench.sweep.progress import TrialReporter

    class Trial:
        number = 4

        def __init__(self):
            self.reports, self.attrs = [], {}

        def report(self, value, step):
            self.reports.append((value, step))

        def set_user_attr(self, key, value):
            self.attrs[key] = value

        def should_prune(self):
            return True  # as a pruner that has seen better trials

    trainer = SimpleNamespace(sanity_checking=False, current_epoch=3, max_epochs=10,
                              callback_metrics={"val/acc": torch.tensor(0.5),
                                                "val/loss": torch.tensor(float("nan"))})
    trial = Trial()
    TrialReporter(trial, "val/acc", "val/acc", prune=False).on_validation_end(trainer, None)
    assert trial.reports == [(0.5, 3)]
    assert trial.attrs["progress"] | {"elapsed_s": 0} == {
        "trial": 4, "epoch": 4, "epochs": 10, "metric": "val/acc", "value": 0.5, "elapsed_s": 0}
    nan = Trial()  # a non-finite metric is not reported (Optuna would store NaN)
    TrialReporter(nan, "val/loss", "val/loss", prune=True).on_validation_end(trainer, None)
    assert nan.reports == [] and nan.attrs["progress"]["value"] is None
    with pytest.raises(optuna.TrialPruned, match="epoch 3"):
        TrialReporter(Trial(), "val/acc", "val/acc", prune=True).on_validation_end(trainer, None)
