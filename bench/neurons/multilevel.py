"""The multi-level integrate-and-fire neuron (docs/method.md, "Neuron").

Per timestep:  v <- v + I;  z = clamp(floor(N v / theta), 0, N);  v <- v - z theta / N;  y = z / N
(output_scale "unit"), or y = z theta / N ("threshold", the authors' lab code). z is the integer
spike count: z = y * spike_scale. N=1 is spikingjelly's IFNode
with soft reset. Follows spikingjelly's charge / fire / reset contract (SimpleBaseNode), so
functional.reset_net, monitors and step modes work unchanged.
"""

from __future__ import annotations

import os
import types
import warnings

import torch
from spikingjelly.activation_based.neuron import SimpleBaseNode

from dataclasses import replace
from typing import Any

from bench.neurons.estimators import Estimator, build_estimator
from bench.neurons.settings import NEURONS, NeuronSettings


class _Quantize(torch.autograd.Function):
    """y = clamp(floor(s + tol), 0, N) / N forward; dy/ds = g(s) / N backward."""

    @staticmethod
    def forward(ctx, s: torch.Tensor, levels: int, estimator: Estimator, tol: float):
        ctx.save_for_backward(s)
        ctx.levels, ctx.estimator = levels, estimator
        return _quantize(s, levels, tol)

    @staticmethod
    def backward(ctx, grad_y: torch.Tensor):
        (s,) = ctx.saved_tensors
        return _quantize_grad(grad_y, s, ctx.levels, ctx.estimator), None, None, None


# The quantizer's float32 arithmetic, shared by the eager path and the fused kernels (bottom).
def _quantize(s: torch.Tensor, levels: int, tol: float) -> torch.Tensor:
    z = torch.floor(s + tol) if tol else torch.floor(s)
    return z.clamp_(0, levels).mul_(1.0 / levels)


def _quantize_grad(grad_y: torch.Tensor, s: torch.Tensor, levels: int,
                   estimator: Estimator) -> torch.Tensor:
    g = estimator.derivative(s, levels)
    # not in place on g: a custom estimator may return a cached or expanded tensor
    return grad_y.mul(g).mul_(1.0 / levels)


