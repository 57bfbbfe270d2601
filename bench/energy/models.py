"""Energy models: per-image counts (bench.energy.counting) -> energy per image, term by term.

`lemaire` (default) is the analytical model of Lemaire et al. (ICONIP 2022) as the authors' lab
computes it, with the corrections listed in docs/method.md and the README ("Energy"). `simple`
is bench's earlier model (AC/MAC presets, a memory term per synaptic op, membrane update and
spike), kept so records written before stay comparable.

A model is a function (Counts, EnergySettings) -> EnergyReport registered by name; the
registry is the only list of models.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from bench import schema
from bench.energy.costs import ARITHMETIC, sram_pj
from bench.energy.counting import Counts, LayerShape, NeuronShape
from bench.energy.settings import (EnergySettingError, EnergySettings,  # noqa: F401 (re-export)
                                   choices, settings_with)
from bench.registry import ENERGY_MODELS

PJ_PER_UJ = 1e6
TERMS = ("ac", "mac", "addressing", "weights", "bias", "potentials", "inputs", "outputs")
BUFFERS = ("weights", "bias", "potentials", "inputs", "outputs")


@dataclass
class EnergyReport:
    """Energy per image: total, the eight terms, and per-layer counts (operations, accesses)."""

    settings: EnergySettings
    images: int
    total_uj: float
    breakdown_uj: dict[str, float]
    counts: dict[str, dict[str, float]]  # layer -> count name -> per image
    layer_uj: dict[str, float] = field(default_factory=dict)
    measured: Counts | None = None  # what was priced (bench.energy.reprice prices it again)

    def totals(self) -> dict[str, float]:
        """Each count summed over layers (per image)."""
        out: dict[str, float] = defaultdict(float)
        for counts in self.counts.values():
            for key, value in counts.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    out[key] += value
        return dict(out)

    def to_record(self) -> dict[str, Any]:
        """The run record's `energy` field (README, "The run record")."""
        return {**self.settings.to_dict(), schema.ENERGY_IMAGES: self.images,
                schema.ENERGY_TOTAL_UJ: self.total_uj,
                schema.ENERGY_BREAKDOWN_UJ: dict(self.breakdown_uj),
                schema.ENERGY_OPS: self.totals(),
                schema.ENERGY_PER_LAYER: [{schema.ENERGY_LAYER: name, **counts,
                                           schema.ENERGY_LAYER_UJ: self.layer_uj.get(name, 0.0)}
                              for name, counts in self.counts.items()],
                schema.ENERGY_MEASURED: None if self.measured is None
                else self.measured.to_record()}


MODELS = ENERGY_MODELS  # name -> function (Counts, EnergySettings) -> EnergyReport




def price(counts: Counts, settings: EnergySettings) -> EnergyReport:
    report = MODELS.get(settings.model)(counts, settings)
    report.measured = counts
    return report


# ---------------------------------------------------------------------------- lemaire


class _Ledger:
    """Operations and SRAM accesses of one layer, priced as they are added."""

    def __init__(self, s: EnergySettings) -> None:
        self.s, self.ops = s, ARITHMETIC[s.op_bits]
        self.pj = dict.fromkeys(TERMS, 0.0)
        self.counts: dict[str, float] = defaultdict(float)

    def adds(self, n: float, term: str = "ac") -> None:
        self.counts["adds" if term == "ac" else "addressing_adds"] += n
        self.pj[term] += n * self.ops.add

    def macs(self, n: float, term: str = "mac") -> None:
        self.counts["macs" if term == "mac" else "addressing_macs"] += n
        self.pj[term] += n * self.ops.mac

    def access(self, buffer: str, n: float, capacity: float) -> None:
        self.counts[f"{buffer}_accesses"] += n
        self.pj[buffer] += n * sram_pj(self.s.sram, capacity, self.s.mem_bits)


def _input_events(s: EnergySettings, c: dict[str, float], levels: int) -> tuple[float, float]:
    """(events, exact synaptic ops) of a spike input under the counting setting."""
    if s.counting == "packet":  # ceil(z / N_in): binary by value, z <= N one, a sum above N more
        return c["events_packet"], c["exact_packet"]
    if s.counting == "value" or levels == 1:  # the lab counts binary SEW sums by value
        return c["events_value"], c["exact_value"]
    return c["events_nonzero"], c["exact_nonzero"]


def _capacity(s: EnergySettings, per_step: int, per_call: int) -> int:
    """Elements of a buffer sized by a tensor: one image and timestep (the lab), or one forward
    call, batch and its timesteps included (spikingjelly's profiler)."""
    return per_call if s.buffers == "call" else per_step


