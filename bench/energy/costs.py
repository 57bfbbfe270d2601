"""Energy constants: arithmetic per operation and SRAM access laws, all in picojoules.

Arithmetic (Horowitz, "Computing's energy problem", ISSCC 2014, 45 nm integer): an add and a
multiply at 32 bits (0.1 / 3.1 pJ) or 8 bits (0.03 / 0.2 pJ). A MAC is a multiply plus an add.

SRAM laws give the energy of one access to one element of `bits` bits in a buffer holding
`elements` such elements:
- `qualia`: the authors' lab fit on 45 nm SRAM, linear in the buffer's size in bits:
  E = 1.09e-5 * elements * bits + 13.2 pJ.
- `spikingjelly`: spikingjelly 2.0's Lemaire profiler: an energy per *byte* accessed, piecewise
  linear in the buffer's capacity in bytes through (0, 0), (8 KiB, 2.5), (32 KiB, 5),
  (1 MiB, 25) pJ/byte (Horowitz's 10/20/100 pJ per 32-bit word), capacity clamped to 1 MiB.
- `horowitz_log`: bench's earlier law: Horowitz's 64-bit read energy (10 pJ at 8 KB, 20 pJ at
  32 KB, 100 pJ at 1 MB) interpolated on log2(bytes), flat below 8 KB, extended above 1 MB; one
  access costs one such read whatever the width.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

OP_BITS = (8, 32)
MEM_BITS = (8, 16, 32)


@dataclass(frozen=True)
class OpCosts:
    """pJ per integer add and multiply at one width."""

    add: float
    mul: float

    @property
    def mac(self) -> float:
        return self.add + self.mul


ARITHMETIC: dict[int, OpCosts] = {32: OpCosts(add=0.1, mul=3.1), 8: OpCosts(add=0.03, mul=0.2)}


def _qualia(elements: float, bits: int) -> float:
    return 1.09e-5 * elements * bits + 13.2


_SJ_POINTS = ((0.0, 0.0), (8 * 1024.0, 2.5), (32 * 1024.0, 5.0), (1024 * 1024.0, 25.0))


def _spikingjelly(elements: float, bits: int) -> float:
    capacity = min(max(elements * bits / 8, 0.0), _SJ_POINTS[-1][0])
    for (x0, y0), (x1, y1) in zip(_SJ_POINTS, _SJ_POINTS[1:]):
        if capacity <= x1:
            per_byte = y0 + (y1 - y0) * (capacity - x0) / (x1 - x0)
            return per_byte * bits / 8
    raise AssertionError("unreachable: capacity is clamped")


_HOROWITZ_READS = ((8 * 1024, 10.0), (32 * 1024, 20.0), (1024 * 1024, 100.0))


def _horowitz_log(elements: float, bits: int) -> float:
    size = elements * bits / 8
    points = _HOROWITZ_READS
    if size <= points[0][0]:
        return points[0][1]
    segments = list(zip(points, points[1:]))
    (s0, e0), (s1, e1) = next((seg for seg in segments if size <= seg[1][0]), segments[-1])
    return e0 + (e1 - e0) * math.log2(size / s0) / math.log2(s1 / s0)


SRAM_LAWS: dict[str, Callable[[float, int], float]] = {
    "qualia": _qualia, "spikingjelly": _spikingjelly, "horowitz_log": _horowitz_log}


def sram_pj(law: str, elements: float, bits: int) -> float:
    """pJ of one access to one `bits`-bit element of a buffer of `elements` elements."""
    return SRAM_LAWS[law](elements, bits)


# the `simple` model's arithmetic: (E_AC, E_MAC) in pJ per operation
PRESETS = {"horowitz45": (0.1, 3.2), "snn_convention": (0.9, 4.6)}
