"""The multi-level quantizer y = clamp(floor(s + tol), 0, N) / N and its estimated gradient.

Its float32 arithmetic is shared by the eager neuron (multilevel.py) and the fused kernels
(fused.py), so both compute the same bits.
"""

from __future__ import annotations

import torch

from bench.neurons.estimators import Estimator


class Quantize(torch.autograd.Function):
    """y = clamp(floor(s + tol), 0, N) / N forward; dy/ds = g(s) / N backward."""

    @staticmethod
    def forward(ctx, s: torch.Tensor, levels: int, estimator: Estimator, tol: float):
        ctx.save_for_backward(s)
        ctx.levels, ctx.estimator = levels, estimator
        return quantize(s, levels, tol)

    @staticmethod
    def backward(ctx, grad_y: torch.Tensor):
        (s,) = ctx.saved_tensors
        return quantize_grad(grad_y, s, ctx.levels, ctx.estimator), None, None, None


def quantize(s: torch.Tensor, levels: int, tol: float) -> torch.Tensor:
    z = torch.floor(s + tol) if tol else torch.floor(s)
    return z.clamp_(0, levels).mul_(1.0 / levels)


def quantize_grad(grad_y: torch.Tensor, s: torch.Tensor, levels: int,
                  estimator: Estimator) -> torch.Tensor:
    g = estimator.derivative(s, levels)
    # not in place on g: a custom estimator may return a cached or expanded tensor
    return grad_y.mul(g).mul_(1.0 / levels)
