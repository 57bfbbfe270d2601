"""ResNet18/34 in four wirings (docs/method.md, "Architectures").

- sew:     conv-BN-SN-conv-BN-SN, + shortcut (identity or conv1x1-BN-SN); nothing after the sum.
- sparse:  sew + a barrier neuron after the sum (re-quantizes it to {0..N}/N).
- spiking: conv-BN-SN-conv-BN, + shortcut (identity or conv1x1-BN), SN after the sum.
- ann:     the spiking wiring with ReLU (torchvision's BasicBlock).
Stem: `cifar` (conv3x3 stride 1, ours) or `imagenet` (torchvision's conv7x7 stride 2 + 3x3
max-pool). Downsampling shortcut: `conv` (strided conv1x1 - BN, ours) or `conv_pool` (conv1x1 -
BN - max-pool by the stride, the authors' lab code). Modules are named so that probe and group names read directly: stem.sn, block3.sn1,
block3.down.sn, block3.sum / block3.barrier, head.fc.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from spikingjelly.activation_based import functional
from torch import nn

from bench.models.contract import ProbePoint
from bench.models.layers import (ResidualSum, barrier, conv1x1, conv3x3, conv_bn, global_avg_pool,
                                 init_weights, neuron, time_major)
from bench.neurons import NeuronSettings
from bench.registry import ARCHITECTURES

WIRINGS = ("sew", "sparse", "spiking", "ann")
EXIT_KINDS = {"sew": "sum", "sparse": "barrier", "spiking": "neuron"}  # probe kind of sum{i}
STAGE_WIDTHS = (64, 128, 256, 512)
STEMS = ("cifar", "imagenet")  # the first is the default
SHORTCUTS = ("conv", "conv_pool")
OPTIONS = {"stem": STEMS, "shortcut": SHORTCUTS}  # run-config keys a ResNet takes


class Stem(nn.Module):
    """cifar: conv3x3 stride 1 - BN - neuron. imagenet: conv7x7 stride 2 - BN - neuron -
    max-pool 3x3 stride 2 (a quarter of the pixels, then a half again)."""

    def __init__(self, in_channels: int, width: int, neurons: NeuronSettings | None,
                 T: int | None, kind: str) -> None:
        super().__init__()
        self.T = T
        if kind == "cifar":
            self.conv, self.pool = conv3x3(in_channels, width), None
        else:
            self.conv = nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False)
            self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(width)
        self.sn = neuron(neurons)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [B, C, H, W] static (repeated over T) or [T, B, C, H, W] frames -> [T, B, 64, H', W']
        y = self.sn(conv_bn(self.conv, self.bn, x, self.T))
        return y if self.pool is None else time_major(self.pool, y)


class Downsample(nn.Module):
    """Shortcut when shape changes: conv1x1 (stride) - BN, or conv1x1 - BN - max-pool (stride);
    then a neuron in the SEW wirings."""

    def __init__(self, cin: int, cout: int, stride: int, sn: nn.Module | None,
                 kind: str) -> None:
        super().__init__()
        self.pool = nn.MaxPool2d(stride, stride) if kind == "conv_pool" and stride > 1 else None
        self.conv = conv1x1(cin, cout, 1 if self.pool is not None else stride)
        self.bn = nn.BatchNorm2d(cout)
        self.sn = sn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = conv_bn(self.conv, self.bn, x)
        y = y if self.pool is None else time_major(self.pool, y)
        return y if self.sn is None else self.sn(y)


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, wiring: str,
                 neurons: NeuronSettings | None, shortcut: str) -> None:
        super().__init__()
        self.sew = wiring in ("sew", "sparse")
        self.conv1, self.bn1 = conv3x3(cin, cout, stride), nn.BatchNorm2d(cout)
        self.sn1 = neuron(neurons)
        self.conv2, self.bn2 = conv3x3(cout, cout), nn.BatchNorm2d(cout)
        # SEW: sn2 fires before the sum; spiking / ANN: sn2 fires on the sum
        self.sn2 = neuron(neurons)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = Downsample(cin, cout, stride, neuron(neurons) if self.sew else None,
                                   shortcut)
        self.sum = ResidualSum()
        self.barrier = barrier(neurons) if wiring == "sparse" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [T, B, C, H, W] -> [T, B, C', H / stride, W / stride]
        out = self.sn1(conv_bn(self.conv1, self.bn1, x))
        out = conv_bn(self.conv2, self.bn2, out)
        if not self.sew:  # spiking / ANN: the neuron fires on the sum
            return self.sn2(self.sum(out, self.shortcut(x)))
        out = self.sum(self.sn2(out), self.shortcut(x))  # spike values pile up: the avalanche
        return out if self.barrier is None else self.barrier(out)

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.down is None else self.down(x)

    def exit_module(self) -> nn.Module:
        """The module whose output leaves the block: sum, barrier, or the neuron on the sum."""
        if not self.sew:
            return self.sn2
        return self.sum if self.barrier is None else self.barrier


class Head(nn.Module):
    """Global average pool, FC per timestep, logits averaged over T."""

    def __init__(self, width: int, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(global_avg_pool(x)).mean(0)  # [T, B, C, H, W] -> [B, classes]


class ResNet(nn.Module):
    """T, N: None for the ANN wiring (one pass, ReLU)."""

    def __init__(self, arch: str, blocks_per_stage: tuple[int, ...], wiring: str,
                 neurons: NeuronSettings | None, num_classes: int, in_channels: int,
                 T: int | None, stem: str = STEMS[0], shortcut: str = SHORTCUTS[0]) -> None:
        super().__init__()
        if wiring not in WIRINGS:
            raise ValueError(f"unknown ResNet wiring '{wiring}'; known: {', '.join(WIRINGS)}")
        self.arch, self.T, self.N = arch, T, None if neurons is None else neurons.N
        self.num_classes, self.is_spiking, self.neurons = num_classes, neurons is not None, neurons
        self.wiring = wiring
        self.stem = Stem(in_channels, STAGE_WIDTHS[0], neurons, T, stem)
        cin, index = STAGE_WIDTHS[0], 0
        for stage, (width, count) in enumerate(zip(STAGE_WIDTHS, blocks_per_stage)):
            for b in range(count):
                stride = 2 if stage > 0 and b == 0 else 1
                self.add_module(f"block{index}",
                                BasicBlock(cin, width, stride, wiring, neurons, shortcut))
                cin, index = width, index + 1
        self.num_blocks = index
        self.head = Head(cin, num_classes)
        init_weights(self)

    def blocks(self) -> list[BasicBlock]:
        return [getattr(self, f"block{i}") for i in range(self.num_blocks)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [B, C, H, W] or [T, B, C, H, W] -> logits [B, classes]; a forward is one whole sequence
        if self.is_spiking:
            functional.reset_net(self)
        x = self.stem(x)
        for block in self.blocks():
            x = block(x)
        return self.head(x)

    def probe_points(self) -> "OrderedDict[str, tuple[nn.Module, ProbePoint]]":
        """Every neuron, and sum{i}: the tensor leaving block i (the SEW sum, the barrier, or
        the neuron on the sum), in firing order."""
        if not self.is_spiking:
            return OrderedDict()
        neuron_point = ProbePoint.of("neuron", self.neurons)
        exit_point = ProbePoint.of(EXIT_KINDS[self.wiring], self.neurons)
        points = OrderedDict([("stem.sn", (self.stem.sn, neuron_point))])
        for i, block in enumerate(self.blocks()):
            exit_ = block.exit_module()
            named = [("sn1", block.sn1), ("sn2", block.sn2),
                     ("down.sn", block.down.sn if block.down is not None else None)]
            points.update((f"block{i}.{n}", (m, neuron_point)) for n, m in named
                          if m is not None and m is not exit_)
            points[f"sum{i}"] = (exit_, exit_point)
        return points

    def analog_inputs(self) -> list[nn.Module]:
        """The stem's conv reads the images; every other layer reads spikes."""
        return [self.stem.conv] if self.is_spiking else []

    def layer_groups(self) -> "OrderedDict[str, nn.Module]":
        groups = OrderedDict([("stem", self.stem)])
        groups.update((f"block{i}", b) for i, b in enumerate(self.blocks()))
        groups["head"] = self.head
        return groups


