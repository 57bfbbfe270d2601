"""`bench perf`: milliseconds per training step (forward + backward + SGD step) against baselines.

Every model and baseline is built in one process, warmed up, then timed round-robin (one step of
each in turn, so a load change on a shared machine hits all of them alike); the table reports the
median step time and, as ratios, the median of the per-round ratios. Baselines: the ANN of the
same architecture, and spikingjelly's own SEW-ResNet18 (binary IFNode, sigmoid surrogate, CIFAR
stem) at T = T x N, N = 1: the same number of levels per neuron ([T=1, N=4] vs [T=4, N=1]).

Variants (`--variants`, side by side, each with its own baselines): "eager" (every op its own
kernel), "fused" (MultiLevelIF's fused kernels, bench/neurons/fused.py, at the default backend
"auto" as a run uses them), "compiled" (torch.compile of the whole eager model).
"""

from __future__ import annotations

import dataclasses

import copy
import statistics
import sys
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
from bench.models import ARCHITECTURES, build_model, contract_of, is_spiking, names
from bench.neurons import NeuronSettingError, NeuronSettings, set_backend
from bench.neurons.settings import DEFAULT_T, check_T
from bench.perf_settings import PerfSettings

__all__ = ["PerfSettings", "run_perf", "main_perf", "make_step", "probed_step",
           "time_with_probes", "to_markdown", "target_checks"]

NUM_CLASSES = 10
MAX_IN_CHANNELS = 64
MAX_STEPS = 10000
MAX_INPUT_VALUES = 64 * 3 * 256 * 256  # one input batch; activations are ~100x this
SJ_NAME = "spikingjelly sew_resnet18"
VARIANTS = {"eager": "torch", "fused": "auto", "compiled": "torch"}  # variant -> neuron backend
MIN_STEPS = 5  # fewer timed steps: a warning (a median of 2-4 noisy samples is not a figure)


class SpikingJellySEWResNet18(nn.Module):
    """spikingjelly's SEW-ResNet18 (cnf ADD, IFNode soft reset, Sigmoid(4)), multi-step, with the
    CIFAR stem: conv3x3 stride 1 and no max-pool. [B, C, H, W] -> repeated over T -> [B, classes].
    """

    def __init__(self, num_classes: int, in_channels: int, T: int) -> None:
        super().__init__()
        self.T = T
        net = sew_resnet.sew_resnet18(spiking_neuron=neuron.IFNode, cnf="ADD", v_reset=None,
                                      detach_reset=True,
                                      surrogate_function=surrogate.Sigmoid(
                                          alpha=NeuronSettings.alpha))
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
    variant: str = "fused"
    error: str | None = None  # the step failed in warm-up (e.g. torch.compile): not timed


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


