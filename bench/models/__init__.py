"""The architecture zoo. Importing this package registers every model.

    net = build_model("sparse_resnet18", num_classes=10, T=1, neurons=NeuronSettings(N=4))
    probe_points(net)   # OrderedDict name -> (module, ProbePoint): outputs [T, B, ...] probed
    contract_of(net)    # everything probes and energy counting read off the model
    layer_groups(net)   # OrderedDict group -> module, for per-block gradient norms
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from bench.models import resnet, vgg  # noqa: F401  (registers the models)
from bench.models.contract import (Contract, ContractError, ProbePoint, contract_of, declare,
                                   unwrap)
from bench.models.layers import ResidualSum
from bench.models.registry import ARCHITECTURES, build_model, is_spiking, names
from bench.neurons.settings import DEFAULT_T, MAX_T, check_T


def probe_points(model: nn.Module) -> "OrderedDict[str, tuple[nn.Module, ProbePoint]]":
    """Every neuron and residual-block exit, in depth order, with what its output holds: the
    probed tensor is the module's forward output [T, B, ...], z = round(y * spike_scale). ANN
    models have none."""
    return contract_of(model).points


def layer_groups(model: nn.Module) -> "OrderedDict[str, nn.Module]":
    """Parameter groups for gradient norms: ResNet stem, block0.., head; VGG stage0..,
    classifier. Every parameter is in exactly one group."""
    model = unwrap(model)
    if hasattr(model, "layer_groups"):
        return model.layer_groups()
    # a plugin's architecture without its own groups: its top-level children with parameters
    return OrderedDict((n, m) for n, m in model.named_children()
                       if any(True for _ in m.parameters()))


__all__ = ["ARCHITECTURES", "Contract", "ContractError", "DEFAULT_T", "MAX_T", "ProbePoint",
           "ResidualSum", "build_model", "check_T", "contract_of", "declare", "is_spiking",
           "layer_groups", "names", "probe_points"]