def _resnet(arch: str, blocks_per_stage: tuple[int, ...], wiring: str, *, num_classes: int,
            in_channels: int, T: int | None, neurons: NeuronSettings | None,
            **options: str) -> ResNet:
    return ResNet(arch, blocks_per_stage, wiring, neurons, num_classes, in_channels, T, **options)


# label: the name in report tables; ann: the ANN of the same architecture; barrier: has barrier
# neurons after its residual sums
@ARCHITECTURES.register("sew_resnet18", spiking=True, label="SEW-ResNet18", ann="ann_resnet18",
                        options=OPTIONS)
def sew_resnet18(**kw) -> ResNet:
    return _resnet("sew_resnet18", (2, 2, 2, 2), "sew", **kw)


@ARCHITECTURES.register("sparse_resnet18", spiking=True, label="Sparse-ResNet18",
                        ann="ann_resnet18", barrier=True, options=OPTIONS)
def sparse_resnet18(**kw) -> ResNet:
    return _resnet("sparse_resnet18", (2, 2, 2, 2), "sparse", **kw)


@ARCHITECTURES.register("spiking_resnet18", spiking=True, label="Spiking-ResNet18",
                        ann="ann_resnet18", options=OPTIONS)
def spiking_resnet18(**kw) -> ResNet:
    return _resnet("spiking_resnet18", (2, 2, 2, 2), "spiking", **kw)


@ARCHITECTURES.register("ann_resnet18", spiking=False, label="ANN ResNet18", options=OPTIONS)
def ann_resnet18(**kw) -> ResNet:
    return _resnet("ann_resnet18", (2, 2, 2, 2), "ann", **kw)


@ARCHITECTURES.register("sew_resnet34", spiking=True, label="SEW-ResNet34", options=OPTIONS)
def sew_resnet34(**kw) -> ResNet:
    return _resnet("sew_resnet34", (3, 4, 6, 3), "sew", **kw)


@ARCHITECTURES.register("sparse_resnet34", spiking=True, label="Sparse-ResNet34", barrier=True,
                        options=OPTIONS)
def sparse_resnet34(**kw) -> ResNet:
    return _resnet("sparse_resnet34", (3, 4, 6, 3), "sparse", **kw)
