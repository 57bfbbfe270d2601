"""A report from a real digits study (the session's tiny SEW + Sparse runs) writes every file its
index lists, and shows the avalanche."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from bench.report import build_report


def test_report_of_real_study_writes_every_indexed_file(digits_study, tmp_path):
    out = tmp_path / "report"
    written = build_report([Path(digits_study["results"]) / "tiny"], out, baseline="arch=sew_resnet18")
    index = (out / "index.md").read_text()
    linked = set(re.findall(r"\]\(([^)]+)\)", index))
    assert linked, index
    for rel in linked:
        assert (out / rel).is_file(), rel
    assert {p.relative_to(out).as_posix() for p in written} >= linked
    for fig in ("avalanche", "energy", "gradient"):
        assert (out / "figures" / f"{fig}.png").stat().st_size > 1000
    assert "vs SEW-ResNet18" in index
    summary = pd.read_csv(out / "tables" / "summary.csv")
    assert len(summary) == 2  # one row per architecture