@NEURONS.register("if")
class MultiLevelIF(SimpleBaseNode):
    """Multi-level IF neuron emitting z in {0..N} spikes per timestep, as y = z/N.

    settings: a NeuronSettings (default NeuronSettings()); keyword fields override it, e.g.
    MultiLevelIF(N=1) is spikingjelly's IFNode with soft reset. `estimator` may also be an
    Estimator instance. grid_tolerance: added to N v / theta before flooring; barrier neurons,
    whose input is a sum of spike values z/N, set it to 1e-3 so the float error of z/N (inexact
    unless N is a power of two) never loses a spike. A subclass may override charge, fire or
    reset (an LIF's leak): it then always runs them eagerly.
    """

    def __init__(self, settings: NeuronSettings | None = None, *, detach_reset: bool = True,
                 grid_tolerance: float = 0.0, step_mode: str = "m", **fields: Any) -> None:
        estimator = fields.get("estimator")
        if isinstance(estimator, Estimator):  # an instance: the settings keep its name
            fields["estimator"] = estimator.name
        settings = replace(settings or NeuronSettings(), **fields)
        if not isinstance(estimator, Estimator):
            estimator = build_estimator(settings.estimator, alpha=settings.alpha)
        super().__init__(v_threshold=float(settings.threshold), v_reset=None,
                         surrogate_function=None, detach_reset=detach_reset, step_mode=step_mode)
        self.settings = settings
        self.N = settings.N
        self.estimator = estimator
        self.rounding = settings.rounding
        self.output_scale = settings.output_scale
        self.grid_tolerance = float(grid_tolerance) + (0.5 if settings.rounding == "round" else 0.0)
        self.learnable_threshold = settings.learnable_threshold
        if settings.learnable_threshold:
            # replaces the float attribute with a per-layer parameter
            del self.v_threshold
            self.v_threshold = torch.nn.Parameter(torch.tensor(float(settings.threshold)))

    @property
    def spike_scale(self) -> float:
        """z per unit of output: N for y = z/N, N / theta for y = z theta / N."""
        return self.settings.spike_scale

    # charge / fire / reset (spikingjelly contract)
    def neuronal_charge(self, x: torch.Tensor) -> None:
        # state and spikes stay float32 under autocast: in bf16/fp16, z/N and the barrier's sum
        # of two such values lose whole spikes (no-op for float32 input)
        x = x.float()
        # from rest the state is the float 0.0: skip an add (T=1 is the hot path)
        self.v = x if isinstance(self.v, float) and self.v == 0.0 else self.v + x

    def neuronal_fire(self) -> torch.Tensor:
        s = self.v * (self.N / self.v_threshold)
        y = _Quantize.apply(s, self.N, self.estimator, self.grid_tolerance)
        return y if self.output_scale == "unit" else y * self.v_threshold

    def neuronal_reset(self, spike: torch.Tensor) -> None:
        y = spike.detach() if self.detach_reset else spike
        # z theta / N: y theta with y = z / N, y itself with y = z theta / N
        self.v = self.v - (y * self.v_threshold if self.output_scale == "unit" else y)

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()  # as neuronal_charge does (a no-op for float32): autocast runs fuse too
        if not _fusable(self, x):
            return super().single_step_forward(x)  # charge, fire, reset
        y, self.v = _FusedStep.apply(x, None if isinstance(self.v, float) else self.v, self)
        return y

    def multi_step_forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        # x_seq: [T, B, ...] -> [T, B, ...]
        if x_seq.shape[0] == 1:  # squeeze, not x_seq[0]: select's backward zero-fills a copy
            return self.single_step_forward(x_seq.squeeze(0)).unsqueeze(0)
        return torch.stack([self.single_step_forward(x) for x in x_seq])

    def spike_count(self, y: torch.Tensor) -> torch.Tensor:
        """Integer spike counts z = y * spike_scale (rounded: z/N is inexact for most N)."""
        return torch.round(y * self.spike_scale)

    def extra_repr(self) -> str:
        return (f"N={self.N}, threshold={float(torch.as_tensor(self.v_threshold).detach()):g}, "
                f"estimator={self.estimator!r}, rounding={self.rounding}, "
                f"learnable_threshold={self.learnable_threshold}, output_scale={self.output_scale}, "
                f"step_mode={self.step_mode}")


# ---------------------------------------------------------------------------------------------
# Fused CPU kernels: speed only, bit-identical results.
#
# Eager, one timestep is ~6 elementwise passes over memory forward (scale, floor, clamp, 1/N,
# reset) and ~5N+4 backward with the sigmoid estimator; ReLU is one each way, so on a CPU the
# eager neurons make a Sparse-ResNet18 step ~1.4x an ANN's. For large float32 CPU tensors the
# same float32 operations, in the same order (the functions below call the eager ones), run as
# one inductor C++ kernel per direction. Inductor compiles with -ffp-contract=off (no FMA
# contraction) and its vectorized exp is ATen's (Sleef), so the results are bit-identical --
# except that ATen finishes each thread's chunk with a scalar loop whose exp may differ in the
# last bit: sizes where that happens keep the eager backward (_aten_vector_only).
# BENCH_FUSED_NEURONS: auto (default), on (any size), off. "auto" fuses image-sized layers only
# (>= FUSED_MIN_NUMEL values per call and >= FUSED_MIN_PER_SAMPLE per sample: every CIFAR and
# DVS ResNet layer at batch 32), never the 8x8 digits models, whose short runs (and the test
# suite) would not pay back the compile time (~2-5 s per kernel, cached on disk afterwards).
#
# CUDA tensors take the same functions, compiled by inductor to one Triton kernel per direction
# (same mode and sizes). With FMA contraction off (CUDA_OPTIONS) the forward -- floor, clamp and
# multiplications -- is bit-identical; the backward is bit-identical for the straight-through
# estimators and within 1e-5 relative for the sigmoid, whose exp/division Triton approximates
# (tests/test_gpu.py checks both). Unlike the CPU, every size fuses its backward.

