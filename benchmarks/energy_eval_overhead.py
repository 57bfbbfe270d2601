"""What energy (and spike) counting costs an evaluation epoch: ratio to the same epoch without.

Each variant runs in its own fresh process (a compiled kernel's thread pool or a warm cache in
one process would bias the next), variants alternate round by round, and the figure quoted is
the median over rounds of the paired ratio counted / plain.

    python benchmarks/energy_eval_overhead.py --rounds 5 --shape cifar
    python benchmarks/energy_eval_overhead.py --worker energy --shape digits   # one timing

Variants: `none` (no probe), `energy` (EnergyProbe, the run's energy settings), `all` (every run
probe: spikes, gradient norms, energy). A worker builds the run's LightningModule, runs one
warm-up validation epoch, then reports the median wall time of `--repeats` validation epochs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time


def worker(variant: str, shape: str, arch: str, repeats: int) -> float:
    import lightning as L
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from bench.config import build_config
    from bench.module import SpikingClassifier
    from bench.run import build_probes

    torch.manual_seed(0)
    cfg = build_config({"arch": arch, "T": 1, "N": 4, "probes": variant != "none",
                        "progress_bar": False, "wandb": "disabled"})
    if shape == "cifar":  # CIFAR-10-shaped: 3 x 32 x 32, 512 images, batch 128
        images, classes, channels, batch = torch.rand(512, 3, 32, 32), 10, 3, 128
    else:  # the digits validation split's shape: 1 x 8 x 8, 197 images, batch 64
        images, classes, channels, batch = torch.rand(197, 1, 8, 8), 10, 1, 64
    labels = torch.randint(0, classes, (len(images),))
    loader = DataLoader(TensorDataset(images, labels), batch_size=batch)
    module = SpikingClassifier(cfg, classes, channels)
    probes = build_probes(cfg)
    if variant == "energy":
        probes = {"energy": probes["energy"]}
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        callbacks=list(probes.values()))
    trainer.validate(module, loader, verbose=False)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        trainer.validate(module, loader, verbose=False)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--worker", choices=("none", "energy", "all"))
    p.add_argument("--shape", choices=("digits", "cifar"), default="cifar")
    p.add_argument("--arch", default="sparse_resnet18")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    if args.worker:
        print(json.dumps({"seconds": worker(args.worker, args.shape, args.arch, args.repeats)}))
        return 0
    base = [sys.executable, __file__, "--shape", args.shape, "--arch", args.arch,
            "--repeats", str(args.repeats), "--worker"]
    ratios: dict[str, list[float]] = {"energy": [], "all": []}
    for r in range(args.rounds):
        seconds = {}
        for variant in ("none", "energy", "all"):  # alternated, each in a fresh process
            out = subprocess.run(base + [variant], capture_output=True, text=True, check=True)
            seconds[variant] = json.loads(out.stdout.strip().splitlines()[-1])["seconds"]
        for variant in ratios:
            ratios[variant].append(seconds[variant] / seconds["none"])
        print(f"round {r + 1}: validation epoch {seconds['none'] * 1e3:.0f} ms plain, "
              f"x{ratios['energy'][-1]:.3f} with energy counting, "
              f"x{ratios['all'][-1]:.3f} with every probe", flush=True)
    for variant, values in ratios.items():
        print(f"{args.shape} {args.arch}: {variant} / none = median x{statistics.median(values):.3f} "
              f"(min {min(values):.3f}, max {max(values):.3f}, {len(values)} rounds; "
              "ratio of validation-epoch wall times, lower is cheaper)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
