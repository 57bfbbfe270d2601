"""The fixed cost of one digits trial: what a run pays besides its training epochs.

Two parts, each timed from a fresh process that runs `bench run` (bench.cli.main, then the
CLI's own exit) with a callback marking the run's phases:

- start: from the launch of the process (the parent's clock just before it starts the child)
  to the first training step (a callback's on_train_batch_start);
- finish: from the end of the last training epoch (validation included) to the process's exit
  (test pass with its spike and energy counting, summary.json, W&B summary, artifacts and
  finish, the interpreter's exit).

`own` is the fixed cost less the interpreter's start and its import of torch and Lightning
(which imports torchmetrics, torchvision and scipy.signal at its own import): seconds that are
the same in every tree and that a sweep's workers, forked from a server that imported them,
do not pay per trial. It is what a change to bench can move.

Each tree (a folder holding a `bench/` package: this checkout, an older one unpacked with
`git archive`) runs in its own fresh process, trees alternate round by round, and the figures
quoted are medians over rounds; with two trees, also the median of the paired ratios.

    python benchmarks/trial_fixed_cost.py --rounds 5                       # this checkout
    python benchmarks/trial_fixed_cost.py --rounds 5 --tree /tmp/old --tree .   # before/after
    python benchmarks/trial_fixed_cost.py --rounds 3 --set limit_train_batches=2  # cheaper
    python benchmarks/trial_fixed_cost.py --rounds 2 --sweep --tree /tmp/old --tree .

`--sweep` times the quick start itself instead: `bench sweep sweeps/avalanche.yaml --set
dataset=digits --set epochs=2` (6 trials, the tree's own sweep file and default workers), one
fresh process per tree and round. Its figures: `fixed`, per trial, the Optuna duration (popped
to told) less the trial's epochs (median over trials); `sweep`, the sweep's time outside trials
(its start and its workers' imports, the end-of-sweep table, its exit); `all`, the sweep's wall
time less every epoch, per trial: what the quick start pays a trial besides training.

The default trial is the README's quick start (`sweeps/avalanche.yaml --set dataset=digits
--set epochs=2`): sparse_resnet18, T=1, N=4, SGD lr 0.08, cosine, batch 64, probes on, W&B
offline, both checkpoints. `--set` pairs change it (limit_train_batches only shortens the
epochs, which are not part of the fixed cost). Each worker also prints its timeline (`-v`).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

QUICK_START = {"dataset": "digits", "epochs": 2, "arch": "sparse_resnet18", "T": 1, "N": 4,
               "estimator": "sigmoid", "barrier_estimator": "ste", "alpha": 4.0,
               "optimizer": "sgd", "lr": 0.08, "momentum": 0.9, "weight_decay": 5.0e-4,
               "schedule": "cosine", "batch_size": 64, "progress_bar": False}


def worker(launched: float, sets: list[str], results: str) -> None:
    """One `bench run` in this (fresh) process, through the tree's own CLI and exit; prints the
    wall-clock marks, seconds since `launched`."""
    marks: dict[str, float] = {"interpreter": time.time()}
    import lightning as L

    marks["import lightning"] = time.time()
    import bench.cli
    import bench.run

    marks["import bench.run"] = time.time()

    class Timeline(L.Callback):
        """Wall-clock marks of the run's phases (first occurrence; epoch ends: the last)."""

        def _mark(self, name: str, last: bool = False) -> None:
            if last or name not in marks:
                marks[name] = time.time()

        def on_fit_start(self, trainer, pl_module):
            self._mark("fit start")

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self._mark("first training step")

        def on_train_epoch_end(self, trainer, pl_module):
            self._mark("last epoch end", last=True)

        def on_test_start(self, trainer, pl_module):
            self._mark("test start")

        def on_test_end(self, trainer, pl_module):
            self._mark("test end")

    # `bench run` calls `train` by name (older trees: `execute`, which took the callbacks)
    name = "train" if hasattr(bench.run, "train") else "execute"
    inner = getattr(bench.run, name)

    def timed(cfg, *args, **kwargs):
        marks["execute"] = time.time()
        kwargs["callbacks"] = [*kwargs.get("callbacks", ()), Timeline()]
        return inner(cfg, *args, **kwargs)

    setattr(bench.run, name, timed)
    args = [f"{k}={v}" for k, v in {**QUICK_START, "run_id": "trial"}.items()] + sets
    with contextlib.redirect_stdout(io.StringIO()):
        code = bench.cli.main(["run", "--results", results, *(a for s in args
                                                              for a in ("--set", s))])
    marks["record written"] = time.time()
    with open(Path(results) / "default" / "runs" / "trial" / "metrics.csv", newline="") as f:
        epochs = [float(row["time_s"]) for row in csv.DictReader(f)]
    print(json.dumps({"marks": {k: v - launched for k, v in marks.items()}, "epochs_s": epochs,
                      "code": code}), flush=True)
    # the way `bench run` ends (a tree without bench.cli.exit_now ends as sys.exit does)
    getattr(bench.cli, "exit_now", sys.exit)(code)


