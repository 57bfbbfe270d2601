"""Shared fixtures: real tiny digits runs, trained once per test session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_SILENT", "true")
os.environ.pop("WANDB_API_KEY", None)  # tests never go online
os.environ.setdefault("MPLBACKEND", "Agg")

# The edit-loop tier, `python -m pytest -m "not slow" tests` (README, "Tests"), leaves out what
# trains real runs or starts bench processes: marked here, in one place, so that a new test in
# these files or a new user of these fixtures falls into its tier without a marker of its own.
SLOW_FIXTURES = {"digits_study", "sparse_run", "reference", "sweep", "postgres_url"}
SLOW_FILES = {"test_sweep_postgres.py", "test_report_e2e.py", "test_run_failures.py"}
SLOW_TESTS = (  # file::test-name prefixes (every parameter of a parametrized test)
    "test_sweep_run.py::test_grid_of_six", "test_sweep_run.py::test_sigkill_then_resume",
    "test_sweep_run.py::test_failing_trial", "test_sweep_run.py::test_nan_loss_trial",
    "test_sweep_run.py::test_hyperband", "test_sweep_run.py::test_multi_objective",
    "test_sweep_interrupt.py::test_interrupted_sweep", "test_hostile.py::test_an_integer_limit",
    "test_sweep_interrupt.py::test_a_torn_last_journal_line", "test_run.py::test_nan_loss",
    "test_durable.py::test_checkpoint_none", "test_plugins.py::test_run_and_eval",
    "test_plugins.py::test_sweep_workers", "test_readme.py::test_readme_python_block_runs",
    "test_readme.py::test_method_doc_python_blocks_run",
    "test_tracking.py::test_checkpoints_become_a_model_artifact",
    "test_gpu.py::test_one_epoch_fake_run", "test_perf.py::test_fused_kernels_are_bit_identical",
    "test_report.py::test_two_builds_are_byte_identical", "test_report.py::test_cli_baseline",
    # seconds of CPU each (whole networks counted, figures built), measured with --durations
    "test_energy.py::test_sew_sum_counts_values",
    "test_energy.py::test_layers_reading_one_neuron_output",
    "test_perf.py::test_perf_prints_a_row_per_model", "test_figures.py::test_energy_claims",
    "test_figures.py::test_levels_gradient_dvs_claims",
    "test_figures.py::test_figures_need_no_sweeps_folder",
    "test_hostile.py::test_a_limit_giving_no_batch_fails_its_trial")


def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        name = item.nodeid.rsplit("/", 1)[-1]
        if (SLOW_FIXTURES & set(getattr(item, "fixturenames", ())) or name.startswith(SLOW_TESTS)
                or name.split("::")[0] in SLOW_FILES):
            item.add_marker(pytest.mark.slow)


TINY = {"dataset": "digits", "epochs": 2, "batch_size": 32, "limit_train_batches": 3,
        "limit_val_batches": 2, "limit_test_batches": 2, "T": 1, "N": 4, "seed": 3,
        "progress_bar": False, "grad_every": 1}


REPO = Path(__file__).resolve().parents[1]


def bench_command(*args: str) -> list[str]:
    """`bench ARGS` as a child process of this interpreter (the checkout's bench)."""
    return [sys.executable, "-m", "bench.cli", *args]


def child_env() -> dict:
    """The environment of a `bench` child process.

    WANDB_SERVICE (set once this process used W&B) would make each child log through this
    process's W&B service, which still holds an earlier (killed) child's run id."""
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    return {**env, "PYTHONPATH": str(REPO), "WANDB_SILENT": "true"}


def csv_rows(path: Path) -> int:
    """Data rows of a CSV record (0 while it does not exist yet)."""
    return max(0, len(path.read_text().splitlines()) - 1) if path.is_file() else 0


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
