"""Model registry and factory (timm style): `build_model` is the only name -> model path.

An architecture is a builder function registered with its metadata:

    @ARCHITECTURES.register("my_net", spiking=True, label="My-Net", ann="ann_my_net")
    def my_net(*, num_classes, in_channels, T, neurons): ...

spiking (required): whether it has neurons (an ANN gets T=None, neurons=None). label: its name
in report tables. ann: the registered ANN of the same architecture (energy and accuracy
comparisons). options: extra run-config keys it takes and their allowed values (ResNet's stem
and shortcut). A spiking architecture's model declares its probe points and analog inputs
(bench.models.contract); `build_model` checks and attaches that declaration.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from bench.models.contract import ContractError, declare
from bench.neurons.settings import DEFAULT_T, NeuronSettings, check_T
from bench.registry import ARCHITECTURES


def names() -> list[str]:
    return ARCHITECTURES.names()


def is_spiking(name: str) -> bool:
    return bool(ARCHITECTURES.meta(name, "spiking"))


def build_model(name: str, *, num_classes: int, in_channels: int = 3, T: int | None = None,
                neurons: NeuronSettings | None = None, **options: Any) -> nn.Module:
    """A registered architecture, carrying its checked Contract (bench.models.contract_of).

    T: timesteps and neurons: the spiking neurons' settings, None for their defaults
    (bench.neurons.settings); an ANN architecture takes neither (None). options: the
    architecture's own keys (see its registry `options`)."""
    builder = ARCHITECTURES.get(name)
    for key, value in (("num_classes", num_classes), ("in_channels", in_channels)):
        if int(value) < 1:
            raise ValueError(f"build_model: {key} must be >= 1, got {value}")
    spiking = is_spiking(name)
    if spiking:
        try:
            T = check_T(DEFAULT_T if T is None else T)
        except ValueError as exc:
            raise ValueError(f"build_model: {name} is spiking: T {exc}") from None
        neurons = neurons if neurons is not None else NeuronSettings()
    elif neurons is not None or T is not None:
        raise ValueError(f"build_model: {name} is an ANN: T and neurons do not apply "
                         "(pass T=None, neurons=None)")
    allowed = ARCHITECTURES.meta(name, "options", {})
    for key, value in options.items():
        if key not in allowed or value not in allowed[key]:
            raise ValueError(f"build_model: {name} takes no {key}={value!r} "
                             f"(its options: {allowed or 'none'})")
    model = builder(num_classes=int(num_classes), in_channels=int(in_channels), T=T,
                    neurons=neurons, **options)
    if not spiking:
        declare(model, N=None)
        return model
    declared = {}
    for method in ("probe_points", "analog_inputs"):
        if not callable(getattr(model, method, None)):
            raise ContractError(f"architecture {name}: its model {type(model).__name__} has no "
                                f"{method}() method (README, \"Plugins\")")
        declared[method] = getattr(model, method)()
    declare(model, N=neurons.N, T=T, spike_scale=neurons.spike_scale,
            points=declared["probe_points"], analog_inputs=declared["analog_inputs"])
    return model
