"""The multi-level integrate-and-fire neuron (paper.md, "Neuron (OURS)").

Per timestep:  v <- v + I;  z = clamp(floor(N v / theta), 0, N);  v <- v - z theta / N;  y = z / N.
The module outputs y in [0, 1]; z = N * y is the integer spike count. N=1 is spikingjelly's IFNode
with soft reset. Follows spikingjelly's charge / fire / reset contract (SimpleBaseNode), so
functional.reset_net, monitors and step modes work unchanged.
"""

from __future__ import annotations

import functools
import warnings

import torch
from spikingjelly.activation_based.neuron import SimpleBaseNode
from torch import nn

from bench.neurons import fused
from bench.neurons.estimators import Estimator, build_estimator
from bench.neurons.quantize import Quantize

# the timestep's dynamics: a subclass overriding any of them never takes the fused kernels
DYNAMICS = ("neuronal_charge", "neuronal_fire", "neuronal_reset", "single_step_forward")


class MultiLevelIF(SimpleBaseNode):
    """Multi-level IF neuron emitting y = z/N, z in {0..N}, per timestep.

    levels: N (1 = binary). threshold: theta (float, or learnable per layer). estimator: a
    registered name ("sigmoid", "ste", "ste_clipped") or an Estimator. rounding: "floor" or
    "round" (round-to-nearest = floor(s + 1/2)). grid_tolerance: added to N v / theta before
    flooring; barrier neurons, whose input is a sum of spike values z/N, set it to 1e-3 so the
    float error of z/N (inexact unless N is a power of two) never loses a spike. backend: "auto",
    "torch" or "inductor", how a timestep runs (bench/neurons/fused.py; the results are the same).
    """

    def __init__(
        self,
        levels: int = 1,
        threshold: float = 1.0,
        estimator: str | Estimator = "sigmoid",
        alpha: float = 4.0,
        learnable_threshold: bool = False,
        rounding: str = "floor",
        detach_reset: bool = True,
        grid_tolerance: float = 0.0,
        step_mode: str = "m",
        backend: str = "auto",
    ) -> None:
        if int(levels) < 1:
            raise ValueError(f"levels must be >= 1, got {levels}")
        if rounding not in ("floor", "round"):
            raise ValueError(f"rounding must be 'floor' or 'round', got {rounding!r}")
        if not float(threshold) > 0:
            raise ValueError(f"threshold must be > 0, got {threshold}")
        fused.check_backend(backend)
        if isinstance(estimator, str):
            estimator = build_estimator(estimator, alpha=alpha)
        super().__init__(v_threshold=float(threshold), v_reset=None, surrogate_function=None,
                         detach_reset=detach_reset, step_mode=step_mode)
        self.levels = int(levels)
        self.estimator = estimator
        self.rounding = rounding
        self.grid_tolerance = float(grid_tolerance) + (0.5 if rounding == "round" else 0.0)
        self.learnable_threshold = learnable_threshold
        self.backend = backend
        if learnable_threshold:
            # replaces the float attribute with a per-layer parameter
            del self.v_threshold
            self.v_threshold = torch.nn.Parameter(torch.tensor(float(threshold)))

    # charge / fire / reset (spikingjelly contract)
    def neuronal_charge(self, x: torch.Tensor) -> None:
        # state and spikes stay float32 under autocast: in bf16/fp16, z/N and the barrier's sum
        # of two such values lose whole spikes (no-op for float32 input)
        x = x.float()
        # from rest the state is the float 0.0: skip an add (T=1 is the hot path)
        self.v = x if isinstance(self.v, float) and self.v == 0.0 else self.v + x

    def neuronal_fire(self) -> torch.Tensor:
        s = self.v * (self.levels / self.v_threshold)
        return Quantize.apply(s, self.levels, self.estimator, self.grid_tolerance)

    def neuronal_reset(self, spike: torch.Tensor) -> None:
        y = spike.detach() if self.detach_reset else spike
        self.v = self.v - y * self.v_threshold  # z theta / N with y = z / N

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()  # as neuronal_charge does (a no-op for float32): autocast runs fuse too
        if _stock_dynamics(type(self)) and fused.applies(self, x):
            out = fused.step(x, self)
            if out is not None:  # else the kernel failed: this neuron is eager from now on
                y, self.v = out
                return y
        return super().single_step_forward(x)  # charge, fire, reset

    def kernel_failed(self, shape: tuple[int, ...], error: Exception) -> None:
        """A fused kernel failed on a `shape` input: this neuron runs eagerly from now on (the
        same results), said once; other neurons keep their backend."""
        if self.backend == "torch":
            return  # already said (e.g. by an earlier timestep's backward)
        self.backend = "torch"
        warnings.warn(f"MultiLevelIF({self.extra_repr()}): fused kernel failed on a "
                      f"{list(shape)} input ({error}); this neuron runs backend='torch' from now on")

    def multi_step_forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        # x_seq: [T, B, ...] -> [T, B, ...]
        if x_seq.shape[0] == 1:  # squeeze, not x_seq[0]: select's backward zero-fills a copy
            return self.single_step_forward(x_seq.squeeze(0)).unsqueeze(0)
        return torch.stack([self.single_step_forward(x) for x in x_seq])

    def spike_count(self, y: torch.Tensor) -> torch.Tensor:
        """Integer spike counts z = N * y (rounded: z/N is inexact for most N)."""
        return torch.round(y * self.levels)

    def extra_repr(self) -> str:
        return (f"levels={self.levels}, threshold={float(torch.as_tensor(self.v_threshold).detach()):g}, "
                f"estimator={self.estimator!r}, rounding={self.rounding}, "
                f"learnable_threshold={self.learnable_threshold}, step_mode={self.step_mode}, "
                f"backend={self.backend}")


@functools.cache
def _stock_dynamics(cls: type) -> bool:
    """Whether cls runs MultiLevelIF's own timestep (the one the fused kernels compute)."""
    return all(getattr(cls, name) is getattr(MultiLevelIF, name) for name in DYNAMICS)


def set_backend(model: nn.Module, backend: str) -> None:
    """Set `backend` ("auto", "torch", "inductor") on every MultiLevelIF of `model`."""
    fused.check_backend(backend)
    for m in model.modules():
        if isinstance(m, MultiLevelIF):
            m.backend = backend


