"""`bench figures` on hand-written run records: the paper's numbers beside ours, verdicts,
and the sweep commands of missing figures."""

from __future__ import annotations


import pandas as pd
import pytest

from bench.cli import main
from bench.errors import BenchError
from bench.report.figures import build_figures
from bench.report.paper import REPORTED
from test_report import energy_parts, make_avalanche, write_record, write_sweep


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
    assert sew["ours_minus_paper"] == pytest.approx(400 - 67848)
    assert sparse["paper"] == "35,819 spikes at sum1" and sparse["ours"] == pytest.approx(250.0)
    assert sparse["holds"] == "yes" and "250 < 400" in sparse["evidence"]
    change = claim(claims, "change at sum1, Sparse vs SEW (%)")
    assert change["ours"] == pytest.approx(-37.5)  # (250 - 400) / 400
    assert change["ours_minus_paper"] == pytest.approx(-37.5 - 100 * (35819 - 67848) / 67848)
    activity = claim(claims, "activity change, Sparse-ResNet18 vs SEW-ResNet18 (%)")
    assert activity["ours"] == pytest.approx(100 * (600 - 1100) / 1100)
    assert activity["ours_minus_paper"] == pytest.approx(0.0)  # -45 % is inside -47..-25 %
    assert activity["holds"] == "yes"
    acc = claim(claims, "accuracy difference, Sparse-ResNet18 vs SEW-ResNet18 (pp)")
    assert acc["ours"] == pytest.approx(0.0, abs=1e-9) and acc["holds"] == "yes"
    bound = claim(claims, "largest spike at a residual sum, SEW")
    assert bound["ours"] == 8 and bound["holds"] == "yes"  # SEW z 8 > N=4, Sparse <= 4
    assert (claims["our_setting"].str.startswith("digits")).all()  # our dataset in every row
    assert set(claims["paper_dataset"]) <= {"CIFAR-10", "CIFAR-10/100"}
    md = (only_avalanche["out"] / "claims.md").read_text()
    assert "67,848 spikes at sum1 (CIFAR-10)" in md and "| yes" in md


def test_missing_figures_list_their_sweep_commands(only_avalanche):
    out = only_avalanche["out"]
    index = (out / "index.md").read_text()
    for study in ("levels", "sparse_n", "gradient", "dvs", "depth"):
        assert f"bench sweep sweeps/{study}.yaml" in index, study
    assert "bench sweep sweeps/avalanche.yaml" not in index
    assert "figures/avalanche.png" in index
    written = {p.relative_to(out).as_posix() for p in only_avalanche["files"]}
    assert {"claims.md", "claims.csv", "claims.tex", "index.md", "index.html",
            "figures/avalanche.png", "figures/avalanche.pdf"} == written
    assert "bench sweep sweeps/levels.yaml" in (out / "index.html").read_text()


def test_direction_that_fails_says_no(tmp_path):
    study = tmp_path / "results" / "avalanche"
    write_record(study, "sew", arch="sew_resnet18", spikes={"sum0": 10, "sum1": 100},
                 test_acc=0.90)
    write_record(study, "sparse", arch="sparse_resnet18", spikes={"sum0": 10, "sum1": 300},
                 test_acc=0.80)
    build_figures(tmp_path / "results", tmp_path / "paper")
    claims = pd.read_csv(tmp_path / "paper" / "claims.csv")
    assert claim(claims, "spikes at sum1, Sparse")["holds"] == "no"
    acc = claim(claims, "accuracy difference, Sparse-ResNet18 vs SEW-ResNet18 (pp)")
    assert acc["ours"] == pytest.approx(-10.0) and acc["holds"] == "no"
    assert "\\textbf{no}" in (tmp_path / "paper" / "claims.tex").read_text()


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
        write_record(grad, name, arch=arch, barrier_estimator=est, spikes={"sum0": 1.0},
                     grads={"stem": [1.0, 1.0], "block0": [g, g], "head": [1.0, 1.0]})
    dvs = results / "dvs"
    for T, N, a in ((1, 1, 0.50), (1, 4, 0.70), (10, 1, 0.72)):
        write_record(dvs, f"T{T}N{N}", arch="vgg16", T=T, N=N, test_acc=a, dataset="digits")
    files = build_figures(results, tmp_path / "paper")
    claims = pd.read_csv(tmp_path / "paper" / "claims.csv")
    gap = claim(claims, "accuracy gap (pp)")
    assert gap["ours"] == pytest.approx(-0.02) and gap["holds"] == "yes"
    assert gap["ours_minus_paper"] == pytest.approx(0.0, abs=1e-9)
    # energy: binary [T=4, N=1] = 8000 uJ, multi-level [T=1, N=4] = 250 uJ -> 32x
    ratio = claim(claims, "energy [T=4, N=1] / [T=1, N=4] (x)")
    assert ratio["ours"] == pytest.approx(8000 / 250) and ratio["holds"] == "yes"
    assert ratio["ours_minus_paper"] == pytest.approx(32 - 3)  # above the paper's 2-3x
    vgg = claims[claims["source"] == "third-party notes (unverified)"]
    multi = vgg[vgg["paper"] == "94.34 %"].iloc[0]
    assert multi["ours"] == pytest.approx(93.13) and multi["ours_minus_paper"] == pytest.approx(
        93.13 - REPORTED["vgg16_c10_multi"].value)
    assert (vgg[vgg["unit"] == "mJ / image"]["holds"] == "yes").all()  # 0.25 < 8 < 12.9 mJ
    sg = claim(claims, "block0 gradient norm, Sparse+SG")
    assert sg["ours"] == pytest.approx(0.001) and sg["holds"] == "yes"
    assert claim(claims, "block0 gradient norm, Sparse+STE")["holds"] == "yes"
    dvs_acc = claim(claims, "accuracy at T=1, N=4 (%)")
    assert dvs_acc["ours"] == pytest.approx(70.0) and dvs_acc["holds"] == "yes"
    assert claim(claims, "latency cut, T of binary / T=1 (x)")["holds"] == "no"  # 70 < 72 - 0.5
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
