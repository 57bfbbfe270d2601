"""`bench figures` on hand-written run records: the paper's numbers beside ours, verdicts,
and the sweep commands of missing figures."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from bench.cli import main
from bench.errors import BenchError
from bench.report.figures import build_figures
from bench.report.paper import REPORTED
from bench.report.sensitivity import Pricing
from test_report import (NEW_SETTINGS, OLD_SETTINGS, energy_parts, make_avalanche, new_parts,
                         write_record, write_sweep)


def scaled_pricing(factors: dict[str, dict[str, float]] | None = None) -> Pricing:
    """A stand-in for bench.energy's repricing: each run's recorded energy times a factor per
    (setting, architecture); the setting's overrides are {"counting": label}."""
    factors = factors or {"event": {}, "packet": {"sparse_resnet18": 0.73}}

    def price(run: pd.Series, overrides: dict) -> float:
        scale = factors[overrides["counting"]].get(str(run["arch"]), 1.0)
        return float(run["energy_uj_per_image"]) * scale

    return Pricing(tuple((label, {"counting": label}) for label in factors), price)


@pytest.fixture(scope="module")
def only_avalanche(tmp_path_factory) -> dict:
    results = tmp_path_factory.mktemp("results")
    make_avalanche(results)
    out = tmp_path_factory.mktemp("paper")
    return {"files": build_figures(results, out), "out": out, "results": results}


def claim(claims: pd.DataFrame, quantity: str) -> pd.Series:
    rows = claims[claims["quantity"] == quantity]
    assert len(rows) == 1, (quantity, list(claims["quantity"]))
    return rows.iloc[0]


def test_claims_beside_the_papers_numbers(only_avalanche):
    claims = pd.read_csv(only_avalanche["out"] / "claims.csv")
    sew = claim(claims, "spikes at sum1, SEW")
    sparse = claim(claims, "spikes at sum1, Sparse")
    assert sew["paper"] == "67,848 spikes at sum1" and sew["ours"] == pytest.approx(400.0)
    # our digits counts are not subtracted from the paper's CIFAR-10 counts
    assert np.isnan(sew["ours_minus_paper"])
    assert sew["compared"].startswith("not subtracted: our digits vs the paper's CIFAR-10")
    assert sew["our_dataset"] == "digits" and str(sew["epochs"]) == "10" and str(sew["runs"]) == "3"
    assert sparse["paper"] == "35,819 spikes at sum1" and sparse["ours"] == pytest.approx(250.0)
    # sum1 per seed: SEW 300/400/500, Sparse 150/250/350, paired by seed: log ratios
    # ln(1/2), ln(5/8), ln(7/10), mean -0.5063 (-39.7 %), std 0.1766, t(2) 4.303: the interval
    # is exp(-0.5063 +- 0.4388) - 1 = [-60.6, -7.8] %: below 0 (direction holds), and it holds
    # the paper's single value -47.2 % (a point: size inconclusive, never holds)
    assert sparse["direction"] == "holds" and "250 vs 400 (Sparse vs SEW)" in sparse["evidence"]
    change = claim(claims, "change at sum1, Sparse vs SEW (%)")
    assert change["ours"] == pytest.approx(-37.5)  # (250 - 400) / 400
    assert np.isnan(change["ours_minus_paper"]) and change["runs"] == "3 + 3"
    assert change["size"] == "inconclusive"
    assert "95 % interval [-60.62, -7.81] % over 3 + 3 seeds (paired by seed" in change["evidence"]
    activity = claim(claims, "activity change, Sparse-ResNet18 vs SEW-ResNet18 (%)")
    assert activity["ours"] == pytest.approx(100 * (600 - 1100) / 1100)
    # per seed 500/1000, 600/1100, 700/1200: interval [-55.3, -34.4] % straddles -47 %
    assert activity["direction"] == "holds" and activity["size"] == "inconclusive"
    assert "95 % interval [-55.28, -34.35] %" in activity["evidence"]
    acc = claim(claims, "accuracy difference, Sparse-ResNet18 vs SEW-ResNet18 (pp)")
    # gap 0 pp; paired by seed the differences are +1, 0, -1 pp (std 1): the 95 % interval is
    # +-4.303 / sqrt(3) = +-2.48 pp, wider than the claim's 0.5 pp either way
    assert acc["ours"] == pytest.approx(0.0, abs=1e-9) and acc["size"] == "inconclusive"
    assert pd.isna(acc["direction"])  # "n/a" in the file: "within X" has no direction
    assert "95 % interval [-2.48, +2.48] pp over 3 + 3 seeds" in acc["evidence"]
    # n per group with t(n-1) / sqrt(n) < 0.5 (distance to the bound over std 1): n = 18
    assert "about 18 seeds per group would decide it" in acc["evidence"]
    bound = claim(claims, "largest spike at a residual sum, SEW")
    assert bound["ours"] == 8 and bound["direction"] == "holds"  # SEW z 8 > N=4
    barrier = claim(claims, "largest spike at a residual sum, Sparse")
    assert barrier["ours"] == 4 and barrier["direction"] == "holds"  # Sparse z <= N=4 always
    assert "deterministic" in barrier["evidence"]
    energy = claim(claims, "energy change, Sparse-ResNet18 vs SEW-ResNet18 (%)")
    assert energy["energy_settings"] == OLD_SETTINGS
    assert energy["accuracy"] == "Sparse-ResNet18 92.00 ± 1.00 %; SEW-ResNet18 92.00 ± 2.00 %"
    assert pd.isna(activity["energy_settings"])  # settings only on energy rows
    assert (claims["our_setting"].str.startswith("digits")).all()  # our dataset in every row
    assert set(claims["paper_dataset"]) <= {"CIFAR-10", "CIFAR-10/100"}
    md = (only_avalanche["out"] / "claims.md").read_text()
    assert "67,848 spikes at sum1 (CIFAR-10)" in md and "| holds" in md and "not compared" in md