def one_trial(tree: Path, sets: list[str], verbose: bool) -> dict:
    """Launch a fresh process on `tree`'s bench; its marks plus the exit, seconds from launch."""
    with tempfile.TemporaryDirectory(prefix="trial-fixed-cost-") as results:
        env = {**os.environ, "PYTHONPATH": str(tree), "WANDB_SILENT": "true"}
        env.pop("WANDB_SERVICE", None)
        cmd = [sys.executable, __file__, "--worker", "--results", results]
        cmd += [a for s in sets for a in ("--set", s)]
        launched = time.time()
        out = subprocess.run(cmd + ["--launched", repr(launched)], env=env, cwd=results,
                             capture_output=True, text=True)
        exited = time.time() - launched
        if out.returncode != 0 or not out.stdout.strip():
            raise SystemExit(f"worker on {tree} failed:\n{out.stderr[-3000:]}")
    got = json.loads(out.stdout.strip().splitlines()[-1])
    got["marks"]["exit"] = exited
    m = got["marks"]
    got["start_s"] = m["first training step"]
    got["finish_s"] = m["exit"] - m["last epoch end"]
    got["fixed_s"] = got["start_s"] + got["finish_s"]
    # what the tree itself adds: the fixed cost less the interpreter's start and its import of
    # torch and Lightning (with torchmetrics, torchvision, scipy.signal: the same packages, the
    # same seconds, in every tree; a sweep's fork server pays them once per sweep)
    got["own_s"] = got["fixed_s"] - m["import lightning"]
    if verbose:
        print(f"  {tree}: " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(m.items(),
                                                                     key=lambda kv: kv[1])))
    return got


