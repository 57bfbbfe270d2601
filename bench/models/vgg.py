"""VGG16 with a CIFAR head (docs/method.md, "Architectures").

13 conv3x3-BN-neuron layers in five stages (64,64 | 128,128 | 256x3 | 512x3 | 512x3), a 2x2
max-pool after each stage (skipped once the map is 1x1), global average pooling, then
FC 512 - neuron - FC 512 - neuron - FC classes. Probe names: stage2.sn1, fc1.sn, ...
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from spikingjelly.activation_based import functional
from torch import nn

from bench.models.contract import ProbePoint
from bench.models.layers import (conv3x3, conv_bn, global_avg_pool, init_weights,
                                 max_pool_unless_1x1, neuron)
from bench.neurons import NeuronSettings
from bench.registry import ARCHITECTURES

VGG16_STAGES = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


class Stage(nn.Module):
    """conv{j}-bn{j}-sn{j} for each width, then max-pool."""

    def __init__(self, cin: int, widths: tuple[int, ...], neurons: NeuronSettings | None,
                 T: int | None) -> None:
        super().__init__()
        self.T, self.depth = T, len(widths)
        for j, width in enumerate(widths):
            self.add_module(f"conv{j}", conv3x3(cin, width))
            self.add_module(f"bn{j}", nn.BatchNorm2d(width))
            self.add_module(f"sn{j}", neuron(neurons))
            cin = width

    def layers(self) -> list[tuple[nn.Module, nn.Module, nn.Module]]:
        return [(getattr(self, f"conv{j}"), getattr(self, f"bn{j}"), getattr(self, f"sn{j}"))
                for j in range(self.depth)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [T, B, C, H, W] (or a static [B, C, H, W] in stage0) -> [T, B, C', H/2, W/2]
        for conv, bn, sn in self.layers():
            x = sn(conv_bn(conv, bn, x, self.T))
        return max_pool_unless_1x1(x)


class FCNeuron(nn.Module):
    def __init__(self, fin: int, fout: int, neurons: NeuronSettings | None) -> None:
        super().__init__()
        self.fc = nn.Linear(fin, fout)
        self.sn = neuron(neurons)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.sn(self.fc(x))  # [T, B, fin] -> [T, B, fout]


class Classifier(nn.Module):
    def __init__(self, width: int, num_classes: int, neurons: NeuronSettings | None) -> None:
        super().__init__()
        self.fc1 = FCNeuron(width, 512, neurons)
        self.fc2 = FCNeuron(512, 512, neurons)
        self.fc3 = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # [T, B, C, H, W] -> logits averaged over T, [B, classes]
        return self.fc3(self.fc2(self.fc1(global_avg_pool(x)))).mean(0)


class VGG(nn.Module):
    """T, N: None for the ANN (one pass, ReLU)."""

    def __init__(self, arch: str, stages: tuple[tuple[int, ...], ...],
                 neurons: NeuronSettings | None, num_classes: int, in_channels: int,
                 T: int | None) -> None:
        super().__init__()
        self.arch, self.T, self.N = arch, T, None if neurons is None else neurons.N
        self.num_classes, self.is_spiking, self.neurons = num_classes, neurons is not None, neurons
        cin = in_channels
        for i, widths in enumerate(stages):
            self.add_module(f"stage{i}", Stage(cin, widths, neurons, T))
            cin = widths[-1]
        self.num_stages = len(stages)
        self.classifier = Classifier(cin, num_classes, neurons)
        init_weights(self)

    def stages(self) -> list[Stage]:
        return [getattr(self, f"stage{i}") for i in range(self.num_stages)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [B, C, H, W] or [T, B, C, H, W] -> logits [B, classes]; a forward is one whole sequence
        if self.is_spiking:
            functional.reset_net(self)
        for stage in self.stages():
            x = stage(x)
        return self.classifier(x)

    def probe_points(self) -> "OrderedDict[str, tuple[nn.Module, ProbePoint]]":
        """Every neuron, in firing order."""
        if not self.is_spiking:
            return OrderedDict()
        point = ProbePoint.of("neuron", self.neurons)
        points = OrderedDict()
        for i, stage in enumerate(self.stages()):
            points.update((f"stage{i}.sn{j}", (sn, point))
                          for j, (_, _, sn) in enumerate(stage.layers()))
        points["fc1.sn"] = (self.classifier.fc1.sn, point)
        points["fc2.sn"] = (self.classifier.fc2.sn, point)
        return points

    def analog_inputs(self) -> list[nn.Module]:
        """The first conv reads the images; every other layer reads spikes."""
        return [self.stage0.conv0] if self.is_spiking else []

    def layer_groups(self) -> "OrderedDict[str, nn.Module]":
        groups = OrderedDict((f"stage{i}", s) for i, s in enumerate(self.stages()))
        groups["classifier"] = self.classifier
        return groups


@ARCHITECTURES.register("vgg16", spiking=True, label="VGG16", ann="ann_vgg16")
def vgg16(*, T: int | None, neurons: NeuronSettings | None, **kw) -> VGG:
    return VGG("vgg16", VGG16_STAGES, neurons, T=T, **kw)


@ARCHITECTURES.register("ann_vgg16", spiking=False, label="ANN VGG16")
def ann_vgg16(*, T: int | None, neurons: NeuronSettings | None, **kw) -> VGG:
    return VGG("ann_vgg16", VGG16_STAGES, neurons, T=T, **kw)