def test_missing_figures_list_their_sweep_commands(only_avalanche):
    out = only_avalanche["out"]
    index = (out / "index.md").read_text()
    for study in ("levels", "sparse_n", "gradient", "dvs", "depth"):
        assert f"bench sweep sweeps/{study}.yaml" in index, study
    assert "bench sweep sweeps/avalanche.yaml" not in index
    assert "figures/avalanche.png" in index
    written = {p.relative_to(out).as_posix() for p in only_avalanche["files"]}
    assert {"claims.md", "claims.csv", "claims.tex", "index.md", "index.html",
            "figures/avalanche.png", "figures/avalanche.pdf", "figures/avalanche-1col.pdf",
            "figures/tradeoff-avalanche.png", "figures/tradeoff-avalanche.pdf",
            "figures/tradeoff-avalanche-1col.pdf"} == written
    assert "bench sweep sweeps/levels.yaml" in (out / "index.html").read_text()
    assert ("avalanche: 6 completed of 8 run records; data set digits; epochs 10; bench commit "
            "3f9dcc2aa0b1; still running (not used): avalanche/trial-0007") in index


def test_direction_that_fails_says_no(tmp_path):
    study = tmp_path / "results" / "avalanche"
    for s in (0, 1):  # Sparse has 3x SEW's sum1 spikes and 10 pp less accuracy in both seeds
        write_record(study, f"sew{s}", arch="sew_resnet18", seed=s,
                     spikes={"sum0": 10, "sum1": 100 + s}, test_acc=0.90 + s / 100)
        write_record(study, f"sparse{s}", arch="sparse_resnet18", seed=s,
                     spikes={"sum0": 10, "sum1": 300 + 3 * s}, test_acc=0.80 + s / 100)
    build_figures(tmp_path / "results", tmp_path / "paper", paper=False)
    claims = pd.read_csv(tmp_path / "paper" / "claims.csv")
    assert claim(claims, "spikes at sum1, Sparse")["direction"] == "fails"
    acc = claim(claims, "accuracy difference, Sparse-ResNet18 vs SEW-ResNet18 (pp)")
    # paired by seed the gap is -10 pp both times: no spread, wholly outside +-0.5 pp
    assert acc["ours"] == pytest.approx(-10.0) and acc["size"] == "fails"
    assert "\\textbf{fails}" in (tmp_path / "paper" / "claims.tex").read_text()


