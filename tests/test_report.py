"""`bench report` on run records written by hand with known values (no training)."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import matplotlib.text
from matplotlib.transforms import Bbox
import numpy as np
import pandas as pd
import pytest
import yaml

from bench.cli import main
from bench.config import RunConfig
from bench.errors import BenchError
from bench.report import build_report, plots, prepare
from bench.report.load import load_records

LAYER_FIELDS = ["split", "epoch", "probe", "kind", "index", "levels", "neurons",
                "spikes_per_image", "nonzero_per_image", "max_spike", "rate"]
# probe -> (kind, neurons per image per timestep) of a tiny 3-block spiking ResNet
PROBES = {"stem.sn": ("neuron", 64), "sum0": ("sum", 64), "sum1": ("sum", 64),
          "sum2": ("sum", 32)}


# Energy settings of a run under the current model (summary `energy` and config keys).
NEW_ENERGY = {"model": "lemaire", "counting": "event", "multilevel_op": "mac", "mem_bits": 16,
              "sram": "qualia", "fifo": 1000}
NEW_SETTINGS = ("model lemaire, event counting, multi-level spikes as MAC, SRAM qualia, 16-bit "
                "memory, FIFO 1000")
OLD_SETTINGS = ("model simple (pre-0.2), value counting, horowitz45 constants, SRAM horowitz_log, "
                "32-bit memory")


def old_energy(parts: dict[str, float]) -> dict:
    """summary `energy` as records before 0.2 wrote it (the simple model)."""
    total = sum(parts.values())
    return {"preset": "horowitz45", "counting": "value", "ac_per_image": 1.0,
            "mac_per_image": 1.0, "arith_uj_per_image": parts["arith"],
            "memory_uj_per_image": total - parts["arith"], "total_uj_per_image": total,
            "memory_parts_uj_per_image": {k: parts[k] for k in
                                          ("weights", "membrane", "bias", "outputs")},
            "per_layer": [], "presets_total_uj_per_image": {"horowitz45": total,
                                                            "snn_convention": total}}


def new_energy(parts: dict[str, float], settings: dict | None = None) -> dict:
    """summary `energy` of the current model: breakdown terms ac, mac, addressing, weights,
    bias, potentials, inputs, outputs (uJ per image; missing terms are 0)."""
    terms = ("ac", "mac", "addressing", "weights", "bias", "potentials", "inputs", "outputs")
    breakdown = {t: float(parts.get(t, 0.0)) for t in terms}
    return (NEW_ENERGY | (settings or {})) | {
        "total_uj_per_image": sum(breakdown.values()), "breakdown_uj_per_image": breakdown,
        "ops_per_image": {"ac": 1.0, "mac": 1.0}, "per_layer": []}


def write_record(study_dir: Path, run_id: str, *, status: str = "completed",
                 spikes: dict[str, float] | None = None, max_spike: dict[str, float] | None = None,
                 test_acc: float | None = 0.9, energy: dict[str, float] | None = None,
                 grads: dict[str, list[float]] | None = None, error: str | None = None,
                 test_rows: bool = True, energy_settings: dict | None = None,
                 git_commit: str | None = None, **config) -> Path:
    """One run record as `bench run` writes it (README "The run record").

    spikes: probe -> spikes per image (PROBES gives kind and neurons; {} = an ANN);
    energy: {arith, weights, membrane, bias, outputs} in uJ per image (the pre-0.2 schema), or
    the current model's terms {ac, mac, addressing, weights, bias, potentials, inputs, outputs}
    (energy_settings overrides NEW_ENERGY's);
    grads: group -> grad norms at steps 0, 10, 20, ...; test_rows: False leaves the test
    split out of layers.csv (val rows only, at 3x and 2x the test values).
    """
    parts = energy or {}
    old = "arith" in parts
    cfg = {k: v for k, v in RunConfig().to_dict().items() if not k.startswith("energy_")}
    cfg |= {"study": study_dir.name, "run_id": run_id}
    if parts and not old:  # config keys of the current model, else those before 0.2
        cfg |= {f"energy_{k}": v for k, v in (NEW_ENERGY | (energy_settings or {})).items()}
    else:
        cfg |= {"energy_preset": "horowitz45", "energy_counting": "value"}
    cfg |= config
    spikes = {} if spikes is None else spikes
    max_spike = max_spike or {p: cfg["N"] for p in spikes}
    d = study_dir / "runs" / run_id
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps(cfg | {"versions": {"torch": "x"}, "host": "h",
                                                    "git_commit": git_commit, "trial": None}))
    total = sum(parts.values()) if parts else None
    summary = {
        "config": cfg, "status": status, "error": error, "run_id": run_id,
        "study": study_dir.name, "trial": None, "test_acc": test_acc, "val_acc": test_acc,
        "test_loss": 0.5, "spikes_per_image": spikes,
        "spikes_total_per_image": sum(spikes.values()) if spikes else 0,
        "nonzero_per_image": {p: v / 2 for p, v in spikes.items()},
        "nonzero_total_per_image": sum(spikes.values()) / 2 if spikes else 0,
        "max_spike_per_probe": max_spike, "energy_uj_per_image": total,
        "energy": None if not parts else old_energy(parts) if old else new_energy(
            parts, energy_settings),
        "grad_norm_per_block": {g: float(np.mean(v)) for g, v in (grads or {}).items()},
        "epochs_completed": 2, "duration_s": 1.0, "wandb_dir": None,
    }
    (d / "summary.json").write_text(json.dumps(summary))
    with open(d / "layers.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(LAYER_FIELDS)
        splits = (("val", 0, 3.0), ("val", 1, 2.0)) + ((("test", 1, 1.0),) if test_rows else ())
        for split, epoch, scale in splits:
            for i, (probe, v) in enumerate(spikes.items()):
                kind, neurons = PROBES.get(probe, ("neuron", 16))
                w.writerow([split, epoch, probe, kind, i, cfg["N"], neurons, v * scale,
                            v * scale / 2, max_spike[probe], v * scale / (neurons * cfg["T"])])
    with open(d / "grads.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "group", "grad_norm"])
        for group, norms in (grads or {}).items():
            for i, v in enumerate(norms):
                w.writerow([10 * i, group, v])
    (d / "metrics.csv").write_text("epoch,step,train/loss,train/acc,val/loss,val/acc,"
                                   "spikes/total_per_image,energy/uj_per_image,time_s\n")
    return d


def write_sweep(study_dir: Path, parameters: dict, baseline: dict | None = None) -> None:
    study_dir.mkdir(parents=True, exist_ok=True)
    spec = {"name": study_dir.name, "method": "grid", "metric": {"name": "test_acc",
                                                                   "goal": "maximize"},
            "parameters": parameters}
    if baseline:
        spec["baseline"] = baseline
    (study_dir / "sweep.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))


# Hand-written avalanche study: SEW vs Sparse, seeds 0..2, plus one failed and one running run.
# SEW  seed s: stem 100, sum0 200, sum1 300 + 100 s, sum2 400 -> total 1000 + 100 s
# Sparse s:    stem 100, sum0 150, sum1 150 + 100 s, sum2 100 -> total  500 + 100 s
ACC = {"sew_resnet18": (0.90, 0.92, 0.94), "sparse_resnet18": (0.91, 0.92, 0.93)}
ENERGY = {"sew_resnet18": (10.0, 11.0, 12.0), "sparse_resnet18": (8.0, 8.0, 8.0)}


def avalanche_spikes(arch: str, s: int) -> dict[str, float]:
    if arch == "sew_resnet18":
        return {"stem.sn": 100, "sum0": 200, "sum1": 300 + 100 * s, "sum2": 400}
    return {"stem.sn": 100, "sum0": 150, "sum1": 150 + 100 * s, "sum2": 100}


def energy_parts(total: float) -> dict[str, float]:
    """Split a total into known parts: arith 40 %, weights 30 %, membrane 20 %, bias 5 %,
    outputs 5 %."""
    return {"arith": 0.4 * total, "weights": 0.3 * total, "membrane": 0.2 * total,
            "bias": 0.05 * total, "outputs": 0.05 * total}


COMMIT = "3f9dcc2aa0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5"


def make_avalanche(root: Path) -> Path:
    study = root / "avalanche"
    write_sweep(study, {"arch": {"values": ["sew_resnet18", "sparse_resnet18"]},
                        "seed": {"values": [0, 1, 2]}, "T": {"value": 1}, "N": {"value": 4}},
                baseline={"arch": "sew_resnet18"})
    n = 0
    for arch in ("sew_resnet18", "sparse_resnet18"):
        for s in range(3):
            maxima = {"stem.sn": 4, "sum0": 5, "sum1": 6, "sum2": 8} if arch.startswith(
                "sew") else {p: 4 for p in PROBES}
            write_record(study, f"trial-{n:04d}", arch=arch, seed=s, T=1, N=4,
                         test_acc=ACC[arch][s], spikes=avalanche_spikes(arch, s),
                         max_spike=maxima, energy=energy_parts(ENERGY[arch][s]),
                         grads={"stem": [1.0, 2.0], "block0": [0.5, 0.5], "total": [3, 3]},
                         git_commit=COMMIT)
            n += 1
    # Not completed: absurd values that would show in every mean if they were used.
    write_record(study, "trial-0006", arch="sew_resnet18", seed=3, status="failed",
                 error="FloatingPointError: loss is nan", test_acc=0.0,
                 spikes={"sum1": 1e9}, energy=energy_parts(1e6))
    write_record(study, "trial-0007", arch="sparse_resnet18", seed=3, status="running",
                 test_acc=None)
    return study


BUILT = 1_800_000_000  # SOURCE_DATE_EPOCH of the reports built here: 2027-01-15 08:00 UTC


@pytest.fixture(scope="module")
def avalanche(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("results")
    study = make_avalanche(root)
    out = tmp_path_factory.mktemp("reports") / "avalanche"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SOURCE_DATE_EPOCH", str(BUILT))
        files = build_report([study], out)
    return {"study": study, "out": out, "files": files}


def summary_row(out: Path, arch: str) -> pd.Series:
    df = pd.read_csv(out / "tables" / "summary.csv")
    return df.set_index("arch").loc[arch]


def test_summary_cells_are_seed_means_and_stds(avalanche):
    sew, sparse = (summary_row(avalanche["out"], a) for a in ("sew_resnet18", "sparse_resnet18"))
    assert sew["runs"] == 3 and sparse["runs"] == 3  # failed / running runs not used
    assert sew["test_acc_pct_mean"] == pytest.approx(92.0)
    assert sew["test_acc_pct_std"] == pytest.approx(2.0)  # 90, 92, 94: ddof 1
    assert sparse["test_acc_pct_std"] == pytest.approx(1.0)
    assert sew["spikes_total_per_image_mean"] == pytest.approx(1100.0)
    assert sew["spikes_total_per_image_std"] == pytest.approx(100.0)
    assert sparse["spikes_total_per_image_mean"] == pytest.approx(600.0)
    assert sew["energy_uj_per_image_mean"] == pytest.approx(11.0)
    assert sparse["energy_uj_per_image_std"] == pytest.approx(0.0)


def test_relative_change_against_sweep_baseline(avalanche):
    sew, sparse = (summary_row(avalanche["out"], a) for a in ("sew_resnet18", "sparse_resnet18"))
    assert sparse["d_spikes_pct"] == pytest.approx(100 * (600 - 1100) / 1100)  # -45.45 %
    assert sparse["d_energy_pct"] == pytest.approx(100 * (8 - 11) / 11)  # -27.27 %
    assert sparse["d_acc_pp"] == pytest.approx(0.0, abs=1e-9)
    assert sew["d_spikes_pct"] == pytest.approx(0.0)
    index = (avalanche["out"] / "index.md").read_text()
    assert ("Sparse-ResNet18: activity -45 %, energy -27 %, accuracy 0 pp vs SEW-ResNet18 "
            "(3 vs 3 runs).") in index


def test_markdown_and_latex_views(avalanche):
    tables = avalanche["out"] / "tables"
    md = (tables / "summary.md").read_text()
    assert "**600 ± 100**" in md and "**1,100" not in md  # fewest spikes bold
    assert "92.00 ± 2.00" in md and "8.00 ± 0.00" in md
    assert "| SEW-ResNet18 " in md and "sew_resnet18" not in md  # display names; ids in CSV
    tex = (tables / "summary.tex").read_text()
    assert "\\textbf{600(100)}" in tex and "\\textbf{1100" not in tex
    assert "\\textbf{8.00(0)}" in tex
    assert "$\\Delta$ spikes \\\\ (\\%)" in tex  # headers escaped, Greek made LaTeX
    sums = pd.read_csv(tables / "sums.csv").set_index("arch")
    assert sums.loc["sew_resnet18", "sum1_mean"] == pytest.approx(400.0)
    assert sums.loc["sparse_resnet18", "sum1_mean"] == pytest.approx(250.0)
    energy = pd.read_csv(tables / "energy.csv").set_index("arch")
    assert energy.loc["sew_resnet18", "energy_potentials_uj_mean"] == pytest.approx(2.2)


def test_index_counts_unused_runs_and_lists_every_file(avalanche):
    out = avalanche["out"]
    index = (out / "index.md").read_text()
    assert index.count("6 used (completed) of 8 run records") == 1  # said once, in the header
    assert "run records:" not in index
    assert "avalanche/trial-0006 (failed): FloatingPointError: loss is nan" in index
    written = {p.relative_to(out).as_posix() for p in avalanche["files"]}
    for name in ("index.md", "index.html", "tables/summary.tex", "figures/avalanche.png",
                 "figures/avalanche.pdf", "figures/gradient.pdf", "figures/energy.png"):
        assert name in written
    for rel in written - {"index.md", "index.html"}:
        assert f"({rel})" in index, rel  # each file is linked from index.md
        assert f'"{rel}"' in (out / "index.html").read_text(), rel
    assert "The levels plot is skipped: T and N were not both swept" in index
    runs = pd.read_csv(out / "tables" / "runs.csv")
    assert sorted(runs["status"]) == ["completed"] * 6 + ["failed", "running"]


def test_avalanche_figure_series(avalanche):
    prep = prepare(load_records([avalanche["study"]]))
    fig = plots.avalanche_figure(prep.done, prep.records.layers, list(prep.agg["label"]))
    spikes_ax, rate_ax, max_ax = fig.axes[:3]
    series = {l.get_gid()[7:]: l for l in spikes_ax.lines
              if (l.get_gid() or "").startswith("series:")}
    assert sorted(series) == ["SEW-ResNet18", "Sparse-ResNet18"]
    np.testing.assert_allclose(series["SEW-ResNet18"].get_xdata(), [0, 1, 2])
    np.testing.assert_allclose(series["SEW-ResNet18"].get_ydata(), [200, 400, 400])
    np.testing.assert_allclose(series["Sparse-ResNet18"].get_ydata(), [150, 250, 100])
    bound = [l for l in spikes_ax.lines if (l.get_gid() or "").startswith("bound:")]
    assert len(bound) == 1  # same N, T, neurons for both: one shared line
    np.testing.assert_allclose(bound[0].get_ydata(), [4 * 64, 4 * 64, 4 * 32])
    maxima = {l.get_gid()[7:]: l.get_ydata() for l in max_ax.lines
              if (l.get_gid() or "").startswith("series:")}
    np.testing.assert_allclose(maxima["SEW-ResNet18"], [5, 6, 8])
    assert [l.get_ydata()[0] for l in max_ax.lines if l.get_gid() == "bound:N=4"] == [4]
    rates = {l.get_gid()[7:]: l.get_ydata() for l in rate_ax.lines
             if (l.get_gid() or "").startswith("series:")}
    np.testing.assert_allclose(rates["SEW-ResNet18"], [200 / 64, 400 / 64, 400 / 32])


def test_gradient_and_levels_and_energy_figures(tmp_path):
    grad = tmp_path / "gradient"
    variants = (("sew_resnet18", "ste", 1.0), ("sparse_resnet18", "sigmoid", 0.01),
                ("sparse_resnet18", "ste", 0.9))
    for i, (arch, est, g) in enumerate(variants):
        write_record(grad, f"r{i}", arch=arch, barrier_estimator=est, spikes={"sum0": 1.0},
                     grads={"stem": [g, g], "block0": [g, 3 * g], "block1": [2 * g, 2 * g],
                            "head": [1.0, 1.0], "total": [5.0, 5.0]})
    prep = prepare(load_records([grad]))
    assert prep.keys == ["arch", "barrier_estimator"]
    fig = plots.gradient_figure(prep.done, prep.records.grads, list(prep.agg["label"]))
    summary_ax = fig.axes[-1]
    series = {l.get_gid()[7:]: l.get_ydata() for l in summary_ax.lines
              if (l.get_gid() or "").startswith("series:")}
    assert sorted(series) == ["SEW-ResNet18", "Sparse-ResNet18 + SG", "Sparse-ResNet18 + STE"]
    # blocks in depth order stem, block0, block1, head; mean over the two steps
    np.testing.assert_allclose(series["Sparse-ResNet18 + SG"], [0.01, 0.02, 0.02, 1.0])
    assert len(fig.axes) == 4  # three variant panels + the summary

    levels = tmp_path / "levels"
    write_sweep(levels, {"T": {"values": [1, 2]}, "N": {"values": [1, 2]}})
    for T in (1, 2):
        for N in (1, 2):
            write_record(levels, f"T{T}N{N}", arch="vgg16", T=T, N=N, test_acc=0.5 + 0.1 * T * N,
                         energy=energy_parts(T * 10.0 / N), spikes={"fc1.sn": 3.0})
    write_record(levels, "ann", arch="ann_vgg16", T=1, N=1, test_acc=0.99,
                 energy=energy_parts(50.0))
    prep = prepare(load_records([levels]))
    assert prep.keys == ["T", "N", "arch"]
    fig = plots.levels_figure(prep.agg[prep.agg["arch"] == "vgg16"], ["arch"])
    acc = next(im for ax in fig.axes for im in ax.images
               if im.get_gid().startswith("heatmap:test_acc"))
    np.testing.assert_allclose(acc.get_array(), [[60, 70], [70, 90]])  # rows T, columns N
    fig = plots.energy_figure(prep.agg)
    lengths = [p.get_width() for p in fig.axes[0].patches
               if (p.get_gid() or "").startswith("total:")]
    # ANN first (50 uJ), then the binary SNNs (N=1: T=1 10, T=2 20), then multi-level
    np.testing.assert_allclose(lengths, [50, 10, 20, 5, 10])
    shares = [p.get_width() for p in fig.axes[1].patches if p.get_gid() == "share:arithmetic"]
    np.testing.assert_allclose(shares, [40.0] * 5)  # arith is 40 % of every total
    assert fig.texts[0].get_text() == "Energy per test image: ANN vs binary SNN vs multi-level SNN"


def test_one_run_and_ann_without_spikes(tmp_path):
    study = tmp_path / "one"
    write_record(study, "only", arch="ann_resnet18", spikes={}, test_acc=0.8,
                 energy=energy_parts(20.0))
    out = tmp_path / "report"
    files = build_report([study], out, paper=False)
    assert all(f.is_file() for f in files)
    row = pd.read_csv(out / "tables" / "summary.csv").iloc[0]
    assert row["runs"] == 1 and row["test_acc_pct_mean"] == pytest.approx(80.0)
    assert np.isnan(row["test_acc_pct_std"]) and np.isnan(row["spikes_total_per_image_mean"])
    md = (out / "tables" / "summary.md").read_text()
    assert "n/a" in md and "80.00" in md
    index = (out / "index.md").read_text()
    assert "Runs: 1 used (completed) of 1 run records; none excluded." in index
    fixed = next(line for line in index.splitlines() if "Fixed settings" in line)
    # an ANN ResNet on digits: no neuron keys, no other data sets' keys
    for key in ("estimator=", "threshold=", "fake_like=", "image_size=",
                "gpu_resident=", "checkpoint="):
        assert key not in fixed, key
    assert "optimizer=sgd" in fixed and "lr=0.08 (the sgd default)" in fixed
    assert "The avalanche plot is skipped: no residual-sum probes" in index
    assert "figures/energy.png" in index


def test_two_builds_are_byte_identical(avalanche, tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(BUILT))
    again = build_report([avalanche["study"]], tmp_path / "again")
    first = {p.relative_to(avalanche["out"]): p.read_bytes() for p in avalanche["files"]}
    second = {p.relative_to(tmp_path / "again"): p.read_bytes() for p in again}
    assert first.keys() == second.keys()
    assert [k for k in first if first[k] != second[k]] == []
    assert b"CreationDate" not in first[Path("figures/avalanche.pdf")]


def test_several_studies_default_out(avalanche, tmp_path, monkeypatch):
    other = tmp_path / "depth"
    write_record(other, "r0", arch="sew_resnet34", test_acc=0.5, spikes={"sum0": 9.0})
    monkeypatch.chdir(tmp_path)
    files = build_report([avalanche["study"], other], paper=False)
    assert Path("reports/avalanche+depth/index.md") in files
    df = pd.read_csv("reports/avalanche+depth/tables/summary.csv")
    assert list(df["arch"]) == ["sew_resnet18", "sew_resnet34", "sparse_resnet18"]


def test_errors_name_the_path_and_the_key(avalanche, tmp_path, capsys):
    with pytest.raises(BenchError, match=f"no run records in {tmp_path}"):
        build_report([tmp_path], tmp_path / "x")
    with pytest.raises(BenchError, match="--baseline key 'archh' is not a config key"):
        build_report([avalanche["study"]], tmp_path / "x", baseline="archh=sew_resnet18")
    with pytest.raises(BenchError, match="--baseline arch=vgg16 matches no row"):
        build_report([avalanche["study"]], tmp_path / "x", baseline="arch=vgg16")
    with pytest.raises(BenchError, match="--baseline expects key=value"):
        build_report([avalanche["study"]], tmp_path / "x", baseline="arch")
    assert not (tmp_path / "x").exists()  # a bad --baseline writes nothing
    assert main(["report", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nothing" in err and "Traceback" not in err


def test_cli_baseline_override(avalanche, tmp_path):
    out = tmp_path / "r"
    assert main(["report", str(avalanche["study"]), "--out", str(out),
                 "--baseline", "arch=sparse_resnet18"]) == 0
    sew = summary_row(out, "sew_resnet18")
    assert sew["d_spikes_pct"] == pytest.approx(100 * (1100 - 600) / 600)
    assert sew["baseline"] == "Sparse-ResNet18"


def test_three_hundred_runs_in_seconds(tmp_path):
    study = tmp_path / "big"
    write_sweep(study, {"arch": {"values": ["sew_resnet18", "sparse_resnet18"]},
                        "N": {"values": [1, 2, 4, 8, 16]}, "seed": {"values": list(range(30))}},
                baseline={"arch": "sew_resnet18"})
    for i in range(300):
        arch = ("sew_resnet18", "sparse_resnet18")[i % 2]
        write_record(study, f"trial-{i:04d}", arch=arch, N=(1, 2, 4, 8, 16)[(i // 2) % 5],
                     seed=i // 10, test_acc=0.9, spikes=avalanche_spikes(arch, i % 3),
                     energy=energy_parts(10.0), grads={"stem": [1.0] * 5, "block0": [0.5] * 5})
    start = time.perf_counter()
    files = build_report([study], tmp_path / "out", paper=False)
    seconds = time.perf_counter() - start
    print(f"report of 300 runs: {seconds:.2f} s")
    assert seconds < 30
    df = pd.read_csv(tmp_path / "out" / "tables" / "summary.csv")
    assert len(df) == 10 and df["runs"].sum() == 300
    assert all(f.is_file() for f in files)


def test_test_statistics_from_summary_when_layers_csv_has_no_test_rows(tmp_path):
    study = tmp_path / "s"
    write_record(study, "r", arch="sew_resnet18", test_rows=False, N=4,
                 spikes={"stem.sn": 100, "sum0": 200, "sum1": 300, "sum2": 400},
                 max_spike={"stem.sn": 4, "sum0": 5, "sum1": 6, "sum2": 7})
    records = load_records([study])
    layers = records.layers.set_index("probe")
    assert layers.loc["sum1", "spikes_per_image"] == 300  # summary.json, not the 2x val rows
    assert layers.loc["sum2", "neurons"] == 32 and layers.loc["sum2", "max_spike"] == 7
    assert layers.loc["sum0", "kind"] == "sum" and layers.loc["stem.sn", "index"] == 0
    prep = prepare(records)
    fig = plots.avalanche_figure(prep.done, records.layers, list(prep.agg["label"]))
    bound = [l for l in fig.axes[0].lines if (l.get_gid() or "").startswith("bound:")]
    np.testing.assert_allclose(bound[0].get_ydata(), [4 * 64, 4 * 64, 4 * 32])


# ----------------------------------------------------------------------------- issue 12 / 8

def test_header_states_data_epochs_settings_commit_time_and_runs(avalanche):
    for page in ("index.md", "index.html"):
        text = (avalanche["out"] / page).read_text()
        assert "Data set(s): digits." in text
        assert "Epochs: 10 (configured); completed: 2." in text
        assert "Grouped by (varies across the runs): arch." in text
        fixed = next(line for line in text.splitlines() if "Fixed settings" in line)
        assert "T=1, N=4" in fixed and "optimizer=sgd" in fixed and "arch=" not in fixed
        assert "stem=cifar" in fixed and "estimator=sigmoid" in fixed  # they act on ResNets
        for key in ("fake_like=", "fake_images=", "image_size=", "gpu_resident="):
            assert key not in fixed, key  # digits reads none of them
        assert "seed=" not in fixed  # the seeds are what a row aggregates
        assert f"Energy settings: {OLD_SETTINGS}." in text
        assert ("bench commit: 3f9dcc2aa0b1 (all runs used); libraries: torch x; report built "
                "2027-01-15 08:00 UTC") in text
        assert ("Runs: 6 used (completed) of 8 run records; excluded: 1 failed, 1 running. "
                "Still running when this report was built") in text
        assert "avalanche/trial-0007" in text


def new_parts(total: float) -> dict[str, float]:
    """A current-model breakdown: potentials 50 %, weights 20 %, ac 10 %, mac 5 %,
    addressing 5 %, inputs 4 %, outputs 4 %, bias 2 %."""
    shares = {"potentials": 0.5, "weights": 0.2, "ac": 0.1, "mac": 0.05, "addressing": 0.05,
              "inputs": 0.04, "outputs": 0.04, "bias": 0.02}
    return {k: v * total for k, v in shares.items()}


def test_new_energy_schema_and_settings_under_the_energy_table(tmp_path):
    study = tmp_path / "new"
    for s, total in enumerate((100.0, 120.0)):
        write_record(study, f"sew{s}", arch="sew_resnet18", seed=s, energy=new_parts(total))
        write_record(study, f"sparse{s}", arch="sparse_resnet18", seed=s,
                     energy=new_parts(total / 2))
    records = load_records([study])
    row = records.runs.set_index("run_id").loc["sew1"]
    assert row["energy_potentials_uj"] == pytest.approx(60.0)
    assert row["energy_ac_uj"] == pytest.approx(12.0)
    assert row["energy_total_uj"] == pytest.approx(120.0)
    assert np.isnan(row["energy_arithmetic_uj"])  # the current model has no such term
    assert row["energy_settings"] == NEW_SETTINGS
    out = tmp_path / "report"
    build_report([study], out, paper=False)
    energy = pd.read_csv(out / "tables" / "energy.csv").set_index("arch")
    assert energy.loc["sew_resnet18", "energy_potentials_uj_mean"] == pytest.approx(55.0)
    assert energy.loc["sparse_resnet18", "energy_inputs_uj_mean"] == pytest.approx(2.2)
    assert "energy_arithmetic_uj_mean" not in energy.columns  # no all-n/a column
    md = (out / "tables" / "energy.md").read_text()
    assert md.rstrip().endswith(f"Energy settings: {NEW_SETTINGS}.")
    assert "| potentials (µJ)" in md and "addressing (µJ)" in md
    index = (out / "index.md").read_text()
    assert index.count(f"Energy settings: {NEW_SETTINGS}.") >= 3  # header, table, figure


def test_old_energy_schema_is_named_and_never_mixed_with_the_new(tmp_path):
    study = tmp_path / "mixed"
    write_record(study, "old", arch="sew_resnet18", energy=energy_parts(10.0))
    write_record(study, "new", arch="sew_resnet18", energy=new_parts(30.0))
    records = load_records([study])
    old = records.runs.set_index("run_id").loc["old"]
    assert old["energy_settings"] == OLD_SETTINGS
    assert old["energy_arithmetic_uj"] == pytest.approx(4.0)
    assert old["energy_potentials_uj"] == pytest.approx(2.0)  # the old membrane part
    prep = prepare(records)
    assert len(prep.agg) == 2  # the two settings are two rows, not one mean
    out = tmp_path / "report"
    build_report([study], out, paper=False)
    md = (out / "tables" / "energy.md").read_text()
    assert "Energy settings differ between rows, which are therefore not comparable" in md
    assert re.search(rf"\[[AB]\] {re.escape(OLD_SETTINGS)} \(SEW-ResNet18, energy: simple "
                     rf"\(pre-0\.2\), value\)", md), md
    assert re.search(rf"\[[AB]\] {re.escape(NEW_SETTINGS)}", md)
    assert "| energy settings" in md and "| [A]" in md and "| [B]" in md
    index = (out / "index.md").read_text()
    assert "Left out, as their energy settings differ:" in index  # the figure shows one kind
    tex = (out / "tables" / "energy.tex").read_text()
    assert "% Energy settings differ between rows" in tex


def energy_study(root: Path, with_ann: bool = True) -> Path:
    """VGG16 [T=1, N in 1,2,4] and [T=4, N=1] (+ ANN VGG16) under the current model."""
    study = root / "energy"
    cells = {(1, 1): 200.0, (1, 2): 300.0, (1, 4): 400.0, (4, 1): 800.0}
    for (T, N), e in cells.items():
        write_record(study, f"T{T}N{N}", arch="vgg16", T=T, N=N, energy=new_parts(e))
    if with_ann:
        write_record(study, "ann", arch="ann_vgg16", T=1, N=1, energy=new_parts(20000.0))
    return study


def test_energy_figure_title_is_true_and_legend_covers_no_bar(tmp_path):
    prep = prepare(load_records([energy_study(tmp_path)]))
    fig = plots.energy_figure(prep.agg)
    assert fig.texts[0].get_text() == "Energy per test image: ANN vs binary SNN vs multi-level SNN"
    total_ax, share_ax = fig.axes[:2]
    assert total_ax.get_xscale() == "log"  # 20,000 vs 200 uJ: one bar would flatten the others
    totals = [p.get_width() for p in total_ax.patches if (p.get_gid() or "").startswith("total:")]
    np.testing.assert_allclose(totals, [20000, 200, 800, 300, 400])  # ANN, binary, multi-level
    by_term = {}
    for p in share_ax.patches:
        by_term.setdefault(p.get_gid(), []).append(p.get_width())
    np.testing.assert_allclose(by_term["share:potentials"], [50.0] * 5)
    np.testing.assert_allclose(np.sum(list(by_term.values()), axis=0), [100.0] * 5)
    fig.draw_without_rendering()
    legend = fig.legends[0].get_window_extent()
    for ax in (total_ax, share_ax):
        for patch in ax.patches:  # what is drawn: the bar clipped to its axes
            drawn = Bbox.intersection(patch.get_window_extent(), ax.get_window_extent())
            assert drawn is None or not legend.overlaps(drawn), patch.get_gid()
    no_ann = prepare(load_records([energy_study(tmp_path / "b", with_ann=False)]))
    fig = plots.energy_figure(no_ann.agg)
    assert fig.texts[0].get_text() == "Energy per test image: binary SNN vs multi-level SNN"


@pytest.mark.parametrize("size,width", [("column", 3.5), ("page", 7.16)])
def test_paper_sized_figures_have_the_width_and_no_font_below_7pt(tmp_path, size, width):
    prep = prepare(load_records([make_avalanche(tmp_path)]))
    levels = prepare(load_records([energy_study(tmp_path / "e")]))
    builders = {
        "avalanche": lambda: plots.avalanche_figure(prep.done, prep.records.layers,
                                                    list(prep.agg["label"])),
        "gradient": lambda: plots.gradient_figure(prep.done, prep.records.grads,
                                                  list(prep.agg["label"])),
        "energy": lambda: plots.energy_figure(levels.agg),
        "bars": lambda: plots.bars_figure(prep.agg, [("test_acc_pct", "accuracy (%)")], "t"),
    }
    for name, build in builders.items():
        with plots.paper_size(size):
            fig = build()
        assert fig.get_size_inches()[0] == pytest.approx(width), name
        fig.draw_without_rendering()
        sizes = {t.get_text(): t.get_fontsize() for t in fig.findobj(matplotlib.text.Text)
                 if t.get_visible() and t.get_text()}
        small = {t: f for t, f in sizes.items() if f < plots.MIN_PAPER_PT}
        assert not small, (name, small)
    screen = builders["energy"]()  # outside paper_size: the screen figure, unchanged
    assert screen.get_size_inches()[0] > 8


def test_report_writes_paper_pdfs_of_both_widths(avalanche):
    figures = avalanche["out"] / "figures"
    for name, points in (("avalanche.pdf", 7.16 * 72), ("avalanche-1col.pdf", 3.5 * 72),
                         ("energy-1col.pdf", 3.5 * 72)):
        box = re.search(rb"/MediaBox \[\s*0 0 ([\d.]+) ([\d.]+)", (figures / name).read_bytes())
        assert box and float(box.group(1)) == pytest.approx(points, abs=0.5), name
    index = (avalanche["out"] / "index.md").read_text()
    assert "[1col.pdf](figures/energy-1col.pdf)" in index


LATEX_PREAMBLE = r"""\documentclass[twocolumn]{article}
\usepackage{booktabs}
\usepackage{graphicx}
\newlength{\benchw}
\let\benchresize\resizebox
% log each tabular's natural width, then scale it as the table asks
\renewcommand{\resizebox}[3]{\settowidth{\benchw}{#3}%
  \typeout{BENCHW \benchname\space\the\benchw\space\the\columnwidth\space\the\textwidth}%
  \benchresize{#1}{#2}{#3}}
\begin{document}
"""


def compile_tables(tables: list[Path], folder: Path) -> dict[str, list[tuple[float, float]]]:
    """Compile each table inside `table` (name.tex) or `table*` (name-wide.tex) of a 10 pt
    two-column article; per file, each tabular's (natural width, width it must fit) in pt."""
    body = "\n".join(
        f"\\def\\benchname{{{t.name}}}\\begin{{{'table*' if t.stem.endswith('-wide') else 'table'}}}"
        f"\\input{{{t.as_posix()}}}\\end{{{'table*' if t.stem.endswith('-wide') else 'table'}}}"
        + ("\\clearpage" if i % 4 == 3 else "") for i, t in enumerate(tables))
    (folder / "doc.tex").write_text(LATEX_PREAMBLE + body + "\n\\end{document}\n")
    run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"],
                         cwd=folder, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-3000:]
    assert "Overfull \\hbox" not in run.stdout
    assert (folder / "doc.pdf").is_file()
    widths: dict[str, list[tuple[float, float]]] = {}
    log = (folder / "doc.log").read_text(errors="replace")
    for name, w, column, text in re.findall(r"BENCHW (\S+) ([\d.]+)pt ([\d.]+)pt ([\d.]+)pt", log):
        fit = float(text) if name.endswith("-wide.tex") else float(column)
        widths.setdefault(name, []).append((float(w), fit))
    return widths


def test_latex_tables_split_to_fit_the_column_at_their_font_and_compile(avalanche, tmp_path):
    tables = avalanche["out"] / "tables"
    summary = (tables / "summary.tex").read_text()
    assert "\\begin{tabular}{lrrr}" in summary  # group, accuracy, spikes, energy (3 runs each)
    # bold only where seeds separate the best mean from the runner-up: spikes yes, a tie no
    assert "\\textbf{600(100)}" in summary and "\\textbf{92.0" not in summary
    # display names, compact uncertainty (92.0(20) = 92.0 ± 2.0)
    assert "SEW-ResNet18 & 92.0(20) & 1100(100) & 11.0(10) \\\\" in summary
    assert "$-$45.5" in summary and "-45.5" not in summary.replace("$-$", "")  # minus signs
    assert "sew\\_resnet18" not in summary and "runs" not in summary.split("toprule")[1]
    wide = (tables / "summary-wide.tex").read_text()
    assert wide.count("\\begin{tabular}{") == 1 and "\\textwidth" in wide
    assert "\\begin{table*}" in wide
    sums = (tables / "sums.tex").read_text()
    assert "sum & SEW-ResNet18 & Sparse-ResNet18" in sums  # transposed: depth reads down
    # 400 ± 100 vs 250 ± 100 over 3 seeds each: Welch p = 0.14, so no bold
    assert "sum1 & 400(100) & 250(100) \\\\" in sums
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex not installed: the LaTeX tables were not compiled")
    energy = build_report([energy_study(tmp_path / "e")], tmp_path / "er", paper=False)
    files = []  # summary, sums, energy (+ -wide) of the avalanche; summary, energy of energy
    for report, written in (("av", avalanche["files"]), ("en", energy)):
        for path in sorted(p for p in written if p.suffix == ".tex"):
            files.append(tmp_path / f"{report}-{path.name}")
            shutil.copy(path, files[-1])
    assert len(files) == 10
    widths = compile_tables(files, tmp_path)
    assert sorted(widths) == sorted(f.name for f in files)
    for name, tabulars in widths.items():
        for natural, fit in tabulars:
            scale = min(1.0, fit / natural)
            # 10 pt text shrunk by at most 0.9: every figure in the table reads at >= 9 pt
            assert scale >= 0.9, (name, natural, fit)
    assert len(widths["av-summary.tex"]) == 2 and len(widths["av-summary-wide.tex"]) == 1
    assert len(widths["en-energy.tex"]) == 2  # five groups: 3 + 2 columns
    print({name: [round(min(1.0, f / w), 3) for w, f in t] for name, t in widths.items()})
