"""The architecture zoo. Importing this package registers every model.

    net = build_model("sparse_resnet18", num_classes=10, T=1, neurons=NeuronSettings(N=4))
    probe_points(net)   # OrderedDict name -> module whose forward output [T, B, ...] is probed
    layer_groups(net)   # OrderedDict group -> module, for per-block gradient norms
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from bench.models import resnet, vgg  # noqa: F401  (registers the models)
from bench.models.layers import ResidualSum
from bench.neurons import MultiLevelIF
from bench.models.registry import (ARCHITECTURES, MAX_T, build_model, check_T, is_spiking, names,
                                   register_model)


def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "_orig_mod", model)  # a torch.compile'd model keeps its modules there


def probe_points(model: nn.Module) -> "OrderedDict[str, nn.Module]":
    """Every neuron and residual-block exit, in depth order; each carries `N`, `probe_kind`.

    The probed tensor is the module's forward output [T, B, ...] in y units (z = round(N * y)).
    ANN models have none.
    """
    model = _unwrap(model)
    if hasattr(model, "probe_points"):
        return model.probe_points()
    # an architecture of a plugin without its own list: every neuron, by module name
    points = OrderedDict((n, m) for n, m in model.named_modules() if isinstance(m, MultiLevelIF))
    for m in points.values():
        m.probe_kind = getattr(m, "probe_kind", "neuron")
    return points


def layer_groups(model: nn.Module) -> "OrderedDict[str, nn.Module]":
    """Parameter groups for gradient norms: ResNet stem, block0.., head; VGG stage0..,
    classifier. Every parameter is in exactly one group."""
    model = _unwrap(model)
    if hasattr(model, "layer_groups"):
        return model.layer_groups()
    # a plugin's architecture without its own groups: its top-level children with parameters
    return OrderedDict((n, m) for n, m in model.named_children()
                       if any(True for _ in m.parameters()))


__all__ = ["ARCHITECTURES", "MAX_T", "build_model", "check_T", "is_spiking", "names", "register_model", "probe_points", "layer_groups", "ResidualSum"]
