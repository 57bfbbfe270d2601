"""Building blocks shared by the architectures: neuron factory, time-major conv/BN, residual sum.

Tensors flow time-first, [T, B, C, H, W]. Conv, BN and pooling run on the flattened
[T*B, C, H, W] view (a free reshape); neurons see [T, B, ...] and loop over T themselves.
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from bench.neurons import NEURONS, MultiLevelIF, NeuronSettings

BARRIER_GRID_TOLERANCE = 1e-3  # a sum of two z/N values must floor to the exact integer count


def neuron(settings: NeuronSettings | None) -> nn.Module:
    """An ordinary neuron of the registered class `settings.neuron`, or ReLU for an ANN
    (settings None)."""
    if settings is None:
        # not in place: activations are [T, B, ...] views, and an in-place op on a view makes
        # autograd copy slices back (8% slower than torchvision's ResNet18 on CPU)
        return nn.ReLU()
    return NEURONS.get(settings.neuron)(settings, step_mode="m")


def barrier(settings: NeuronSettings) -> MultiLevelIF:
    """Sparse-ResNet's barrier after a residual sum: re-quantizes the sum to the spike grid. A
    plain IF neuron (whatever `settings.neuron` is) with a fixed threshold of one spike grid:
    1 when spikes are z/N, theta when they are z theta/N."""
    grid = 1.0 if settings.output_scale == "unit" else settings.threshold
    own = replace(settings, neuron="if", threshold=grid, estimator=settings.barrier_estimator,
                  learnable_threshold=False, rounding="floor")
    return MultiLevelIF(own, grid_tolerance=BARRIER_GRID_TOLERANCE, step_mode="m")


class ResidualSum(nn.Module):
    """a + b at a residual join; a module so probes can hook the sum (SEW's probe point)."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b


def conv_bn(conv: nn.Module, bn: nn.Module, x: torch.Tensor,
            T: int | None = None) -> torch.Tensor:
    """bn(conv(x)) time-first. x: [T, B, C, H, W] -> [T, B, C', H', W'].

    A static image x [B, C, H, W] stands for T identical frames: conv+BN of the repeat is the
    repeat of conv+BN of one copy (same batch statistics), so compute it once and expand. T:
    the model's timesteps, None for an ANN (one pass: a time axis of one).
    """
    if x.dim() == 4:
        y = bn(conv(x)).unsqueeze(0)  # [1, B, C', H', W']
        return y if T is None else y.expand(T, *y.shape[1:])
    return bn(conv(x.flatten(0, 1))).unflatten(0, x.shape[:2])


def time_major(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A per-image module (pooling) on [T, B, C, H, W], through the flat [T*B, ...] view."""
    return module(x.flatten(0, 1)).unflatten(0, x.shape[:2])


def max_pool_unless_1x1(x: torch.Tensor) -> torch.Tensor:
    """2x2 max-pool of [T, B, C, H, W]; skipped once the map is 1 pixel wide (tiny inputs)."""
    if min(x.shape[-2:]) < 2:
        return x
    return F.max_pool2d(x.flatten(0, 1), 2).unflatten(0, x.shape[:2])


def global_avg_pool(x: torch.Tensor) -> torch.Tensor:
    """[T, B, C, H, W] -> [T, B, C]."""
    return x.mean(dim=(-2, -1))


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


def conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


def init_weights(model: nn.Module) -> None:
    """torchvision / spikingjelly ResNet init: Kaiming-normal convs, unit BN."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
