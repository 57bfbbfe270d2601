"""Probes: Lightning callbacks that read the model during evaluation and write to the loggers.

The energy probe lives with the energy model in bench.energy (re-exported here).
"""

from bench.energy.probe import EnergyProbe
from bench.probes.gradients import GradNormProbe
from bench.probes.spikes import SpikeProbe

__all__ = ["EnergyProbe", "GradNormProbe", "SpikeProbe"]
