"""Probes: Lightning callbacks that read the model during evaluation and write to the loggers."""

from bench.probes.energy import (PRESETS, EnergyHooks, EnergyPreset, EnergyProbe, LayerStats,
                                 NeuronStats, attach_energy_hooks, energy_breakdown, horowitz45,
                                 snn_convention)
from bench.probes.gradients import GradNormProbe
from bench.probes.spikes import SpikeProbe

__all__ = ["PRESETS", "EnergyHooks", "EnergyPreset", "EnergyProbe", "LayerStats", "NeuronStats",
           "attach_energy_hooks", "energy_breakdown", "horowitz45", "snn_convention",
           "GradNormProbe", "SpikeProbe"]