def _check_args(args: PerfSettings) -> list[str]:
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if not models:
        raise BenchError("--models: give at least one architecture")
    for m in models:
        if m not in names():
            raise BenchError(f"--models: unknown architecture '{m}'; known: {', '.join(names())}")
    try:
        NeuronSettings(N=args.N)
    except NeuronSettingError as exc:
        raise BenchError(f"--N: {exc.detail}") from None
    try:
        check_T(args.T)
    except ValueError as exc:
        raise BenchError(f"--T: {exc}") from None
    for key in ("batch_size", "image_size", "in_channels", "steps"):
        if getattr(args, key) < 1:
            raise BenchError(f"--{key.replace('_', '-')}: {getattr(args, key)} must be >= 1")
    if args.batch_size == 1:  # wherever a feature map is 1x1, BatchNorm sees one value
        raise BenchError("--batch-size: 1 is too small to time training steps: BatchNorm in "
                         "training mode needs more than one value per channel; use 2 or more")
    if args.warmup < 0:
        raise BenchError(f"--warmup: {args.warmup} must be >= 0")
    from bench.config import MAXIMA

    # the run's stated maxima (README "Limits"), checked before any tensor is allocated
    most = {"batch_size": MAXIMA["batch_size"],
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
    variants(args)
    return list(dict.fromkeys(models))


def variants(args: PerfSettings) -> list[str]:
    """The --variants list; --compile alone means "compiled", nothing means "fused"."""
    spec = getattr(args, "variants", None) or ("compiled" if args.compile else "fused")
    out = list(dict.fromkeys(v.strip() for v in spec.split(",") if v.strip()))
    bad = [v for v in out if v not in VARIANTS]
    if bad or not out:
        raise BenchError(f"--variants: {','.join(bad) or repr(spec)} is not a comma-separated "
                         f"list of {', '.join(VARIANTS)}")
    return out


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


def _ours(name: str, args: PerfSettings, role: str) -> Entry:
    spiking = is_spiking(name)
    model = build_model(name, num_classes=NUM_CLASSES, in_channels=args.in_channels,
                        T=args.T if spiking else None,
                        neurons=NeuronSettings(N=args.N) if spiking else None)
    contract = contract_of(model)  # T and N as built (a plugin's model need not keep them)
    return Entry(name, role, contract.T, contract.N, _family(name), model)


def _entries(models: list[str], args: PerfSettings) -> list[Entry]:
    entries = [_ours(m, args, "model") for m in models]
    if args.no_baselines:
        return entries
    twins = (ARCHITECTURES.meta(m, "ann") for m in models)  # each model's ANN baseline
    for ann in dict.fromkeys(t for t in twins if t):
        if ann not in models:
            entries.append(_ours(ann, args, "baseline"))
    sj = SpikingJellySEWResNet18(NUM_CLASSES, args.in_channels, T=args.T * args.N)
    entries.append(Entry(SJ_NAME, "baseline", sj.T, 1, "resnet18", sj))
    return entries


def _prepare(entries: list[Entry], args: PerfSettings, device: torch.device) -> list[Entry]:
    """Per variant: copy, move and format the models, set their neurons' backend for the
    variant, compile them, build their steps; add "with probes" twins."""
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    x = torch.randn(args.batch_size, args.in_channels, args.image_size, args.image_size,
                    device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, NUM_CLASSES, (args.batch_size,), device=device)
    out = []
    for variant in variants(args):
        for base in entries:
            e = copy.copy(base)
            e.variant, e.times = variant, []
            e.model = copy.deepcopy(base.model).to(device=device, memory_format=fmt)
            set_backend(e.model, VARIANTS[variant])
            twin = None
            if args.probes and e.role == "model":
                twin = copy.copy(e)
                twin.probe_of, twin.times = e.name, []
                twin.model = _compiled(copy.deepcopy(e.model), variant)
                twin.step = probed_step(twin.model, x, y, bf16=args.bf16)
            e.model = _compiled(e.model, variant)
            e.step = make_step(e.model, x, y, args.bf16)
            out += [e] if twin is None else [e, twin]
    return out


def _compiled(model: nn.Module, variant: str) -> nn.Module:
    return torch.compile(model) if variant == "compiled" else model


def _time(entries: list[Entry], warmup: int, steps: int, device: torch.device) -> None:
    for e in entries:
        try:
            for _ in range(warmup):
                e.step()
        except Exception as exc:  # noqa: BLE001 - e.g. torch.compile of a baseline: report it
            e.error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    timed = [e for e in entries if e.error is None]
    for _ in range(steps):  # round-robin: every entry sees the same machine load
        for e in timed:
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
    """One row per timed model and variant. Ratios pair rounds with the reference of the same
    variant (the ANN, spikingjelly) or the same model's eager variant ("vs eager")."""
    timed = [e for e in entries if e.error is None and e.times]
    plain = [e for e in timed if e.probe_of is None]
    probed = {(e.probe_of, e.variant): e for e in timed if e.probe_of is not None}
    ann = {(e.arch, e.variant): e for e in plain if e.name.startswith("ann_")}
    sj = {e.variant: e for e in plain if e.name == SJ_NAME}
    eager = {e.name: e for e in plain if e.variant == "eager"}
    rows = []
    for e in plain:
        ms = [1e3 * t for t in e.times]
        twin = probed.get((e.name, e.variant))
        rows.append({
            "model": e.name, "variant": e.variant, "role": e.role, "T": e.T, "N": e.N,
            "ms/step": statistics.median(ms), "min ms": min(ms), "max ms": max(ms),
            "vs ANN": _paired_ratio(e, ann.get((e.arch, e.variant))),
            "vs sj SEW-ResNet18": _paired_ratio(e, sj.get(e.variant)),
            "vs eager": _paired_ratio(e, eager.get(e.name)),
            "probes ms/step": 1e3 * statistics.median(twin.times) if twin else float("nan"),
        })
    table = pd.DataFrame(rows).astype({"T": "Int64", "N": "Int64"})  # an ANN's are blank
    if "vs eager" in table and set(table["variant"]) == {"eager"}:
        table = table.drop(columns="vs eager")  # 1.0 everywhere says nothing
    return table.dropna(axis="columns", how="all")  # e.g. no --probes, no baselines


FLOAT_FORMATS = {"ms/step": ".1f", "min ms": ".1f", "max ms": ".1f", "vs ANN": ".3f",
                 "vs sj SEW-ResNet18": ".3f", "vs eager": ".3f", "probes ms/step": ".1f"}


def to_markdown(table: pd.DataFrame) -> str:
    """The table as markdown; a ratio without its reference (no ANN of that family) is blank."""
    formats = tuple(FLOAT_FORMATS.get(c, "") for c in table.columns)
    cells = table.astype(object).where(table.notna(), None)
    return cells.to_markdown(index=False, floatfmt=formats, missingval="")


def run_perf(settings: PerfSettings = PerfSettings()) -> pd.DataFrame:
    """The timing table (a notebook's `bench perf`); BenchError (one line) for a bad setting."""
    args = _resolved(settings)
    return _table(_timed_entries(args, _check_args(args)))


def _resolved(args: PerfSettings) -> PerfSettings:
    """T and N not given: the run config's defaults (declared in bench.neurons.settings)."""
    return dataclasses.replace(args, T=DEFAULT_T if args.T is None else args.T,
                               N=NeuronSettings.N if args.N is None else args.N)


def _timed_entries(args: PerfSettings, models: list[str]) -> list[Entry]:
    """`models` timed under `args`, resolved and checked by the caller."""
    device = _device(args.device)
    entries = _prepare(_entries(models, args), args, device)
    _time(entries, args.warmup, args.steps, device)
    return entries


def main_perf(args: PerfSettings) -> int:
    args = _resolved(args)
    models = _check_args(args)  # every one-line error before any warning
    device = _device(args.device)
    if args.steps < MIN_STEPS:
        print(f"bench perf: warning: {args.steps} timed steps (< {MIN_STEPS}): the medians and "
              f"ratios are noise-dominated; use --steps {MIN_STEPS} or more", file=sys.stderr)
    entries = _timed_entries(args, models)
    for e in entries:
        if e.error is not None:
            print(f"bench perf: warning: {e.name} ({e.variant}) not timed: {e.error}",
                  file=sys.stderr)
    table = _table(entries)
    print(f"bench perf: {device.type}, {torch.get_num_threads()} threads, batch {args.batch_size}, "
          f"{args.in_channels}x{args.image_size}x{args.image_size}, {args.warmup} warm-up + "
          f"{args.steps} timed steps, channels_last={args.channels_last}, bf16={args.bf16}, "
          f"variants={','.join(variants(args))}, torch {torch.__version__}")
    print("ms/step: median (min, max) of one training step; ratios: median over rounds of this "
          "row's step time / the reference's (lower is faster; < 1 beats the reference)")
    print(to_markdown(table))
    at_target_shape = (args.image_size, args.in_channels) == (32, 3)
    if at_target_shape and (device.type == "cuda" or args.batch_size == 32):
        for line in target_checks(table):  # the targets are stated at these settings
            print(line)
    return 0


def target_checks(table: pd.DataFrame) -> list[str]:
    """The issue's speed targets, for Sparse-ResNet18 at [T=1, N=4] (32x32x3; batch 32 on the
    CPU, any batch on CUDA), one pair of lines per variant."""
    rows = table[(table["model"] == "sparse_resnet18") & (table["T"] == 1) & (table["N"] == 4)]
    lines = []
    for _, row in rows.iterrows():
        name = "sparse_resnet18 [T=1,N=4]" + (f" {row['variant']}" if "variant" in row else "")
        if pd.notna(row.get("vs ANN")):
            ok = "met" if row["vs ANN"] <= 1.15 else "missed"
            lines.append(f"target {name} <= 1.15x ann_resnet18: {row['vs ANN']:.2f}x ({ok})")
        if pd.notna(row.get("vs sj SEW-ResNet18")):
            speedup = 1.0 / row["vs sj SEW-ResNet18"]
            ok = "met" if speedup >= 3.5 else "missed"
            lines.append(f"target {name} >= 3.5x faster than spikingjelly SEW-ResNet18 "
                         f"[T=4,N=1]: {speedup:.2f}x ({ok})")
    return lines
