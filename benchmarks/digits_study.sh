#!/usr/bin/env bash
# The digits study (README, "The digits study"): the three sweeps of sweeps/digits/, then
# `bench figures` over them, then the outcome committed under docs/digits-study/ (the claims
# table, the sensitivity matrix, a short claims table and three figures; under 1 MB).
#
#   bash benchmarks/digits_study.sh [RESULTS_DIR]     # default results/digits; about an hour on 2 cores
#
# An interrupted run continues where it stopped: run the same command again. W&B is off to keep
# the hour an hour (each trial's record under RESULTS_DIR has every number W&B would show).
set -euo pipefail
cd "$(dirname "$0")/.."
results=${1:-results/digits}
for study in levels avalanche energy; do
  bench sweep "sweeps/digits/$study.yaml" --results "$results" --set wandb=disabled
done
bench figures --results "$results" --out reports/digits-study
out=docs/digits-study
mkdir -p "$out"
cp reports/digits-study/claims.md reports/digits-study/sensitivity.md "$out/"
cp reports/digits-study/figures/tradeoff-levels.png reports/digits-study/figures/avalanche.png \
   reports/digits-study/figures/energy.png "$out/"
python - "$out" <<'PY'
"""claims-short.md: the judged rows of claims.csv, the columns a reader scans first."""
import sys
from pathlib import Path

import pandas as pd

out = Path(sys.argv[1])
claims = pd.read_csv("reports/digits-study/claims.csv", keep_default_na=False)  # "n/a" is a verdict
judged = claims[(claims["direction"] != "n/a") | (claims["size"] != "n/a")]
short = judged[["figure", "quantity", "paper", "ours", "unit", "direction", "size", "evidence"]]
short = short.assign(ours=[f"{float(v):,.2f} {u}".strip() if u != "spikes / image"
                           else f"{float(v):,.0f}" for v, u in zip(short["ours"], short["unit"])])
short = short.drop(columns="unit").rename(columns={"evidence": "our numbers (95 % interval)"})
(out / "claims-short.md").write_text(short.to_markdown(index=False) + "\n")
PY
du -sh "$out"