FUSED_MIN_NUMEL = 1 << 18
FUSED_MIN_PER_SAMPLE = 1 << 13
_FUSED_MODES = ("auto", "on", "off")
_fused = {"mode": "auto", "compiled": {}}  # compiled: one kernel per function and constant set
FUSED_DEVICES = ("cpu", "cuda")
CUDA_OPTIONS = {"emulate_precision_casts": True}  # inductor: no FMA contraction in Triton


def set_fused_kernels(mode: str) -> str:
    """'auto', 'on' or 'off' for every MultiLevelIF in this process; returns the previous mode."""
    if mode not in _FUSED_MODES:
        raise ValueError(f"fused kernel mode must be one of {', '.join(_FUSED_MODES)}, "
                         f"got {mode!r}")
    previous, _fused["mode"] = _fused["mode"], mode
    return previous


def fused_kernel_mode() -> str:
    return _fused["mode"]


def _mode_from_env() -> str:
    mode = os.environ.get("BENCH_FUSED_NEURONS", "auto")
    if mode not in _FUSED_MODES:
        warnings.warn(f"BENCH_FUSED_NEURONS={mode!r} is not one of {', '.join(_FUSED_MODES)}; "
                      "using 'auto'")
        return "auto"
    return mode


def _fusable(sn: MultiLevelIF, x: torch.Tensor) -> bool:
    mode = _fused["mode"]
    if mode == "off" or torch.compiler.is_compiling():  # a compiled model fuses the eager path
        return False
    fusable_estimator = getattr(sn.estimator, "fusable", False)
    if sn.output_scale != "unit":
        return False
    if not (sn.detach_reset and isinstance(sn.v_threshold, float) and fusable_estimator):
        return False  # an attached reset or a learnable threshold: the eager graph
    if x.dtype != torch.float32 or x.device.type not in FUSED_DEVICES or x.numel() < 64 \
            or not _dense(x):
        return False
    v = sn.v
    if isinstance(v, float):
        if v != 0.0:
            return False
    elif v.dtype != torch.float32 or v.shape != x.shape or v.stride() != x.stride():
        return False
    n = x.numel()
    return mode == "on" or (n >= FUSED_MIN_NUMEL and n >= FUSED_MIN_PER_SAMPLE * x.shape[0])


def _dense(t: torch.Tensor) -> bool:
    channels_last = t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last)
    return t.is_contiguous() or channels_last


def _flat(t: torch.Tensor) -> torch.Tensor:
    """The elements of a dense tensor in memory order, [numel] (a view)."""
    return t.as_strided((t.numel(),), (1,), t.storage_offset())