def test_one_run_per_group_is_inconclusive(tmp_path):
    study = tmp_path / "results" / "avalanche"
    write_record(study, "sew", arch="sew_resnet18", spikes={"sum0": 10, "sum1": 100},
                 test_acc=0.90, energy=new_parts(1000.0))
    write_record(study, "sparse", arch="sparse_resnet18", spikes={"sum0": 10, "sum1": 300},
                 test_acc=0.80, energy=new_parts(100.0))
    build_figures(tmp_path / "results", tmp_path / "paper", paper=False,
                  pricing=scaled_pricing())
    claims = pd.read_csv(tmp_path / "paper" / "claims.csv")
    # one run each: no seed spread to judge on, however large the effect
    for quantity in ("spikes at sum1, Sparse", "energy change, Sparse-ResNet18 vs "
                     "SEW-ResNet18 (%)"):
        assert claim(claims, quantity)["direction"] == "inconclusive", quantity
    energy = claim(claims, "energy change, Sparse-ResNet18 vs SEW-ResNet18 (%)")
    assert energy["ours"] == pytest.approx(-90.0) and energy["size"] == "inconclusive"
    acc = claim(claims, "accuracy difference, Sparse-ResNet18 vs SEW-ResNet18 (pp)")
    assert acc["ours"] == pytest.approx(-10.0) and acc["size"] == "inconclusive"
    assert "no seed spread" in acc["evidence"] and "at least 2 runs" in acc["evidence"]


def test_levels_gradient_dvs_claims(tmp_path):
    results = tmp_path / "results"
    levels = results / "levels"
    write_sweep(levels, {"T": {"values": [1, 4]}, "N": {"values": [1, 4]}})
    acc = {(1, 1): 0.70, (1, 4): 0.9313, (4, 1): 0.9315, (4, 4): 0.95}
    for (T, N), a in acc.items():
        write_record(levels, f"T{T}N{N}", arch="vgg16", T=T, N=N, test_acc=a,
                     energy=energy_parts(1000.0 * T / N if N > 1 else 1000.0 * T * 2))
    write_record(levels, "ann", arch="ann_vgg16", test_acc=0.95, energy=energy_parts(12900.0))
    grad = results / "gradient"
    for name, arch, est, g in (("sew", "sew_resnet18", "ste", 1.0),
                               ("sg", "sparse_resnet18", "sigmoid", 0.001),
                               ("ste", "sparse_resnet18", "ste", 0.8)):
        for s in (0, 1):  # two seeds, 10 % apart
            g_s = g * (1 + 0.1 * s)
            write_record(grad, f"{name}{s}", arch=arch, barrier_estimator=est, seed=s,
                         spikes={"sum0": 1.0},
                         grads={"stem": [1.0, 1.0], "block0": [g_s, g_s], "head": [1.0, 1.0]})
    dvs = results / "dvs"
    for T, N, a in ((1, 1, 0.50), (1, 4, 0.70), (10, 1, 0.72)):
        for s in (0, 1):  # seeds 1 pp apart
            write_record(dvs, f"T{T}N{N}s{s}", arch="vgg16", T=T, N=N, seed=s,
                         test_acc=a + s / 100, dataset="digits")
    files = build_figures(results, tmp_path / "paper", paper=False)
    claims = pd.read_csv(tmp_path / "paper" / "claims.csv")
    gap = claim(claims, "accuracy gap (pp)")
    assert gap["ours"] == pytest.approx(-0.02) and gap["size"] == "inconclusive"  # 1 seed
    assert np.isnan(gap["ours_minus_paper"])  # digits vs CIFAR-10
    # energy: binary [T=4, N=1] = 8000 uJ, multi-level [T=1, N=4] = 250 uJ -> 32x, but from
    # one run each: no spread, so neither verdict can be given
    ratio = claim(claims, "energy [T=4, N=1] / [T=1, N=4] (x)")
    assert ratio["ours"] == pytest.approx(8000 / 250) and ratio["direction"] == "inconclusive"
    assert ratio["size"] == "inconclusive" and "no seed spread" in ratio["evidence"]
    assert ratio["energy_settings"] == OLD_SETTINGS
    assert ratio["accuracy"] == "VGG16, T=4, N=1 93.15 %; VGG16, T=1, N=4 93.13 %"
    vgg = claims[claims["source"] == "third-party notes (unverified)"]
    multi = vgg[vgg["paper"] == "94.34 %"].iloc[0]
    assert multi["ours"] == pytest.approx(93.13) and np.isnan(multi["ours_minus_paper"])
    assert (vgg[vgg["unit"] == "mJ / image"]["direction"] == "inconclusive").all()  # 1 run
    # two seeds 10 % apart in every group, paired: SG / STE = 0.00125 exactly, no spread
    sg = claim(claims, "block0 gradient norm, Sparse+SG")
    assert sg["ours"] == pytest.approx(0.00105) and sg["direction"] == "holds"
    assert claim(claims, "block0 gradient norm, Sparse+STE")["direction"] == "holds"
    dvs_acc = claim(claims, "accuracy at T=1, N=4 (%)")
    # 70/71 % vs 50/51 %, paired by seed: +20 pp exactly
    assert dvs_acc["ours"] == pytest.approx(70.5) and dvs_acc["direction"] == "holds"
    # 70/71 % vs 72/73 % at T=10: -2 pp exactly, below -0.5 pp: the one-sided "within" fails
    assert claim(claims, "latency cut, T of binary / T=1 (x)")["size"] == "fails"
    names = {p.name for p in files}
    assert {"levels.png", "gradient.png", "dvs.png", "energy.png"} <= names
    index = (tmp_path / "paper" / "index.md").read_text()
    assert "bench sweep sweeps/sparse_n.yaml" in index and "bench sweep sweeps/depth.yaml" in index
    assert "bench sweep sweeps/levels.yaml" not in index


