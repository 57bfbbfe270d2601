"""EnergySettings: every setting of the energy estimate, declared, defaulted and checked here once.

The run config embeds the recorded ones as flat `energy_<field>` keys (`--set energy_sram=...`),
`bench.energy.estimate` and `bench.energy.reprice` take them as keyword arguments, every record
states them. Plain data: it imports the SRAM laws and the registry of energy models only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any

from bench.energy.costs import MEM_BITS, OP_BITS, PRESETS, SRAM_LAWS
from bench.errors import SettingError
from bench.registry import ENERGY_MODELS

COUNTINGS = ("packet", "event", "value")
BUFFER_SIZINGS = ("timestep", "call")
# the largest spike FIFO: 2^20 entries (4 MiB of 32-bit entries) is past the largest on-chip
# buffer the SRAM laws were fitted on (1 MiB); a larger one only makes the laws extrapolate
MAX_FIFO = 2**20
# the settings a run records and its config exposes as energy_<name> keys; the others are
# conventions for comparisons with other tools (estimate / reprice keyword arguments)
RUN_KEYS = ("model", "counting", "multilevel_op", "mem_bits", "sram", "fifo", "buffers",
            "preset")


class EnergySettingError(SettingError):
    """A bad energy setting; `key` names the EnergySettings field."""

    template = "energy {key}: {detail}"


@dataclass(frozen=True)
class EnergySettings:
    """Every choice an energy figure depends on; recorded beside every number it produces.

    model: a registered energy model. counting: how many events a spike value z is: "packet"
    (ceil(z / N_in), N_in the levels of the spike format entering the layer), "event" (one per
    non-zero z, the lab's count_nonzero) or "value" (z); binary inputs count by value under all
    three (the lab counts a SEW sum of 2 as two spikes). multilevel_op: how one event of a
    multi-level (N > 1) spike is priced: "mac" (weight x integer) or "ac". mem_bits / op_bits:
    memory element and arithmetic widths. sram: an SRAM law of bench.energy.costs. fifo: entries
    of each layer's spike FIFO (input reads, spike writes), 1 .. MAX_FIFO. buffers: a buffer sized
    by a tensor (potentials, a dense layer's input, an ANN's output) holds one image and timestep
    ("timestep", the lab) or one forward call, batch and timesteps included ("call",
    spikingjelly's profiler). static_input_once: a static image repeated over T costs its first
    layer once.
    Conventions where the lab and spikingjelly's profiler differ (lab defaults):
    fanout: "lab" (synaptic ops = events x C_out x prod(ceil(k/s)); weight reads and potential
    accesses = events x C_out x prod(k)) or "exact" (all three = the exact receptive-field count);
    bias_adds: "always" (one add per output per timestep, the lab) or "if_bias" (spikingjelly);
    param_buffer: "split" (weights and bias in buffers of their own, the lab) or "shared";
    dense_fc_addressing: "product" (N_in x N_out adds, the lab) or "sum" (N_in + N_out).
    preset: arithmetic of the `simple` model only (horowitz45 | snn_convention).
    """

    model: str = "lemaire"
    counting: str = "packet"
    multilevel_op: str = "mac"
    mem_bits: int = 32
    op_bits: int = 32
    sram: str = "qualia"
    fifo: int = 1000
    buffers: str = "timestep"
    static_input_once: bool = True
    fanout: str = "lab"
    bias_adds: str = "always"
    param_buffer: str = "split"
    dense_fc_addressing: str = "product"
    preset: str = "horowitz45"

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            kind = type(f.default)  # str, int or bool: 32.0, true or "32" are not a width
            if type(value) is not kind:
                raise EnergySettingError(f.name, f"{value!r} must be {_KIND[kind]}")
        for key, allowed in choices().items():
            value = getattr(self, key)
            if value not in allowed:
                names = ", ".join(str(a) for a in allowed)
                raise EnergySettingError(key, f"{value!r} is unknown; allowed: {names}")
        if not 1 <= self.fifo <= MAX_FIFO:
            raise EnergySettingError("fifo", f"{self.fifo!r} must be an integer from 1 to "
                                     f"{MAX_FIFO}")

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Each field's default, without building (and checking) an instance."""
        return {f.name: f.default for f in fields(cls)}

    @staticmethod
    def choice(key: str) -> tuple:
        """The allowed values of a setting that has a list of them."""
        return choices()[key]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_KIND = {str: "a name", int: "an integer", bool: "true or false"}


def choices() -> dict[str, tuple]:
    """Allowed values of the settings that have a list of them (the registry lists models)."""
    return {"model": tuple(ENERGY_MODELS.names()), "counting": COUNTINGS,
            "multilevel_op": ("mac", "ac"), "mem_bits": MEM_BITS, "op_bits": OP_BITS,
            "sram": tuple(SRAM_LAWS), "buffers": BUFFER_SIZINGS,
            "static_input_once": (True, False),
            "fanout": ("lab", "exact"), "bias_adds": ("always", "if_bias"),
            "param_buffer": ("split", "shared"), "dense_fc_addressing": ("product", "sum"),
            "preset": tuple(PRESETS)}


def settings_with(base: dict[str, Any] | None = None, changes: dict[str, Any] | None = None
                  ) -> EnergySettings:
    """EnergySettings from `base` (e.g. a record's), then `changes`; an unknown name is an
    EnergySettingError naming it."""
    values = {**(base or {}), **(changes or {})}
    for key in values:
        if key not in EnergySettings.keys():
            raise EnergySettingError(key, f"is not an energy setting; known: "
                                     f"{', '.join(EnergySettings.keys())}")
    return EnergySettings(**values)
