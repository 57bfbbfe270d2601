"""`bench perf`: milliseconds per training step (forward + backward + SGD step) against baselines.

Every model and baseline is built in one process, warmed up, then timed round-robin (one step of
each in turn, so a load change on a shared machine hits all of them alike); the table reports the
median step time and, as ratios, the median of the per-round ratios. Baselines: the ANN of the
same architecture, and spikingjelly's own SEW-ResNet18 (binary IFNode, sigmoid surrogate, CIFAR
stem) at T = T x N, N = 1: the same number of levels per neuron ([T=1, N=4] vs [T=4, N=1]).
Neuron kernels follow BENCH_FUSED_NEURONS (bench/neurons/multilevel.py); =off gives eager timings.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Callable

import pandas as pd
import torch
import torch.nn.functional as F
from spikingjelly.activation_based import functional, layer, neuron, surrogate
from spikingjelly.activation_based.model import sew_resnet
from torch import nn

from bench.errors import BenchError
from bench.models import build_model, names
from bench.neurons import multilevel

NUM_CLASSES = 10
MAX_IN_CHANNELS = 64
MAX_STEPS = 10000
MAX_INPUT_VALUES = 64 * 3 * 256 * 256  # one input batch; activations are ~100x this
SJ_NAME = "spikingjelly sew_resnet18"
ANN_OF = {"resnet18": "ann_resnet18", "vgg16": "ann_vgg16"}  # architecture -> its ANN baseline


class SpikingJellySEWResNet18(nn.Module):
    """spikingjelly's SEW-ResNet18 (cnf ADD, IFNode soft reset, Sigmoid(4)), multi-step, with the
    CIFAR stem: conv3x3 stride 1 and no max-pool. [B, C, H, W] -> repeated over T -> [B, classes].
    """

    def __init__(self, num_classes: int, in_channels: int, T: int) -> None:
        super().__init__()
        self.T = T
        net = sew_resnet.sew_resnet18(spiking_neuron=neuron.IFNode, cnf="ADD", v_reset=None,
                                      detach_reset=True,
                                      surrogate_function=surrogate.Sigmoid(alpha=4.0))
        net.conv1 = layer.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
        net.fc = layer.Linear(net.fc.in_features, num_classes)
        functional.set_step_mode(net, "m")
        functional.invalidate_reset_cache(net)  # modules were swapped after construction
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        functional.reset_net(self.net)
        x_seq = x.unsqueeze(0).repeat(self.T, *([1] * x.dim()))  # [T, B, C, H, W]
        return self.net(x_seq).mean(0)


@dataclass
class Entry:
    """One timed row: a model, its training step, and the step times (s) seen so far."""

    name: str
    role: str  # "model" or "baseline"
    T: int
    N: int
    arch: str  # the architecture family ("resnet18", "vgg16", ...) for the ANN ratio
    model: nn.Module
    step: Callable[[], None] | None = field(repr=False, default=None)
    times: list[float] = field(default_factory=list)
    probe_of: str | None = None  # set on a "with probes" twin: the entry it measures


def _family(name: str) -> str:
    return name.split("_")[-1]


def _device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec not in ("cpu", "cuda"):
        raise BenchError(f"--device: {spec!r} is not one of cpu, cuda, auto")
    if spec == "cuda" and not torch.cuda.is_available():
        raise BenchError("--device cuda: no CUDA device is available (use cpu or auto)")
    return torch.device(spec)


def _check_args(args: argparse.Namespace) -> list[str]:
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if not models:
        raise BenchError("--models: give at least one architecture")
    for m in models:
        if m not in names():
            raise BenchError(f"--models: unknown architecture '{m}'; known: {', '.join(names())}")
    for key in ("T", "N", "batch_size", "image_size", "in_channels", "steps"):
        if getattr(args, key) < 1:
            raise BenchError(f"--{key.replace('_', '-')}: {getattr(args, key)} must be >= 1")
    if args.warmup < 0:
        raise BenchError(f"--warmup: {args.warmup} must be >= 0")
    from bench.config import MAXIMA

    # the run's stated maxima (README "Limits"), checked before any tensor is allocated
    most = {"T": MAXIMA["T"], "N": MAXIMA["N"], "batch_size": MAXIMA["batch_size"],
            "image_size": MAXIMA["image_size"], "in_channels": MAX_IN_CHANNELS,
            "steps": MAX_STEPS, "warmup": MAX_STEPS}
    for key, limit in most.items():
        if getattr(args, key) > limit:
            raise BenchError(f"--{key.replace('_', '-')}: {getattr(args, key)} is over the "
                             f"maximum {limit}")
    pixels = args.batch_size * args.in_channels * args.image_size ** 2
    if pixels > MAX_INPUT_VALUES:
        raise BenchError(f"--batch-size x --in-channels x --image-size^2 = {pixels} input values "
                         f"is over the maximum {MAX_INPUT_VALUES} of one timed batch")
    return list(dict.fromkeys(models))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, bf16: bool,
              before_step: Callable[[torch.optim.Optimizer], None] | None = None
              ) -> Callable[[], None]:
    """One training step of `model` on the batch (x, y): forward, cross-entropy, backward, SGD."""
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        if before_step is not None:
            before_step(opt)
        opt.step()

    return step


def probed_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, bf16: bool = False,
                grad_every: int = 10, counting: bool = False) -> Callable[[], None]:
    """A training step of `model` with every run probe attached as `bench run` attaches them.

    SpikeProbe and the energy hooks are registered on the model; in a run they count only during
    evaluation epochs (`counting=False`, the training-step cost a run pays), `counting=True` makes
    them count every step (the worst case). GradNormProbe measures every `grad_every` steps (the
    run's default is 10). Minimal trainer/module stand-ins, so this times the probes, not
    Lightning. The hooks stay on `model`: pass a copy.
    """
    from bench.energy import EnergyCounter
    from bench.probes import GradNormProbe, SpikeProbe

    host = SimpleNamespace(model=model, device=x.device, log=lambda *a, **k: None)
    trainer = SimpleNamespace(global_step=0, sanity_checking=False, loggers=[])
    spikes, grads = SpikeProbe(), GradNormProbe(every=grad_every)
    for probe in (spikes, grads):
        probe.setup(trainer, host, "fit")
    if counting:
        spikes.on_test_epoch_start(trainer, host)  # hooks count every forward from here on
    EnergyCounter(model).active = counting

    def before_step(opt: torch.optim.Optimizer) -> None:
        grads.on_before_optimizer_step(trainer, host, opt)
        trainer.global_step += 1

    return make_step(model, x, y, bf16, before_step=before_step)


def time_with_probes(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, warmup: int = 3,
                     steps: int = 10, bf16: bool = False) -> float:
    """Median ms per training step of a copy of `model` with the run probes attached."""
    entry = Entry("probed", "model", 1, 1, "", copy.deepcopy(model))
    entry.step = probed_step(entry.model, x, y, bf16=bf16)
    _time([entry], warmup, steps, x.device)
    return 1e3 * statistics.median(entry.times)


def _ours(name: str, args: argparse.Namespace, role: str) -> Entry:
    model = build_model(name, num_classes=NUM_CLASSES, in_channels=args.in_channels, T=args.T,
                        N=args.N)
    return Entry(name, role, model.T, model.levels, _family(name), model)


def _entries(models: list[str], args: argparse.Namespace) -> list[Entry]:
    entries = [_ours(m, args, "model") for m in models]
    if args.no_baselines:
        return entries
    for ann in dict.fromkeys(ANN_OF[_family(m)] for m in models if _family(m) in ANN_OF):
        if ann not in models:
            entries.append(_ours(ann, args, "baseline"))
    sj = SpikingJellySEWResNet18(NUM_CLASSES, args.in_channels, T=args.T * args.N)
    entries.append(Entry(SJ_NAME, "baseline", sj.T, 1, "resnet18", sj))
    return entries


def _prepare(entries: list[Entry], args: argparse.Namespace, device: torch.device) -> list[Entry]:
    """Move, format and compile the models, build their steps; add "with probes" twins."""
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    x = torch.randn(args.batch_size, args.in_channels, args.image_size, args.image_size,
                    device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, NUM_CLASSES, (args.batch_size,), device=device)
    out = []
    for e in entries:
        e.model = e.model.to(device=device, memory_format=fmt)
        twin = None
        if args.probes and e.role == "model":
            probed = copy.deepcopy(e.model)
            twin = Entry(e.name, e.role, e.T, e.N, e.arch, _compiled(probed, args), probe_of=e.name)
            twin.step = probed_step(twin.model, x, y, bf16=args.bf16)
        e.model = _compiled(e.model, args)
        e.step = make_step(e.model, x, y, args.bf16)
        out += [e] if twin is None else [e, twin]
    return out


def _compiled(model: nn.Module, args: argparse.Namespace) -> nn.Module:
    return torch.compile(model) if args.compile else model


def _time(entries: list[Entry], warmup: int, steps: int, device: torch.device) -> None:
    for e in entries:
        for _ in range(warmup):
            e.step()
    for _ in range(steps):  # round-robin: every entry sees the same machine load
        for e in entries:
            _sync(device)
            t0 = time.perf_counter()
            e.step()
            _sync(device)
            e.times.append(time.perf_counter() - t0)


def _paired_ratio(e: Entry, base: Entry | None) -> float:
    """Median over rounds of e's step time / base's step time in the same round: each round
    times every entry once, back to back, so a load change on the machine cancels out."""
    if base is None:
        return float("nan")
    return statistics.median(a / b for a, b in zip(e.times, base.times))


def _table(entries: list[Entry]) -> pd.DataFrame:
    plain = [e for e in entries if e.probe_of is None]
    probed = {e.probe_of: e for e in entries if e.probe_of is not None}
    ann = {e.arch: e for e in plain if e.name.startswith("ann_")}
    sj = next((e for e in plain if e.name == SJ_NAME), None)
    return pd.DataFrame([{
        "model": e.name, "role": e.role, "T": e.T, "N": e.N,
        "ms/step": 1e3 * statistics.median(e.times),
        "vs ANN": _paired_ratio(e, ann.get(e.arch)),
        "vs sj SEW-ResNet18": _paired_ratio(e, sj),
        "probes ms/step": 1e3 * statistics.median(probed[e.name].times) if e.name in probed
        else float("nan"),
    } for e in plain])


def run_perf(args: argparse.Namespace) -> pd.DataFrame:
    """The timing table for the parsed `bench perf` arguments (a notebook can call this)."""
    models = _check_args(args)
    device = _device(args.device)
    entries = _prepare(_entries(models, args), args, device)
    _time(entries, args.warmup, args.steps, device)
    return _table(entries)


def main_perf(args: argparse.Namespace) -> int:
    table = run_perf(args)
    device = _device(args.device)
    print(f"bench perf: {device.type}, {torch.get_num_threads()} threads, batch {args.batch_size}, "
          f"{args.in_channels}x{args.image_size}x{args.image_size}, {args.warmup} warm-up + "
          f"{args.steps} timed steps (median), channels_last={args.channels_last}, "
          f"bf16={args.bf16}, compile={args.compile}, "
          f"fused neuron kernels={multilevel.fused_kernel_mode()}, torch {torch.__version__}")
    print(table.to_markdown(index=False, floatfmt=("", "", "", "", ".1f", ".3f", ".3f", ".1f")))
    if (device.type, args.batch_size, args.image_size, args.in_channels) == ("cpu", 32, 32, 3):
        for line in target_checks(table):  # the targets are stated at these settings
            print(line)
    return 0


def target_checks(table: pd.DataFrame) -> list[str]:
    """The issue's speed targets, for Sparse-ResNet18 at [T=1, N=4] (batch 32, 32x32x3, CPU)."""
    rows = table[(table["model"] == "sparse_resnet18") & (table["T"] == 1) & (table["N"] == 4)]
    lines = []
    for _, row in rows.iterrows():
        if pd.notna(row["vs ANN"]):
            ok = "met" if row["vs ANN"] <= 1.15 else "missed"
            lines.append(f"target sparse_resnet18 [T=1,N=4] <= 1.15x ann_resnet18: "
                         f"{row['vs ANN']:.2f}x ({ok})")
        if pd.notna(row["vs sj SEW-ResNet18"]):
            speedup = 1.0 / row["vs sj SEW-ResNet18"]
            ok = "met" if speedup >= 3.5 else "missed"
            lines.append(f"target sparse_resnet18 [T=1,N=4] >= 3.5x faster than spikingjelly "
                         f"SEW-ResNet18 [T=4,N=1]: {speedup:.2f}x ({ok})")
    return lines
