"""Model registry and factory (timm style): `build_model` is the only name -> model path.

An architecture is a builder function registered with its metadata:

    @register_model(spiking=True, label="My-Net", ann="ann_my_net")
    def my_net(*, num_classes, in_channels, T, neurons): ...

spiking: whether it has neurons (an ANN gets T=None, neurons=None). label: its name in report
tables. ann: the registered ANN of the same architecture (energy and accuracy comparisons).
options: extra run-config keys it takes and their allowed values (ResNet's stem and shortcut).
"""

from __future__ import annotations

from typing import Any, Callable

from torch import nn

from bench.neurons.settings import NeuronSettings
from bench.registry import ARCHITECTURES

MAX_T = 256  # timesteps; the run config and `bench perf` check T here too


def check_T(T: object) -> int:
    """T of a spiking architecture: an integer from 1 to MAX_T (ValueError saying so)."""
    if isinstance(T, bool) or not isinstance(T, int) or not 1 <= T <= MAX_T:
        raise ValueError(f"{T!r} must be an integer from 1 to {MAX_T}")
    return T


def register_model(fn: Callable[..., nn.Module] | None = None, *, spiking: bool = True,
                   **meta: Any) -> Any:
    """Register a builder under its function name (bare `@register_model` or with metadata)."""
    register = ARCHITECTURES.register(spiking=spiking, **meta)
    return register(fn) if fn is not None else register


def names() -> list[str]:
    return ARCHITECTURES.names()


def is_spiking(name: str) -> bool:
    return bool(ARCHITECTURES.meta(name, "spiking"))


def build_model(name: str, *, num_classes: int, in_channels: int = 3, T: int | None = 1,
                neurons: NeuronSettings | None = None, **options: Any) -> nn.Module:
    """A registered architecture. T: timesteps; neurons: the spiking neurons' settings (default
    NeuronSettings()). An ANN architecture takes T=None and neurons=None (they do not apply).
    options: the architecture's own keys (see its registry `options`)."""
    builder = ARCHITECTURES.get(name)
    for key, value in (("num_classes", num_classes), ("in_channels", in_channels)):
        if int(value) < 1:
            raise ValueError(f"build_model: {key} must be >= 1, got {value}")
    if is_spiking(name):
        try:
            T = check_T(T)
        except ValueError as exc:
            raise ValueError(f"build_model: {name} is spiking: T {exc}") from None
        neurons = neurons if neurons is not None else NeuronSettings()
    elif neurons is not None or T not in (None, 1):
        raise ValueError(f"build_model: {name} is an ANN: T and neurons do not apply "
                         "(pass T=None, neurons=None)")
    allowed = ARCHITECTURES.meta(name, "options", {})
    for key, value in options.items():
        if key not in allowed or value not in allowed[key]:
            raise ValueError(f"build_model: {name} takes no {key}={value!r} "
                             f"(its options: {allowed or 'none'})")
    return builder(num_classes=int(num_classes), in_channels=int(in_channels),
                   T=None if T is None else int(T), neurons=neurons, **options)