def _spike_part(led: _Ledger, l: LayerShape, c: dict[str, float], counts: Counts) -> None:
    s = led.s
    events, exact = _input_events(s, c, counts.levels)
    if s.fanout == "lab":
        synops = events * l.fanout_channels * l.kernel_ceil
        memory = events * l.fanout_channels * l.kernel
    else:
        synops = memory = exact
    led.counts.update(events=events, spike_values=c["events_value"], synaptic_ops=synops,
                      synaptic_ops_exact=exact)
    if counts.levels > 1 and s.multilevel_op == "mac":
        led.macs(synops)
    else:
        led.adds(synops)
    outputs = c["spike_outputs"]
    if s.bias_adds == "always" or l.bias:
        led.adds(outputs)
    if l.kind == "conv":  # locate the first output of each event, then walk the kernel
        led.macs(2 * events, "addressing")
        led.adds(events * l.fanout_channels * l.kernel, "addressing")
    else:
        led.adds(events * l.fanout_channels, "addressing")
    led.access("weights", memory, _weight_capacity(l, s))
    if l.bias:
        led.access("bias", outputs, _bias_capacity(l, s))
    led.access("potentials", 2 * memory,
               _capacity(s, l.out_per_step, l.out_per_call // max(l.steps_per_call, 1)))
    led.access("inputs", events, s.fifo)


def _analog_part(led: _Ledger, l: LayerShape, c: dict[str, float], counts: Counts) -> None:
    s = led.s
    outputs, inputs = c["analog_outputs"], c["analog_inputs"]
    steps = outputs / l.out_per_step if l.out_per_step else 0.0  # (image, timestep) pairs
    if not s.static_input_once and 0 < steps < counts.timesteps:
        scale = counts.timesteps / steps  # the model computed a static image's layer once
        outputs, inputs, steps = outputs * scale, inputs * scale, steps * scale
    macs = outputs * l.fan_in
    led.counts.update(dense_macs=macs)
    led.macs(macs)
    if s.bias_adds == "always" or l.bias:
        led.adds(outputs)
    if l.kind == "conv":  # each input and output located; the kernel walked once per pass
        passes = inputs / l.in_per_call if s.buffers == "call" and l.in_per_call else steps
        led.adds(steps * (l.in_per_step + l.out_per_step) + passes * l.out_channels * l.kernel,
                 "addressing")
    elif s.dense_fc_addressing == "product":
        led.adds(steps * l.fan_in * l.out_channels, "addressing")
    else:
        led.adds(steps * (l.in_per_step + l.out_per_step), "addressing")
    led.access("weights", macs, _weight_capacity(l, s))
    if l.bias:
        led.access("bias", outputs, _bias_capacity(l, s))
    led.access("inputs", macs if l.kind == "conv" else inputs,
               _capacity(s, l.in_per_step, l.in_per_call))
    if not counts.spiking:  # an ANN writes every activation; an SNN's neurons write spikes
        led.access("outputs", outputs, _capacity(s, l.out_per_step, l.out_per_call))


def _weight_capacity(l: LayerShape, s: EnergySettings) -> int:
    return l.weights if s.param_buffer == "split" else l.weights + l.bias


def _bias_capacity(l: LayerShape, s: EnergySettings) -> int:
    return l.bias if s.param_buffer == "split" else l.weights + l.bias


def _neuron_part(led: _Ledger, n: NeuronShape, c: dict[str, float]) -> None:
    # a neuron emits z = 0 .. N: one packet per non-zero z, as one event
    spikes = c["spikes_value"] if led.s.counting == "value" else c["spikes_nonzero"]
    led.counts.update(updates=c["updates"], output_events=spikes,
                      output_spike_values=c["spikes_value"])
    led.adds(spikes)  # one reset per emitted spike event
    if n.leaky:
        led.macs(c["updates"])
    led.access("potentials", 2 * c["updates"], _capacity(led.s, n.per_step, n.per_call))
    led.access("outputs", spikes, led.s.fifo)


def _report(counts: Counts, settings: EnergySettings,
            ledgers: dict[str, _Ledger]) -> EnergyReport:
    breakdown = {t: sum(led.pj[t] for led in ledgers.values()) / PJ_PER_UJ for t in TERMS}
    return EnergyReport(settings, counts.images, sum(breakdown.values()), breakdown,
                        {name: dict(led.counts) for name, led in ledgers.items()},
                        {name: sum(led.pj.values()) / PJ_PER_UJ for name, led in ledgers.items()})


@MODELS.register("lemaire")
def lemaire(counts: Counts, settings: EnergySettings) -> EnergyReport:
    ledgers: dict[str, _Ledger] = {}
    for shape, c in counts.layers:
        led = ledgers[shape.name] = _Ledger(settings)
        led.counts["input"] = "analog" if c["analog_outputs"] else "spike"
        if c["spike_outputs"]:
            _spike_part(led, shape, c, counts)
        if c["analog_outputs"]:
            _analog_part(led, shape, c, counts)
    for shape, c in counts.neurons:
        led = ledgers[shape.name] = _Ledger(settings)
        led.counts["input"] = "neuron"
        _neuron_part(led, shape, c)
    return _report(counts, settings, ledgers)
