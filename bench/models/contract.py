"""The model-to-probe contract: what probes and energy counting read off a model, declared once.

An architecture's model declares, in two methods:

    probe_points() -> {name: (module, ProbePoint)}  every neuron, and any other module whose
                      output [T, B, ...] holds spikes (a residual sum), in depth order
    analog_inputs() -> [module, ...]  the synaptic layers fed analog values, not spikes (an
                      SNN's first conv: multiply-accumulates instead of accumulates)

`build_model` checks the declaration (a spiking neuron that is not a probe point, or a declared
module the model does not hold, is an error naming the module) and attaches it, with the
model's spiking, T, N and spike grid, as one `Contract`. Probes and energy counting read it
through one accessor, `contract_of(model)`; nothing else is read off the modules.

A network not built by `build_model` (spikingjelly's own, one written by hand for
`bench.energy.estimate`) is declared with `declare(net, N=..., analog_inputs=[...])`, or not at
all: its neurons then declare themselves by type (a MultiLevelIF by its settings; spikingjelly's
own neuron classes emit binary spikes) and any other neuron class is an error naming the module.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Iterable, Mapping

from spikingjelly.activation_based.neuron import BaseNode, SimpleBaseNode
from torch import nn

from bench.errors import BenchError
from bench.neurons import MultiLevelIF, NeuronSettings

KINDS = ("neuron", "barrier", "sum")  # an ordinary neuron, a barrier neuron, a residual sum
ATTR = "bench_contract"  # the model attribute holding its Contract
PLUGINS_DOC = 'README, "Plugins"'


class ContractError(BenchError, ValueError):
    """A missing or wrong declaration; the message names the module."""


@dataclass(frozen=True)
class ProbePoint:
    """What a module's output y [T, B, ...] holds: spike counts z = round(y * spike_scale), up to
    N per timestep from one neuron (a residual sum of two carries up to 2N)."""

    kind: str
    N: int
    spike_scale: float

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ContractError(f"ProbePoint kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if isinstance(self.N, bool) or not isinstance(self.N, int) or self.N < 1:
            raise ContractError(f"ProbePoint N {self.N!r} must be an integer >= 1")
        if isinstance(self.spike_scale, bool) or not isinstance(self.spike_scale, (int, float)) \
                or not math.isfinite(self.spike_scale) or not self.spike_scale > 0:
            raise ContractError(f"ProbePoint spike_scale {self.spike_scale!r} must be a finite "
                                "number > 0")

    @classmethod
    def of(cls, kind: str, neurons: NeuronSettings) -> "ProbePoint":
        """The point of a module on the spike grid of neurons built from `neurons`."""
        return cls(kind, neurons.N, float(neurons.spike_scale))


@dataclass(frozen=True)
class Contract:
    """A model's declaration: spiking, T, N and the spike grid of its synaptic layers' inputs
    (None for an ANN), its probe points in depth order, its analog-input layers."""

    spiking: bool
    T: int | None
    N: int | None
    spike_scale: float | None
    # tuples, not dicts: a deep copy of the model (copy.deepcopy) copies the modules with it
    point_list: tuple[tuple[str, nn.Module, ProbePoint], ...] = ()
    analog_inputs: tuple[nn.Module, ...] = ()

    @property
    def points(self) -> "OrderedDict[str, tuple[nn.Module, ProbePoint]]":
        """probe name -> (module, point), in depth order."""
        return OrderedDict((name, (m, p)) for name, m, p in self.point_list)

    def point(self, module: nn.Module, name: str = "") -> ProbePoint:
        """The point declared for `module` (ContractError naming it if there is none)."""
        for _, m, p in self.point_list:
            if m is module:
                return p
        raise ContractError(f"module '{name or type(module).__name__}' "
                            f"({type(module).__name__}) is not a declared probe point; its spike "
                            f"levels are unknown ({PLUGINS_DOC})")

    def is_analog(self, module: nn.Module) -> bool:
        return any(m is module for m in self.analog_inputs)


def is_neuron(module: nn.Module) -> bool:
    return isinstance(module, (SimpleBaseNode, BaseNode))


def unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "_orig_mod", model)  # a torch.compile'd model keeps its modules there


def contract_of(model: nn.Module) -> Contract:
    """The model's Contract: the one `build_model` or `declare` attached, else the one its
    neurons declare by type (ContractError naming a neuron whose levels are unknown)."""
    model = unwrap(model)
    found = model.__dict__.get(ATTR)
    return found if found is not None else _by_type(model)


def declare(model: nn.Module, *, N: int | None, T: int | None = None,
            spike_scale: float | None = None,
            points: Mapping[str, tuple[nn.Module, ProbePoint]] | None = None,
            analog_inputs: Iterable[nn.Module] = ()) -> Contract:
    """Attach a Contract to `model` (returned). N: spike levels, None for an ANN. spike_scale:
    spike count per unit of the synaptic layers' spike inputs (default N). points: every neuron
    of a spiking model must be one (default: the neurons, declared by type)."""
    model = unwrap(model)
    paths = {m: n for n, m in model.named_modules()}
    analog = tuple(analog_inputs)
    for m in analog:
        _path(paths, m, "analog input")
    if N is None:
        contract = Contract(False, T, None, None, (), analog)
    else:
        listed = _typed(model) if points is None else _checked(model, paths, points)
        scale = float(N) if spike_scale is None else float(spike_scale)
        ProbePoint("neuron", N, scale)  # checks N and the scale
        contract = Contract(True, T, N, scale, listed, analog)
    setattr(model, ATTR, contract)
    return contract


def _path(paths: dict[nn.Module, str], module: object, what: str) -> str:
    if not isinstance(module, nn.Module) or module not in paths:
        raise ContractError(f"declared {what} {type(module).__name__} is not a module of the "
                            "model")
    return paths[module]


def _checked(model: nn.Module, paths: dict[nn.Module, str],
             points: Mapping[str, tuple[nn.Module, ProbePoint]]) -> tuple:
    listed = []
    for name, entry in points.items():
        module, point = entry if isinstance(entry, tuple) and len(entry) == 2 else (entry, None)
        path = _path(paths, module, f"probe point '{name}'")
        if not isinstance(point, ProbePoint):
            raise ContractError(f"probe point '{name}' ({path}): declare it as (module, "
                                f"ProbePoint(kind, N, spike_scale)), got {type(point).__name__}")
        listed.append((name, module, point))
    declared = {id(m) for _, m, _ in listed}
    for path, m in model.named_modules():
        if is_neuron(m) and id(m) not in declared:
            raise ContractError(f"neuron '{path}' ({type(m).__name__}) is not a declared probe "
                                f"point: list it in probe_points() ({PLUGINS_DOC})")
    return tuple(listed)


def _by_type(model: nn.Module) -> Contract:
    """A network without a declaration: its neurons declare themselves by type."""
    listed = _typed(model)
    if not listed:
        return Contract(False, None, None, None)
    scales = {p.spike_scale for _, _, p in listed}
    if len(scales) > 1:
        raise ContractError(f"{type(model).__name__}: its neurons emit on different spike grids "
                            f"({sorted(scales)}); declare the inputs' spike_scale with "
                            "bench.models.declare")
    return Contract(True, None, max(p.N for _, _, p in listed), scales.pop(), listed)


def _typed(model: nn.Module) -> tuple[tuple[str, nn.Module, ProbePoint], ...]:
    """Every neuron of the model as a probe point named by its path, its levels by its type."""
    listed = []
    for path, m in model.named_modules():
        if not is_neuron(m):
            continue
        if isinstance(m, MultiLevelIF):  # its settings say its levels and output scale
            listed.append((path, m, ProbePoint("neuron", m.N, float(m.spike_scale))))
        elif type(m).__module__.startswith("spikingjelly."):  # spikingjelly's: binary spikes
            listed.append((path, m, ProbePoint("neuron", 1, 1.0)))
        else:
            raise ContractError(f"neuron '{path}' ({type(m).__name__}) declares no spike levels: "
                                "build the model with bench.models.build_model, or declare it "
                                f"with bench.models.declare ({PLUGINS_DOC})")
    return tuple(listed)
