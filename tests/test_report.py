"""`bench report` on run records written by hand with known values (no training)."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

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


def write_record(study_dir: Path, run_id: str, *, status: str = "completed",
                 spikes: dict[str, float] | None = None, max_spike: dict[str, float] | None = None,
                 test_acc: float | None = 0.9, energy: dict[str, float] | None = None,
                 grads: dict[str, list[float]] | None = None, error: str | None = None,
                 test_rows: bool = True, **config) -> Path:
    """One run record as `bench run` writes it (README "The run record").

    spikes: probe -> spikes per image (PROBES gives kind and neurons; {} = an ANN);
    energy: {arith, weights, membrane, bias, outputs} in uJ per image;
    grads: group -> grad norms at steps 0, 10, 20, ...; test_rows: False leaves the test
    split out of layers.csv (val rows only, at 3x and 2x the test values).
    """
    cfg = RunConfig().to_dict() | {"study": study_dir.name, "run_id": run_id} | config
    spikes = {} if spikes is None else spikes
    max_spike = max_spike or {p: cfg["N"] for p in spikes}
    d = study_dir / "runs" / run_id
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps(cfg | {"versions": {"torch": "x"}, "host": "h",
                                                    "git_commit": None, "trial": None}))
    parts = energy or {}
    total = sum(parts.values()) if parts else None
    summary = {
        "config": cfg, "status": status, "error": error, "run_id": run_id,
        "study": study_dir.name, "trial": None, "test_acc": test_acc, "val_acc": test_acc,
        "test_loss": 0.5, "spikes_per_image": spikes,
        "spikes_total_per_image": sum(spikes.values()) if spikes else 0,
        "nonzero_per_image": {p: v / 2 for p, v in spikes.items()},
        "nonzero_total_per_image": sum(spikes.values()) / 2 if spikes else 0,
        "max_spike_per_probe": max_spike, "energy_uj_per_image": total,
        "energy": None if not parts else {
            "preset": "horowitz45", "counting": "value", "ac_per_image": 1.0,
            "mac_per_image": 1.0, "arith_uj_per_image": parts["arith"],
            "memory_uj_per_image": total - parts["arith"], "total_uj_per_image": total,
            "memory_parts_uj_per_image": {k: parts[k] for k in
                                          ("weights", "membrane", "bias", "outputs")},
            "per_layer": [], "presets_total_uj_per_image": {"horowitz45": total,
                                                            "snn_convention": total}},
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
                         grads={"stem": [1.0, 2.0], "block0": [0.5, 0.5], "total": [3, 3]})
            n += 1
    # Not completed: absurd values that would show in every mean if they were used.
    write_record(study, "trial-0006", arch="sew_resnet18", seed=3, status="failed",
                 error="FloatingPointError: loss is nan", test_acc=0.0,
                 spikes={"sum1": 1e9}, energy=energy_parts(1e6))
    write_record(study, "trial-0007", arch="sparse_resnet18", seed=3, status="running",
                 test_acc=None)
    return study


@pytest.fixture(scope="module")
def avalanche(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("results")
    study = make_avalanche(root)
    out = tmp_path_factory.mktemp("reports") / "avalanche"
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
    tex = (tables / "summary.tex").read_text()
    assert "sew\\_resnet18" in tex and "sew_resnet18" not in tex
    assert "\\textbf{600 ± 100}" in tex and "\\textbf{1,100" not in tex
    assert "\\textbf{8.00 ± 0.00}" in tex
    assert "$\\Delta$ spikes (\\%)" in tex  # headers escaped, Greek made LaTeX
    sums = pd.read_csv(tables / "sums.csv").set_index("arch")
    assert sums.loc["sew_resnet18", "sum1_mean"] == pytest.approx(400.0)
    assert sums.loc["sparse_resnet18", "sum1_mean"] == pytest.approx(250.0)
    energy = pd.read_csv(tables / "energy.csv").set_index("arch")
    assert energy.loc["sew_resnet18", "energy_membrane_uj_mean"] == pytest.approx(2.2)


def test_index_counts_unused_runs_and_lists_every_file(avalanche):
    out = avalanche["out"]
    index = (out / "index.md").read_text()
    assert "8 run records: 6 completed (used); 1 failed, 1 running (counted, not used)." in index
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
    heights = [p.get_height() for p in fig.axes[0].patches
               if p.get_gid() == "stack:energy_arith_uj"]
    # ANN first (50 uJ), then the binary SNNs (N=1: T=1 10, T=2 20), then multi-level
    np.testing.assert_allclose(heights, [0.4 * e for e in (50, 10, 20, 5, 10)])


def test_one_run_and_ann_without_spikes(tmp_path):
    study = tmp_path / "one"
    write_record(study, "only", arch="ann_resnet18", spikes={}, test_acc=0.8,
                 energy=energy_parts(20.0))
    out = tmp_path / "report"
    files = build_report([study], out)
    assert all(f.is_file() for f in files)
    row = pd.read_csv(out / "tables" / "summary.csv").iloc[0]
    assert row["runs"] == 1 and row["test_acc_pct_mean"] == pytest.approx(80.0)
    assert np.isnan(row["test_acc_pct_std"]) and np.isnan(row["spikes_total_per_image_mean"])
    md = (out / "tables" / "summary.md").read_text()
    assert "n/a" in md and "80.00" in md
    index = (out / "index.md").read_text()
    assert "1 run record: 1 completed (used)." in index
    assert "The avalanche plot is skipped: no residual-sum probes" in index
    assert "figures/energy.png" in index


def test_two_builds_are_byte_identical(avalanche, tmp_path):
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
    files = build_report([avalanche["study"], other])
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
    files = build_report([study], tmp_path / "out")
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
