"""Fused kernels of MultiLevelIF's timestep: speed only, the eager neuron's bits.

Eager, one timestep is ~6 elementwise passes over memory forward (scale, floor, clamp, 1/N,
reset) and ~5N+4 backward with the sigmoid estimator; ReLU is one each way, so on a CPU the
eager neurons make a Sparse-ResNet18 step ~1.4x an ANN's. For large float32 CPU tensors the
same float32 operations, in the same order (the functions below call the quantizer's eager
arithmetic), run as one inductor C++ kernel per direction. Inductor compiles with
-ffp-contract=off (no FMA contraction) and its vectorized exp is ATen's (Sleef), so the results
are bit-identical -- except that ATen finishes each thread's chunk with a scalar loop whose exp
may differ in the last bit: sizes where that happens keep the eager backward (_aten_vector_only).

Each neuron's `backend` chooses: "torch" (the eager charge/fire/reset, always), "inductor"
(fused at any size the kernels handle), "auto" (the default: fused for image-sized layers only,
>= FUSED_MIN_NUMEL values per call and >= FUSED_MIN_PER_SAMPLE per sample: every CIFAR and DVS
ResNet layer at batch 32, never the 8x8 digits models, whose short runs (and the test suite)
would not pay back the compile time, ~2-5 s per kernel, cached on disk afterwards). A kernel
that fails to compile or run (no C++ compiler, an unsupported platform) turns that neuron's
backend to "torch", with one warning; other neurons keep theirs.

CUDA tensors take the same functions, compiled by inductor to one Triton kernel per direction
(same backends and sizes). With FMA contraction off (CUDA_OPTIONS) the forward -- floor, clamp
and multiplications -- is bit-identical; the backward is bit-identical for the straight-through
estimators and within 1e-5 relative for the sigmoid, whose exp/division Triton approximates
(tests/test_gpu.py checks both). Unlike the CPU, every size fuses its backward.
"""

from __future__ import annotations

import itertools
import types
import weakref

import torch
from torch import nn

from bench.neurons.estimators import Estimator
from bench.neurons.quantize import quantize, quantize_grad

FUSED_MIN_NUMEL = 1 << 18
FUSED_MIN_PER_SAMPLE = 1 << 13
FUSED_DEVICES = ("cpu", "cuda")
CUDA_OPTIONS = {"emulate_precision_casts": True}  # inductor: no FMA contraction in Triton

_kernels: dict = {}  # one compiled kernel per function, device and constant set
_tags = itertools.count()


class KernelError(RuntimeError):
    """A fused kernel failed to compile or run."""


def applies(sn: nn.Module, x: torch.Tensor) -> bool:
    """Whether sn's backend and settings, its state and the input x take the fused kernels."""
    if sn.backend == "torch" or torch.compiler.is_compiling():
        return False  # torch.compile of a whole model traces (and fuses) the eager path
    fusable_estimator = getattr(sn.estimator, "fusable", False)
    if sn.output_scale != "unit":
        return False  # the kernels compute y = z / N
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
    image_sized = n >= FUSED_MIN_NUMEL and n >= FUSED_MIN_PER_SAMPLE * x.shape[0]
    return sn.backend == "inductor" or image_sized


def step(x: torch.Tensor, sn: nn.Module) -> tuple[torch.Tensor, torch.Tensor] | None:
    """One timestep of sn on x (applies(sn, x)): (y, v after reset), or None when the kernel
    failed (sn.kernel_failed was told; the caller runs the eager path)."""
    try:
        return _FusedStep.apply(x, None if isinstance(sn.v, float) else sn.v, sn)
    except KernelError as exc:
        sn.kernel_failed(tuple(x.shape), exc)
        return None


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
    y = quantize(pot * c, levels, tol)
    return y, pot - y * theta


def _potential_grad(x, v, grad_y, c: float, levels: int, estimator: Estimator):
    """dL/d(potential) through the spike only (s = potential * c, c = N / theta)."""
    pot = x if v is None else v + x
    return quantize_grad(grad_y, pot * c, levels, estimator) * c


def _compile(fn, device: str):
    return torch.compile(fn, options=CUDA_OPTIONS if device == "cuda" else None)


def _run(fn, tensors: tuple, consts: tuple) -> torch.Tensor:
    """fn(*tensors, *consts) as one compiled kernel of any length; KernelError if that fails."""
    device = next(t for t in tensors if t is not None).device.type
    key = (fn.__name__, device, tuple(t is None for t in tensors), _const_key(consts))
    try:
        kernel = _kernels.get(key)
        if kernel is None:
            kernel = _kernels[key] = _compile(_code_copy(fn, next(_tags)), device)
        for t in tensors:
            if t is not None:
                torch._dynamo.mark_dynamic(t, 0)
        return kernel(*tensors, *consts)
    except Exception as exc:  # no C++ compiler, unsupported platform: the caller goes eager
        _kernels.pop(key, None)  # the next neuron that needs it tries afresh
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise KernelError(f"{type(exc).__name__}: {first_line}") from exc


def _const_key(consts: tuple) -> tuple:
    # estimators compare by class and settings (every layer's own instance shares a kernel)
    return tuple((type(c), tuple(sorted(vars(c).items()))) if isinstance(c, Estimator) else c
                 for c in consts)


def _code_copy(fn, tag: int):
    """fn with a code object of its own. torch.compile caches per code object and turns a
    constant that changes between calls into a symbolic one; one copy per constant set keeps
    every constant a literal (rounded to float32 as eager rounds it), only the length dynamic."""
    name = f"{fn.__name__}_{tag}"
    names = {"co_name": name}
    if hasattr(fn.__code__, "co_qualname"):  # Python >= 3.11
        names["co_qualname"] = name
    code = fn.__code__.replace(**names)
    return types.FunctionType(code, fn.__globals__, name, fn.__defaults__, fn.__closure__)


class _FusedStep(torch.autograd.Function):
    """One timestep (charge, fire, detached soft reset) on dense float32 CPU or CUDA tensors.

    Autograd sees what the eager path builds: dL/dx = dL/dv_prev = dL/dy * dy/dpot + dL/dv_next.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, v: torch.Tensor | None, sn: nn.Module):
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(x, v)
        ctx.consts = (sn.N / sn.v_threshold, sn.N)
        ctx.estimator = sn.estimator
        ctx.neuron = weakref.ref(sn)  # not sn: sn.v holds this graph node
        y, v_next = _run(_fire_reset, (_flat(x), None if v is None else _flat(v)),
                         (*ctx.consts, sn.grid_tolerance, sn.v_threshold))
        return y.as_strided(x.shape, x.stride()), v_next.as_strided(x.shape, x.stride())

    @staticmethod
    def backward(ctx, grad_y: torch.Tensor | None, grad_next: torch.Tensor | None):
        x, v = ctx.saved_tensors
        grad = None
        if grad_y is not None:
            sn = ctx.neuron()
            fuse = (grad_y.dtype == torch.float32
                    and (x.device.type == "cuda" or _aten_vector_only(x.numel()))
                    and (sn is None or sn.backend != "torch"))  # "torch": a kernel failed
            args = (_flat(x), None if v is None else _flat(v), _flat(_like(grad_y, x)))
            flat = None
            if fuse:
                try:
                    flat = _run(_potential_grad, args, (*ctx.consts, ctx.estimator))
                except KernelError as exc:
                    if sn is not None:
                        sn.kernel_failed(tuple(x.shape), exc)
            if flat is None:
                flat = _potential_grad(*args, *ctx.consts, ctx.estimator)
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
