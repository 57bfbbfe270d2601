"""The paper's reported numbers as data (from the paper's text and tables), kept apart from ours.

Castagnetti, Pegatoquet, Miramond, "All in one timestep: Enhancing Sparsity and Energy
efficiency in Multi-level Spiking Neural Networks", arXiv 2510.24637 (2025). Only the abstract
and a structured summary were readable, so several claims are ranges or words, not numbers;
settings the summary does not state are written as "not stated". The VGG16 numbers come from
third-party notes and are marked unverified: leads, not references.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

PAPER = "Castagnetti et al. 2025 (arXiv 2510.24637)"
SOURCE_PAPER = "paper"
SOURCE_UNVERIFIED = "third-party notes (unverified)"
# "accuracy within 0.5 % of SEW-ResNet18": the paper's own tolerance; we judge "matches" with it.
ACC_TOLERANCE_PP = 0.5


@dataclass(frozen=True)
class Reported:
    """One reported number (`value`), range [`low`, `high`] or qualitative statement (neither)."""

    key: str
    text: str  # as the paper (summary) words it
    unit: str  # "%", "pp", "spikes / image", "x", "mJ / image", or "" when qualitative
    dataset: str
    setting: str
    value: float | None = None
    low: float | None = None
    high: float | None = None
    source: str = SOURCE_PAPER

    def difference(self, ours: float) -> float:
        """ours - paper; for a range, the signed distance to the range (0 inside it)."""
        if ours is None or not math.isfinite(ours):
            return math.nan
        if self.value is not None:
            return ours - self.value
        if self.low is not None and ours < self.low:
            return ours - self.low
        if self.high is not None and ours > self.high:
            return ours - self.high
        return 0.0 if (self.low is not None or self.high is not None) else math.nan


_SUM1_SEW, _SUM1_SPARSE = 67848.0, 35819.0
_R18 = "ResNet18, T and N not stated"

REPORTED: dict[str, Reported] = {r.key: r for r in (
    # latency / levels trade
    Reported("levels_acc_t1n4", "93.13 %", "%", "CIFAR-10", "[T=1, N=4], architecture not stated",
             value=93.13),
    Reported("levels_acc_t4n1", "93.15 %", "%", "CIFAR-10", "[T=4, N=1], architecture not stated",
             value=93.15),
    Reported("levels_gap", "93.13 % vs 93.15 %: -0.02 pp", "pp", "CIFAR-10",
             "[T=1, N=4] minus [T=4, N=1]", value=93.13 - 93.15),
    Reported("energy_vs_binary", "2-3x less energy than binary SNNs", "x", "CIFAR-10/100",
             "multi-level SNN at T=1 vs binary SNN, depending on N", low=2.0, high=3.0),
    # spike avalanche and Sparse-ResNet
    Reported("sum1_sew", "67,848 spikes at sum1", "spikes / image", "CIFAR-10",
             f"SEW-{_R18}", value=_SUM1_SEW),
    Reported("sum1_sparse", "35,819 spikes at sum1", "spikes / image", "CIFAR-10",
             f"Sparse-{_R18}", value=_SUM1_SPARSE),
    Reported("sum1_change", "67,848 -> 35,819: -47.2 %", "%", "CIFAR-10",
             "Sparse vs SEW-ResNet18 at sum1", value=100 * (_SUM1_SPARSE - _SUM1_SEW) / _SUM1_SEW),
    Reported("activity_change", "activity 25-47 % lower", "%", "CIFAR-10/100",
             "Sparse vs SEW-ResNet18, N=4..8", low=-47.0, high=-25.0),
    Reported("energy_change", "energy 25-30 % lower", "%", "CIFAR-10/100",
             "Sparse vs SEW-ResNet18, N=4..8", low=-30.0, high=-25.0),
    Reported("acc_gap", "accuracy within 0.5 % of SEW-ResNet18", "pp", "CIFAR-10/100",
             "Sparse minus SEW-ResNet18, N=4..8", low=-ACC_TOLERANCE_PP, high=ACC_TOLERANCE_PP),
    Reported("activity_vs_spiking", ">20 % less activity than earlier spiking ResNets", "%",
             "CIFAR-10/100", "Sparse-ResNet vs earlier spiking ResNets at SOTA accuracy",
             high=-20.0),
    Reported("avalanche", "activity grows block after block in SEW; the barrier re-quantizes "
             "each sum to {0..N}", "", "CIFAR-10", "SEW vs Sparse-ResNet18 residual sums"),
    # gradient flow
    Reported("gradient_sg", "Sparse+SG starves early blocks (~0 surrogate gradient far from "
             "threshold)", "", "CIFAR-10", "Sparse-ResNet18, sigmoid surrogate at the barrier"),
    Reported("gradient_ste", "Sparse+STE keeps gradient norms like SEW's", "", "CIFAR-10",
             "Sparse-ResNet18, STE at the barrier, vs SEW-ResNet18"),
    # CIFAR10-DVS
    Reported("dvs_t1_acc", "classified at T=1 (accuracy not stated)", "",
             "CIFAR10-DVS", "multi-level SNN at T=1"),
    Reported("dvs_t1", "classified at T=1: 10x lower latency than earlier results at ~T=10", "x",
             "CIFAR10-DVS", "multi-level SNN at T=1 vs binary SNNs at ~T=10", value=10.0),
    # open question 1
    Reported("depth", "open question: does the barrier scale to deeper networks (ResNet34)?", "",
             "n/a", "Sparse vs SEW-ResNet34"),
    # third-party VGG16 numbers
    Reported("vgg16_c10_binary", "94.40 %", "%", "CIFAR-10", "VGG16 [T=4, N=1]", value=94.40,
             source=SOURCE_UNVERIFIED),
    Reported("vgg16_c10_multi", "94.34 %", "%", "CIFAR-10", "VGG16 [T=1, N=4]", value=94.34,
             source=SOURCE_UNVERIFIED),
    Reported("vgg16_c10_ann", "~95 %", "%", "CIFAR-10", "ANN VGG16", value=95.0,
             source=SOURCE_UNVERIFIED),
    Reported("vgg16_c100_binary", "70.18 %", "%", "CIFAR-100", "VGG16 [T=4, N=1]", value=70.18,
             source=SOURCE_UNVERIFIED),
    Reported("vgg16_c100_multi", "73.75 %", "%", "CIFAR-100", "VGG16 [T=1, N=4]", value=73.75,
             source=SOURCE_UNVERIFIED),
    Reported("vgg16_c100_ann", "~76 %", "%", "CIFAR-100", "ANN VGG16", value=76.0,
             source=SOURCE_UNVERIFIED),
    Reported("vgg16_energy_binary", "8.5 mJ", "mJ / image", "CIFAR-10", "VGG16 [T=4, N=1]",
             value=8.5, source=SOURCE_UNVERIFIED),
    Reported("vgg16_energy_multi", "4.41 mJ", "mJ / image", "CIFAR-10", "VGG16 [T=1, N=4]",
             value=4.41, source=SOURCE_UNVERIFIED),
    Reported("vgg16_energy_ann", "12.9 mJ", "mJ / image", "CIFAR-10", "ANN VGG16", value=12.9,
             source=SOURCE_UNVERIFIED),
    Reported("ann_over_binary", "12.9 vs 8.5 mJ: 1.52x", "x", "CIFAR-10",
             "ANN VGG16 / VGG16 [T=4, N=1]", value=12.9 / 8.5, source=SOURCE_UNVERIFIED),
    Reported("ann_over_multi", "12.9 vs 4.41 mJ: 2.93x", "x", "CIFAR-10",
             "ANN VGG16 / VGG16 [T=1, N=4]", value=12.9 / 4.41, source=SOURCE_UNVERIFIED),
)}