def test_errors(tmp_path, capsys):
    with pytest.raises(BenchError, match="results folder not found"):
        build_figures(tmp_path / "nope", tmp_path / "out")
    assert main(["figures", "--results", str(tmp_path / "nope"), "--out",
                 str(tmp_path / "out")]) == 2
    assert "nope" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    files = build_figures(empty, tmp_path / "out")
    index = (tmp_path / "out" / "index.md").read_text()
    assert "No claim could be checked" in index and "bench sweep sweeps/avalanche.yaml" in index
    assert {p.name for p in files} == {"index.md", "index.html"}


def test_a_difference_only_where_quantity_and_dataset_match(tmp_path):
    study = tmp_path / "results" / "avalanche"
    for arch, s1 in (("sew_resnet18", 60000), ("sparse_resnet18", 30000)):
        write_record(study, arch, arch=arch, dataset="cifar10", epochs=200,
                     spikes={"sum0": 10, "sum1": s1})
    build_figures(tmp_path / "results", tmp_path / "paper", paper=False)
    claims = pd.read_csv(tmp_path / "paper" / "claims.csv")
    sew = claim(claims, "spikes at sum1, SEW")
    assert sew["ours_minus_paper"] == pytest.approx(60000 - 67848)
    assert sew["compared"] == "difference (same quantity and data set)"
    assert sew["our_dataset"] == "cifar10" and str(sew["epochs"]) == "200"
    # "CIFAR-10/100" ranges cover our CIFAR-10 runs: -50 % is 3 pp below the paper's -47..-25 %
    activity = claim(claims, "activity change, Sparse-ResNet18 vs SEW-ResNet18 (%)")
    change = 100 * (30010 - 60010) / 60010  # -49.99 %
    assert activity["ours_minus_paper"] == pytest.approx(change - -47.0)


