"""Energy per image of a network, from its layer shapes and the spikes it actually emits.

    from bench.energy import estimate
    report = estimate(net, images)          # images [B, C, H, W] or frames [T, B, C, H, W]
    report.total_uj, report.breakdown_uj    # microjoules per image, and the eight terms
    report.counts["conv1"]                  # events, synaptic ops, MACs, accesses per buffer

The package: `costs` (arithmetic and SRAM laws), `counting` (forward hooks -> per-image
counts), `models` (the registry of energy models and the Lemaire formulas), `simple` (bench's
earlier model), `probe` (the Lightning callback that runs the counting during evaluation).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from bench.energy import simple as _simple  # noqa: F401  (registers the `simple` model)
from bench.energy.counting import Counts, EnergyCounter
from bench.energy.models import (MODELS, EnergyReport, EnergySettingError, EnergySettings,
                                 choices, price)

__all__ = ["Counts", "EnergyCounter", "EnergyReport", "EnergySettingError", "EnergySettings", "MODELS", "choices",
           "estimate", "price"]


def estimate(model: nn.Module, inputs: Any, *, model_name: str = "lemaire",
             counting: str = "event", multilevel_op: str = "mac", mem_bits: int = 32,
             sram: str = "qualia", fifo: int = 1000, **conventions: Any) -> EnergyReport:
    """Run `model(inputs)` once without gradients and price it per image.

    `inputs` is what the model takes: images (repeated over T inside the model) or [T, B, ...]
    frames. Neuron state is reset before the pass (spikingjelly's reset_net). Other settings
    (op_bits, static_input_once, fanout, bias_adds, param_buffer, dense_fc_addressing, preset)
    are EnergySettings fields.
    """
    from spikingjelly.activation_based import functional

    settings = EnergySettings(model=model_name, counting=counting, multilevel_op=multilevel_op,
                              mem_bits=mem_bits, sram=sram, fifo=fifo, **conventions)
    with EnergyCounter(model) as counter, torch.no_grad():
        functional.reset_net(model)
        model(inputs)
        counts = counter.counts()
    functional.reset_net(model)
    return price(counts, settings)
