"""Model registry and factory (timm style): `build_model` is the only name -> model path."""

from __future__ import annotations

import warnings
from typing import Callable

from torch import nn

from bench.models.layers import Neurons

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a builder under its function name; a second registration replaces the first."""
    name = fn.__name__
    if name in _BUILDERS:
        warnings.warn(f"model '{name}' registered twice; the later builder replaces the earlier",
                      stacklevel=2)
    _BUILDERS[name] = fn
    return fn


def names() -> list[str]:
    return sorted(_BUILDERS)


def build_model(name: str, *, num_classes: int, in_channels: int = 3, T: int = 1, N: int = 1,
                estimator: str = "sigmoid", barrier_estimator: str = "ste", alpha: float = 4.0,
                threshold: float = 1.0, learnable_threshold: bool = False,
                rounding: str = "floor") -> nn.Module:
    """A registered architecture. T: timesteps, N: spike levels (ANN models ignore both)."""
    if name not in _BUILDERS:
        raise ValueError(f"unknown model '{name}'; known: {', '.join(names())}")
    sizes = {"num_classes": num_classes, "in_channels": in_channels, "T": T, "N": N}
    for key, value in sizes.items():
        if int(value) < 1:
            raise ValueError(f"build_model: {key} must be >= 1, got {value}")
    neurons = Neurons(levels=int(N), threshold=float(threshold), estimator=estimator,
                      barrier_estimator=barrier_estimator, alpha=float(alpha),
                      learnable_threshold=bool(learnable_threshold), rounding=rounding)
    return _BUILDERS[name](num_classes=int(num_classes), in_channels=int(in_channels), T=int(T),
                           neurons=neurons)
