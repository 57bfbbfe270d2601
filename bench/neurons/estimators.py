"""Gradient estimators for the multi-level quantizer, registered by name.

The quantizer sees the scaled potential s = N * v / theta and outputs y = clamp(floor(s), 0, N) / N.
An estimator returns g(s) with dy/dv := g(s) / theta (so dy/ds = g(s) / N). A new estimator is
one small class with a `derivative` method, decorated with @ESTIMATORS.register("name"); `bench
run --set estimator=name` finds it (from a plugin file too: README, "Plugins").
"""

from __future__ import annotations

import warnings
from typing import Callable

import torch

from bench.neurons.settings import NeuronSettings
from bench.registry import ESTIMATORS


def register(name: str) -> Callable[[type["Estimator"]], type["Estimator"]]:
    """Deprecated spelling of `@ESTIMATORS.register(name)` (the README documented it)."""
    warnings.warn("bench.neurons.register is deprecated: use @bench.neurons.ESTIMATORS.register"
                  "(name)", DeprecationWarning, stacklevel=2)
    return ESTIMATORS.register(name)


def names() -> list[str]:
    return ESTIMATORS.names()


def build_estimator(name: str, **kwargs: float) -> "Estimator":
    return ESTIMATORS.get(name)(**kwargs)


class Estimator:
    name = "base"  # its registered name (ESTIMATORS.register sets it)
    label = ""  # short name in report tables ("SG"); empty: the registered name
    # derivative() is plain elementwise torch ops, safe to trace into MultiLevelIF's fused kernel
    fusable = False

    def __init__(self, **_: float) -> None:
        pass

    def derivative(self, s: torch.Tensor, levels: int) -> torch.Tensor:
        """g(s): theta * dy/dv at the scaled potential s, shape of s."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


@ESTIMATORS.register("sigmoid")
class SigmoidSurrogate(Estimator):
    """Sum over the N thresholds k=1..N of the sigmoid surrogate's derivative at s - k.

    For N=1 this is spikingjelly's surrogate.Sigmoid(alpha) at v - theta (theta=1).
    """

    fusable = True
    label = "SG"

    def __init__(self, alpha: float = NeuronSettings.alpha, **_: float) -> None:
        self.alpha = float(alpha)

    def derivative(self, s: torch.Tensor, levels: int) -> torch.Tensor:
        total = torch.zeros_like(s)
        for k in range(1, levels + 1):
            sg = torch.sigmoid(self.alpha * (s - k))
            total += sg * (1.0 - sg)  # [same shape as s]
        return total.mul_(self.alpha)

    def __repr__(self) -> str:
        return f"SigmoidSurrogate(alpha={self.alpha})"


@ESTIMATORS.register("ste")
class StraightThrough(Estimator):
    """dy/dv = 1/theta everywhere: the quantizer is passed straight through."""

    fusable = True
    label = "STE"

    def derivative(self, s: torch.Tensor, levels: int) -> torch.Tensor:
        return torch.ones_like(s)


@ESTIMATORS.register("ste_clipped")
class ClippedStraightThrough(Estimator):
    """dy/dv = 1/theta for v in [0, theta] (s in [0, N]), zero outside."""

    fusable = True
    label = "STE-clipped"

    def derivative(self, s: torch.Tensor, levels: int) -> torch.Tensor:
        return ((s >= 0) & (s <= levels)).to(s.dtype)
