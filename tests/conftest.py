"""Shared fixtures: real tiny digits runs, trained once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_SILENT", "true")
os.environ.pop("WANDB_API_KEY", None)  # tests never go online
os.environ.setdefault("MPLBACKEND", "Agg")

TINY = {"dataset": "digits", "epochs": 2, "batch_size": 32, "limit_train_batches": 3,
        "limit_val_batches": 2, "limit_test_batches": 2, "T": 1, "N": 4, "seed": 3,
        "progress_bar": False, "grad_every": 1}


def tiny_config(results: Path, **overrides):
    from bench.config import build_config

    return build_config(TINY, {"results": str(results)}, overrides)


@pytest.fixture(scope="session")
def digits_study(tmp_path_factory) -> dict:
    """SEW- and Sparse-ResNet18 on digits, same seed, offline W&B: {arch: summary}."""
    from bench.run import execute

    results = tmp_path_factory.mktemp("results")
    out = {}
    for arch in ("sew_resnet18", "sparse_resnet18"):
        cfg = tiny_config(results, arch=arch, study="tiny", run_id=arch, wandb="offline")
        out[arch] = execute(cfg)
    out["results"] = results
    return out