def levels_and_energy(results: Path, ann_settings: dict | None = None,
                      archs: tuple[str, ...] = ("vgg16", "sew_resnet18")) -> None:
    """levels: VGG16 and SEW-ResNet18, [T=1, N in 1,2,4,8] and [T=4, N=1], three seeds, the
    current energy model; energy: ANN VGG16 and ANN ResNet18 (two seeds)."""
    levels = results / "levels"
    write_sweep(levels, {"arch": {"values": list(archs)},
                         "T": {"values": [1, 4]}, "N": {"values": [1, 2, 4, 8]},
                         "seed": {"values": [0, 1, 2]}})
    # VGG16 [T=1,N=4] vs [T=4,N=1]: 93.10/93.12/93.14 vs 93.14/93.15/93.16 %: gap -0.03 pp,
    # interval about +-0.06 pp: holds. SEW: 90.0/90.1/90.2 vs 93.0/93.1/93.2: -3 pp: fails.
    acc = {("vgg16", 1, 4): (0.9310, 0.9312, 0.9314), ("vgg16", 4, 1): (0.9314, 0.9315, 0.9316),
           ("sew_resnet18", 1, 4): (0.900, 0.901, 0.902),
           ("sew_resnet18", 4, 1): (0.930, 0.931, 0.932)}
    energy = {(1, 1): 100.0, (1, 2): 150.0, (1, 4): 200.0, (1, 8): 400.0, (4, 1): 500.0}
    for arch in archs:
        for (T, N), e in energy.items():
            for s in range(3):
                a = acc.get((arch, T, N), (0.8, 0.8, 0.8))[s]
                write_record(levels, f"{arch}-T{T}N{N}-s{s}", arch=arch, T=T, N=N, seed=s,
                             test_acc=a, energy=new_parts(e))
    ann = results / "energy"
    write_sweep(ann, {"arch": {"values": ["ann_vgg16", "ann_resnet18"]},
                      "seed": {"values": [0, 1]}})
    for arch, e in (("ann_vgg16", 2000.0), ("ann_resnet18", 1000.0)):
        for s in range(2):
            write_record(ann, f"{arch}-s{s}", arch=arch, seed=s, energy=new_parts(e),
                         energy_settings=ann_settings)


def test_energy_claims_name_their_settings_and_use_the_ann_study(tmp_path):
    results = tmp_path / "results"
    levels_and_energy(results)
    files = build_figures(results, tmp_path / "paper")
    claims = pd.read_csv(tmp_path / "paper" / "claims.csv")
    gaps = claims[claims["quantity"] == "accuracy gap (pp)"].set_index("our_setting")
    vgg = gaps[gaps.index.str.contains("arch=vgg16")].iloc[0]
    sew = gaps[gaps.index.str.contains("arch=sew_resnet18")].iloc[0]
    # paired by seed: gaps -0.04, -0.03, -0.02 pp, interval -0.03 +- 0.025 pp: inside +-0.5
    assert vgg["size"] == "holds" and vgg["ours"] == pytest.approx(-0.03)
    assert sew["size"] == "fails" and str(sew["runs"]) == "3 + 3"
    ratios = claims[claims["quantity"].str.startswith("energy [T=4, N=1] / [T=1, N=")]
    assert len(ratios) == 6  # N = 2, 4, 8 for each architecture
    assert sorted(ratios["ours"].round(3).unique()) == [1.25, 2.5, 3.333]  # 500 / (400, 200, 150)
    assert (ratios["energy_settings"] == NEW_SETTINGS).all()
    # the same energy in every seed: the intervals are the ratios themselves
    assert (ratios["direction"] == "holds").all()
    assert dict(zip(ratios["ours"].round(3), ratios["size"])) == {
        1.25: "fails", 2.5: "holds", 3.333: "fails"}  # the paper's 2-3x
    ann = claim(claims, "energy ANN VGG16 / VGG16 [T=1, N=4] (x)")
    assert ann["ours"] == pytest.approx(2000 / 200) and ann["direction"] == "holds"
    assert ann["size"] == "fails"  # 10x is not the third-party 2.93x
    assert ann["energy_settings"] == NEW_SETTINGS and str(ann["runs"]) == "2 + 3"
    assert claim(claims, "energy ANN ResNet18 / SEW-ResNet18 [T=4, N=1] (x)")["ours"] == \
        pytest.approx(1000 / 500)
    md = (tmp_path / "paper" / "claims.md").read_text()
    assert "energy settings" in md and NEW_SETTINGS in md
    index = (tmp_path / "paper" / "index.md").read_text()
    assert "sweeps/energy.yaml" not in index  # the ANN rows are there
    assert any(p.name == "energy-1col.pdf" for p in files)


