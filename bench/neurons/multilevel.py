"""The multi-level integrate-and-fire neuron (docs/method.md, "Neuron").

Per timestep:  v <- v + I;  z = clamp(floor(N v / theta), 0, N);  v <- v - z theta / N;  y = z / N
(output_scale "unit"), or y = z theta / N ("threshold", the authors' lab code). z is the integer
spike count: z = y * spike_scale. N=1 is spikingjelly's IFNode
with soft reset. Follows spikingjelly's charge / fire / reset contract (SimpleBaseNode), so
functional.reset_net, monitors and step modes work unchanged.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import replace
from typing import Any

import torch
from spikingjelly.activation_based.neuron import SimpleBaseNode
from torch import nn

from bench.neurons import fused
from bench.neurons.estimators import Estimator, build_estimator
from bench.neurons.quantize import Quantize
from bench.neurons.settings import BACKENDS, NEURONS, NeuronSettingError, NeuronSettings

# the timestep's dynamics: a subclass overriding any of them never takes the fused kernels
DYNAMICS = ("neuronal_charge", "neuronal_fire", "neuronal_reset", "single_step_forward")


@NEURONS.register("if")
class MultiLevelIF(SimpleBaseNode):
    """Multi-level IF neuron emitting z in {0..N} spikes per timestep, as y = z/N.

    settings: a NeuronSettings (default NeuronSettings()); keyword fields override it, e.g.
    MultiLevelIF(N=1) is spikingjelly's IFNode with soft reset. `estimator` may also be an
    Estimator instance. backend ("auto", "torch", "inductor"): how a timestep runs
    (bench/neurons/fused.py; the results are the same). grid_tolerance: added to N v / theta
    before flooring; barrier neurons, whose input is a sum of spike values z/N, set it to 1e-3 so
    the float error of z/N (inexact unless N is a power of two) never loses a spike. A subclass
    may override charge, fire or reset (an LIF's leak): it then always runs them eagerly.
    """

    def __init__(self, settings: NeuronSettings | None = None, *, detach_reset: bool = True,
                 grid_tolerance: float = 0.0, step_mode: str = "m", **fields: Any) -> None:
        estimator = fields.get("estimator")
        if isinstance(estimator, Estimator):  # an instance: the settings keep its name
            fields["estimator"] = estimator.name
        settings = replace(settings or NeuronSettings(), **fields)  # checks every field
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
        self.backend = settings.backend  # becomes "torch" if its fused kernel fails
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
        y = Quantize.apply(s, self.N, self.estimator, self.grid_tolerance)
        return y if self.output_scale == "unit" else y * self.v_threshold

    def neuronal_reset(self, spike: torch.Tensor) -> None:
        y = spike.detach() if self.detach_reset else spike
        # z theta / N: y theta with y = z / N, y itself with y = z theta / N
        self.v = self.v - (y * self.v_threshold if self.output_scale == "unit" else y)

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
        """Integer spike counts z = y * spike_scale (rounded: z/N is inexact for most N)."""
        return torch.round(y * self.spike_scale)

    def extra_repr(self) -> str:
        return (f"N={self.N}, threshold={float(torch.as_tensor(self.v_threshold).detach()):g}, "
                f"estimator={self.estimator!r}, rounding={self.rounding}, "
                f"learnable_threshold={self.learnable_threshold}, output_scale={self.output_scale}, "
                f"step_mode={self.step_mode}, "
                f"backend={self.backend}")


@functools.cache
def _stock_dynamics(cls: type) -> bool:
    """Whether cls runs MultiLevelIF's own timestep (the one the fused kernels compute)."""
    return all(getattr(cls, name) is getattr(MultiLevelIF, name) for name in DYNAMICS)


def set_backend(model: nn.Module, backend: str) -> None:
    """Set `backend` ("auto", "torch", "inductor") on every MultiLevelIF of `model`."""
    if backend not in BACKENDS:
        raise NeuronSettingError("backend", f"{backend!r} is not one of {', '.join(BACKENDS)}")
    for m in model.modules():
        if isinstance(m, MultiLevelIF):
            m.backend = backend