def _aten_vector_only(numel: int) -> bool:
    """Whether ATen's elementwise loop handles every element in vector code: it splits numel
    into ceil(numel / chunk) thread chunks (grain 32768) and ends each with a scalar loop over
    the last chunk % (2 x vector width) elements (<= 32 floats with AVX-512)."""
    threads = max(1, min(torch.get_num_threads(), -(-numel // 32768)))
    chunk = -(-numel // threads)
    return numel % 64 == 0 and chunk % 64 == 0


def _fire_reset(x, v, c: float, levels: int, tol: float, theta: float):
    """charge, fire, reset of one timestep, [n] -> (y, v after reset); v None: from rest."""
    pot = x if v is None else v + x
    y = _quantize(pot * c, levels, tol)
    return y, pot - y * theta


def _potential_grad(x, v, grad_y, c: float, levels: int, estimator: Estimator):
    """dL/d(potential) through the spike only (s = potential * c, c = N / theta)."""
    pot = x if v is None else v + x
    return _quantize_grad(grad_y, pot * c, levels, estimator) * c


def _run(fn, tensors: tuple, consts: tuple, compiled: bool = True) -> torch.Tensor:
    """fn(*tensors, *consts) as one compiled kernel of any length, else eagerly."""
    if compiled and _fused["mode"] != "off":
        try:
            device = next(t for t in tensors if t is not None).device.type
            key = (fn.__name__, device, tuple(t is None for t in tensors), _const_key(consts))
            kernel = _fused["compiled"].get(key)
            if kernel is None:
                options = CUDA_OPTIONS if device == "cuda" else None
                kernel = torch.compile(_code_copy(fn, len(_fused["compiled"])), options=options)
                _fused["compiled"][key] = kernel
            for t in tensors:
                if t is not None:
                    torch._dynamo.mark_dynamic(t, 0)
            return kernel(*tensors, *consts)
        except Exception as exc:  # no C++ compiler, unsupported platform: stay eager
            warnings.warn(f"MultiLevelIF: fused kernels disabled ({type(exc).__name__}: {exc})")
            _fused["mode"] = "off"
    return fn(*tensors, *consts)


def _const_key(consts: tuple) -> tuple:
    # estimators compare by class and settings (every layer's own instance shares a kernel)
    return tuple((type(c), tuple(sorted(vars(c).items()))) if isinstance(c, Estimator) else c
                 for c in consts)


def _code_copy(fn, tag: int):
    """fn with a code object of its own. torch.compile caches per code object and turns a
    constant that changes between calls into a symbolic one; one copy per constant set keeps
    every constant a literal (rounded to float32 as eager rounds it), only the length dynamic."""
    code = fn.__code__.replace(co_name=f"{fn.__name__}_{tag}", co_qualname=f"{fn.__name__}_{tag}")
    return types.FunctionType(code, fn.__globals__, code.co_name, fn.__defaults__, fn.__closure__)


class _FusedStep(torch.autograd.Function):
    """One timestep (charge, fire, detached soft reset) on dense float32 CPU or CUDA tensors.

    Autograd sees what the eager path builds: dL/dx = dL/dv_prev = dL/dy * dy/dpot + dL/dv_next.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, v: torch.Tensor | None, sn: MultiLevelIF):
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(x, v)
        ctx.consts = (sn.N / sn.v_threshold, sn.N)
        ctx.estimator = sn.estimator
        y, v_next = _run(_fire_reset, (_flat(x), None if v is None else _flat(v)),
                         (*ctx.consts, sn.grid_tolerance, sn.v_threshold))
        return y.as_strided(x.shape, x.stride()), v_next.as_strided(x.shape, x.stride())

    @staticmethod
    def backward(ctx, grad_y: torch.Tensor | None, grad_next: torch.Tensor | None):
        x, v = ctx.saved_tensors
        grad = None
        if grad_y is not None:
            fuse = grad_y.dtype == torch.float32 and (x.device.type == "cuda"
                                                      or _aten_vector_only(x.numel()))
            flat = _run(_potential_grad, (_flat(x), None if v is None else _flat(v),
                                          _flat(_like(grad_y, x))), (*ctx.consts, ctx.estimator),
                        compiled=fuse)
            grad = flat.as_strided(x.shape, x.stride())
        if grad_next is not None:
            grad = grad_next if grad is None else grad + grad_next
        return grad, (None if v is None else grad), None


def _like(t: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """t in ref's memory layout (a gradient may arrive expanded or in another layout)."""
    if t.stride() == ref.stride() and _dense(t):
        return t
    return t.contiguous(memory_format=torch.contiguous_format if ref.is_contiguous()
                        else torch.channels_last)


_fused["mode"] = _mode_from_env()
