"""Energy per image of a network, from its layer shapes and the spikes it actually emits.

    from bench.energy import estimate
    report = estimate(net, images)          # images [B, C, H, W] or frames [T, B, C, H, W]
    report.total_uj, report.breakdown_uj    # microjoules per image, and the eight terms
    report.counts["conv1"]                  # events, synaptic ops, MACs, accesses per buffer

The package: `costs` (arithmetic and SRAM laws), `counting` (forward hooks -> per-image
counts), `settings` (EnergySettings: every setting, its default and check), `models` (the
registry of energy models and the Lemaire formulas), `simple` (bench's earlier model), `reprice`
(a record priced again under other settings, and the report's SENSITIVITY grid), `probe` (the
Lightning callback that runs the counting during evaluation).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from bench.energy import simple as _simple  # noqa: F401  (registers the `simple` model)
from bench.energy.counting import Counts, EnergyCounter
from bench.energy.models import MODELS, TERMS, EnergyReport, price
from bench.energy.reprice import SENSITIVITY, reprice
from bench.energy.settings import EnergySettingError, EnergySettings, choices, settings_with

__all__ = ["Counts", "EnergyCounter", "EnergyReport", "EnergySettingError", "EnergySettings",
           "MODELS", "SENSITIVITY", "TERMS", "choices", "estimate", "price", "reprice"]


def estimate(model: nn.Module, inputs: Any, /, *, model_name: str | None = None,
             **settings: Any) -> EnergyReport:
    """Run `model(inputs)` once without gradients and price it per image.

    `inputs` is what the model takes: images (repeated over T inside the model) or [T, B, ...]
    frames. Neuron state is reset before the pass (spikingjelly's reset_net). `settings` are
    EnergySettings fields (defaults and checks there), `model="simple"` included (the network
    and inputs are positional only); `model_name` is an older spelling of that `model`.
    """
    from spikingjelly.activation_based import functional

    if model_name is not None:
        settings["model"] = model_name
    checked = settings_with(changes=settings)  # before the pass: a bad name costs no forward
    with EnergyCounter(model) as counter, torch.no_grad():
        functional.reset_net(model)
        model(inputs)
        counts = counter.counts()
    functional.reset_net(model)
    return price(counts, checked)
