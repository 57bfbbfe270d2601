"""ResNet18/34 with the CIFAR stem, in four wirings (paper.md, "Architectures (OURS)").

- sew:     conv-BN-SN-conv-BN-SN, + shortcut (identity or conv1x1-BN-SN); nothing after the sum.
- sparse:  sew + a barrier neuron after the sum (re-quantizes it to {0..N}/N).
- spiking: conv-BN-SN-conv-BN, + shortcut (identity or conv1x1-BN), SN after the sum.
- ann:     the spiking wiring with ReLU (torchvision's BasicBlock).
Modules are named so that probe and group names read directly: stem.sn, block3.sn1,
block3.down.sn, block3.sum / block3.barrier, head.fc.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from spikingjelly.activation_based import functional
from torch import nn

from bench.models.layers import (Neurons, ResidualSum, conv1x1, conv3x3, conv_bn, global_avg_pool,
                                 init_weights, mark_analog_inputs)
from bench.models.registry import register_model

WIRINGS = ("sew", "sparse", "spiking", "ann")
STAGE_WIDTHS = (64, 128, 256, 512)


class Stem(nn.Module):
    """conv3x3 stride 1 - BN - neuron, no max-pool (CIFAR stem)."""

    def __init__(self, in_channels: int, width: int, neurons: Neurons, T: int) -> None:
        super().__init__()
        self.T = T
        self.conv = conv3x3(in_channels, width)
        self.bn = nn.BatchNorm2d(width)
        self.sn = neurons.neuron()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [B, C, H, W] static (repeated over T) or [T, B, C, H, W] frames -> [T, B, 64, H, W]
        return self.sn(conv_bn(self.conv, self.bn, x, self.T))


class Downsample(nn.Module):
    """Shortcut when shape changes: conv1x1 (stride) - BN, then a neuron in the SEW wirings."""

    def __init__(self, cin: int, cout: int, stride: int, sn: nn.Module | None) -> None:
        super().__init__()
        self.conv = conv1x1(cin, cout, stride)
        self.bn = nn.BatchNorm2d(cout)
        self.sn = sn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = conv_bn(self.conv, self.bn, x)
        return y if self.sn is None else self.sn(y)


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, wiring: str, neurons: Neurons) -> None:
        super().__init__()
        self.sew = wiring in ("sew", "sparse")
        self.conv1, self.bn1 = conv3x3(cin, cout, stride), nn.BatchNorm2d(cout)
        self.sn1 = neurons.neuron()
        self.conv2, self.bn2 = conv3x3(cout, cout), nn.BatchNorm2d(cout)
        # SEW: sn2 fires before the sum; spiking / ANN: sn2 fires on the sum
        self.sn2 = neurons.neuron()
        self.down = None
        if stride != 1 or cin != cout:
            self.down = Downsample(cin, cout, stride, neurons.neuron() if self.sew else None)
        self.sum = ResidualSum()
        self.barrier = neurons.barrier() if wiring == "sparse" else None

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
    def __init__(self, arch: str, blocks_per_stage: tuple[int, ...], wiring: str, neurons: Neurons,
                 num_classes: int, in_channels: int, T: int) -> None:
        super().__init__()
        if wiring not in WIRINGS:
            raise ValueError(f"unknown ResNet wiring '{wiring}'; known: {', '.join(WIRINGS)}")
        self.arch, self.T, self.levels = arch, T, neurons.levels
        self.num_classes, self.is_spiking = num_classes, neurons.spiking
        self.stem = Stem(in_channels, STAGE_WIDTHS[0], neurons, T)
        cin, index = STAGE_WIDTHS[0], 0
        for stage, (width, count) in enumerate(zip(STAGE_WIDTHS, blocks_per_stage)):
            for b in range(count):
                stride = 2 if stage > 0 and b == 0 else 1
                self.add_module(f"block{index}", BasicBlock(cin, width, stride, wiring, neurons))
                cin, index = width, index + 1
        self.num_blocks = index
        self.head = Head(cin, num_classes)
        if wiring == "sew":
            for block in self.blocks():
                block.sum.levels, block.sum.probe_kind = neurons.levels, "sum"
        init_weights(self)
        mark_analog_inputs(self, self.stem.conv)

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

    def probe_points(self) -> "OrderedDict[str, nn.Module]":
        if not self.is_spiking:
            return OrderedDict()
        points = OrderedDict([("stem.sn", self.stem.sn)])
        for i, block in enumerate(self.blocks()):
            exit_ = block.exit_module()
            named = [("sn1", block.sn1), ("sn2", block.sn2),
                     ("down.sn", block.down.sn if block.down is not None else None)]
            points.update((f"block{i}.{n}", m) for n, m in named
                          if m is not None and m is not exit_)
            points[f"sum{i}"] = exit_
        return points

    def layer_groups(self) -> "OrderedDict[str, nn.Module]":
        groups = OrderedDict([("stem", self.stem)])
        groups.update((f"block{i}", b) for i, b in enumerate(self.blocks()))
        groups["head"] = self.head
        return groups


def _resnet(arch: str, blocks_per_stage: tuple[int, ...], wiring: str, *, num_classes: int,
            in_channels: int, T: int, neurons: Neurons) -> ResNet:
    if wiring == "ann":  # ReLU, one forward pass whatever T and N say
        neurons, T = Neurons(levels=0), 1
    return ResNet(arch, blocks_per_stage, wiring, neurons, num_classes, in_channels, T)


@register_model
def sew_resnet18(**kw) -> ResNet:
    return _resnet("sew_resnet18", (2, 2, 2, 2), "sew", **kw)


@register_model
def sparse_resnet18(**kw) -> ResNet:
    return _resnet("sparse_resnet18", (2, 2, 2, 2), "sparse", **kw)


@register_model
def spiking_resnet18(**kw) -> ResNet:
    return _resnet("spiking_resnet18", (2, 2, 2, 2), "spiking", **kw)


@register_model
def ann_resnet18(**kw) -> ResNet:
    return _resnet("ann_resnet18", (2, 2, 2, 2), "ann", **kw)


@register_model
def sew_resnet34(**kw) -> ResNet:
    return _resnet("sew_resnet34", (3, 4, 6, 3), "sew", **kw)


@register_model
def sparse_resnet34(**kw) -> ResNet:
    return _resnet("sparse_resnet34", (3, 4, 6, 3), "sparse", **kw)