def one_sweep(tree: Path, sets: list[str], verbose: bool) -> dict:
    """The quick-start sweep on `tree` in a fresh process: its wall time, and per trial the
    Optuna duration (popped to told) less the trial's epochs."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    with tempfile.TemporaryDirectory(prefix="sweep-fixed-cost-") as results:
        env = {**os.environ, "PYTHONPATH": str(tree), "WANDB_SILENT": "true"}
        env.pop("WANDB_SERVICE", None)
        sets = ["dataset=digits", "epochs=2", *sets]
        # as the `bench` console script ends (bench.cli.entry; a tree without it: sys.exit)
        run = ("import sys, bench.cli as c; sys.exit(c.main()) if not hasattr(c, 'entry') "
               "else c.entry()")
        cmd = [sys.executable, "-c", run, "sweep",
               str(tree / "sweeps" / "avalanche.yaml"), "--results", results,
               *(a for s in sets for a in ("--set", s))]
        launched = time.time()
        out = subprocess.run(cmd, env=env, cwd=results, capture_output=True, text=True)
        wall = time.time() - launched
        if out.returncode != 0:
            raise SystemExit(f"sweep on {tree} failed:\n{out.stderr[-3000:]}")
        study_dir = Path(results) / "avalanche"
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage = JournalStorage(JournalFileBackend(str(study_dir / "optuna.journal")))
        trials = optuna.load_study(study_name="avalanche", storage=storage).trials
        per_trial, trained = [], 0.0
        for t in trials:
            with open(study_dir / "runs" / f"trial-{t.number:04d}" / "metrics.csv",
                      newline="") as f:
                epochs = sum(float(row["time_s"]) for row in csv.DictReader(f))
            took = (t.datetime_complete - t.datetime_start).total_seconds()
            per_trial.append(took - epochs)
            trained += epochs
        busy = sum((t.datetime_complete - t.datetime_start).total_seconds() for t in trials)
    got = {"wall_s": wall, "trials": len(trials), "trained_s": trained,
           "fixed_s": statistics.median(per_trial), "sweep_s": wall - busy,
           "all_s": (wall - trained) / len(trials)}
    if verbose:
        print(f"  {tree}: wall {wall:.2f} s, {len(trials)} trials, epochs {trained:.2f} s, "
              f"per trial besides epochs " + " ".join(f"{x:.2f}" for x in per_trial))
    return got


def sweep_rounds(trees: list[Path], args: argparse.Namespace) -> int:
    runs: dict[Path, list[dict]] = {t: [] for t in trees}
    for r in range(args.rounds):
        for tree in trees if r % 2 == 0 else trees[::-1]:
            runs[tree].append(one_sweep(tree, args.set, args.verbose))
        print(f"round {r + 1}: " + "; ".join(
            f"{t.name or t}: wall {runs[t][-1]['wall_s']:.1f} s, epochs "
            f"{runs[t][-1]['trained_s']:.1f} s over {runs[t][-1]['trials']} trials, a trial "
            f"{runs[t][-1]['fixed_s']:.2f} s besides its epochs, the sweep outside trials "
            f"{runs[t][-1]['sweep_s']:.1f} s, all but epochs {runs[t][-1]['all_s']:.2f} s a "
            f"trial" for t in trees), flush=True)
    for t in trees:
        med = {k: statistics.median(x[k] for x in runs[t]) for k in ("fixed_s", "sweep_s",
                                                                     "all_s", "wall_s")}
        print(f"{t}: median per trial besides epochs {med['fixed_s']:.2f} s; outside trials "
              f"{med['sweep_s']:.1f} s; the sweep's wall time less its epochs, per trial, "
              f"{med['all_s']:.2f} s; wall {med['wall_s']:.1f} s ({args.rounds} rounds)")
    print_ratios(runs, trees, ("fixed_s", "sweep_s", "all_s", "wall_s"))
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tree", action="append", type=Path,
                   help="a folder holding the bench package to time (repeat to compare; "
                        "default: this checkout)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("-v", "--verbose", action="store_true", help="print each trial's timeline")
    p.add_argument("--sweep", action="store_true",
                   help="time the quick-start sweep (6 trials), not one `bench run`")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--launched", type=float, help=argparse.SUPPRESS)
    p.add_argument("--results", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args.launched, args.set, args.results)
    trees = [t.resolve() for t in (args.tree or [Path(__file__).resolve().parents[1]])]
    if args.sweep:
        return sweep_rounds(trees, args)
    runs: dict[Path, list[dict]] = {t: [] for t in trees}
    for r in range(args.rounds):
        order = trees if r % 2 == 0 else trees[::-1]  # alternated: no tree always goes first
        for tree in order:
            runs[tree].append(one_trial(tree, args.set, args.verbose))
        print(f"round {r + 1}: " + "; ".join(
            f"{t.name or t}: start {runs[t][-1]['start_s']:.2f} s, finish "
            f"{runs[t][-1]['finish_s']:.2f} s, epochs "
            f"{'+'.join(f'{e:.1f}' for e in runs[t][-1]['epochs_s'])} s" for t in trees),
            flush=True)
    for t in trees:
        med = {k: statistics.median(x[k] for x in runs[t]) for k in ("start_s", "finish_s",
                                                                     "fixed_s", "own_s")}
        phases = _median_phases(runs[t])
        print(f"{t}: median start {med['start_s']:.2f} s, finish {med['finish_s']:.2f} s, "
              f"fixed {med['fixed_s']:.2f} s, of which the tree's own {med['own_s']:.2f} s "
              f"({args.rounds} rounds)")
        print("  median phase ends (s from launch): " + ", ".join(
            f"{k} {v:.2f}" for k, v in phases))
    print_ratios(runs, trees, ("start_s", "finish_s", "fixed_s", "own_s"))
    return 0


def print_ratios(runs: dict[Path, list[dict]], trees: list[Path], keys: tuple[str, ...]) -> None:
    """With two trees: for each key, the median over rounds of the paired ratio second/first."""
    if len(trees) != 2:
        return
    a, b = trees
    for key in keys:
        ratios = [y[key] / x[key] for x, y in zip(runs[a], runs[b])]
        print(f"{key[:-2]}: {b.name or b} / {a.name or a} = median x"
              f"{statistics.median(ratios):.3f} (min {min(ratios):.3f}, max "
              f"{max(ratios):.3f}, paired over {len(ratios)} rounds)")


def _median_phases(runs: list[dict]) -> list[tuple[str, float]]:
    keys = set.intersection(*(set(r["marks"]) for r in runs))
    med = {k: statistics.median(r["marks"][k] for r in runs) for k in keys}
    return sorted(med.items(), key=lambda kv: kv[1])


if __name__ == "__main__":
    sys.exit(main())