def test_energy_rows_with_different_settings_are_not_judged(tmp_path):
    results = tmp_path / "results"
    levels_and_energy(results, ann_settings={"counting": "value"}, archs=("vgg16",))
    build_figures(results, tmp_path / "paper", paper=False)
    claims = pd.read_csv(tmp_path / "paper" / "claims.csv", keep_default_na=False)
    ann = claim(claims, "energy ANN VGG16 / VGG16 [T=1, N=4] (x)")
    assert ann["direction"] == "n/a" and ann["size"] == "n/a"
    assert ann["energy_settings"].startswith("differ between the compared groups")
    assert "value counting" in ann["energy_settings"] and "event counting" in ann["energy_settings"]
    index = (tmp_path / "paper" / "index.md").read_text()
    assert "Left out, as their energy settings differ: ANN ResNet18 (model lemaire, value " \
        "counting" in index and "ANN VGG16 (model lemaire, value counting" in index
    # the ANNs are not shown: [T=1, N=1] and [T=4, N=1] binary, N = 2, 4, 8 multi-level
    assert "(a) total, (b) the energy model's terms as shares of the total; 2 binary SNN and 3 " \
        "multi-level SNN groups" in index


def test_levels_without_ann_runs_point_to_the_energy_sweep(tmp_path):
    results = tmp_path / "results"
    levels_and_energy(results, archs=("vgg16",))
    shutil.rmtree(results / "energy")
    build_figures(results, tmp_path / "paper", paper=False)
    index = (tmp_path / "paper" / "index.md").read_text()
    assert "bench sweep sweeps/energy.yaml" in index
    assert "No ANN run in any study" in index


def test_every_paper_study_has_its_sweep_file():
    # the report prints `bench sweep sweeps/<study>.yaml` from the names alone (an installed
    # package has no sweeps/): the repository keeps one file per name, named after it
    from bench.report.figures import STUDIES, sweep_command

    root = Path(__file__).resolve().parents[1]
    assert sorted(STUDIES) == sorted(["levels", "avalanche", "sparse_n", "gradient", "dvs",
                                      "depth", "energy", "dvs_binary"])
    for study in STUDIES:
        path = sweep_command(study).split()[-1]
        assert (root / path).is_file(), path
        assert yaml.safe_load((root / path).read_text())["name"] == study


def test_figures_need_no_sweeps_folder(tmp_path):
    # the package alone, as pip installs it: bench/ copied where no sweeps/ sits beside it
    import bench

    site = tmp_path / "site"
    shutil.copytree(Path(bench.__file__).parent, site / "bench",
                    ignore=shutil.ignore_patterns("__pycache__"))
    results = tmp_path / "results"
    levels_and_energy(results, archs=("vgg16",))
    shutil.rmtree(results / "energy")
    code = ("import bench, sys; from bench.report.figures import build_figures; "
            "print(bench.__file__); build_figures(sys.argv[1], sys.argv[2], paper=False)")
    run = subprocess.run([sys.executable, "-c", code, str(results), str(tmp_path / "paper")],
                         cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(site)},
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.startswith(str(site / "bench"))
    assert not (site / "sweeps").exists() and not (tmp_path / "sweeps").exists()
    index = (tmp_path / "paper" / "index.md").read_text()
    # the missing-figure command, as from a checkout (it needed sweeps/energy.yaml there)
    assert "energy (ANN baselines): " in index
    assert "-> run `bench sweep sweeps/energy.yaml`" in index
