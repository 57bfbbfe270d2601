"""The `simple` energy model: bench's model before the Lemaire one, kept for old records.

Arithmetic from a preset (`horowitz45`: AC 0.1 pJ, MAC 3.2 pJ, 45 nm integer; `snn_convention`:
AC 0.9, MAC 4.6, the fp32 numbers common in SNN papers). Memory, 32-bit words priced by the
`horowitz_log` law: one weight read per synaptic op (AC or MAC) and one bias read per output
element, from a buffer of the layer's weights + one bias per output channel; one membrane read
+ write per neuron per timestep; one output write per spike (value counting: z writes) or
event, into a buffer of the neuron layer's size; an ANN writes every synaptic-layer output
element instead. Synaptic ops are exact receptive-field counts (conv(z, ones)); an input off the
spike grid (after average pooling) counts as accumulates of its unrounded value (value counting;
event and packet counting count its entries that round to a non-zero spike; packet counts a
spike input z as ceil(z / N_in)). No addressing,
input reads, FIFO or reset adds.
"""

from __future__ import annotations


from bench.energy.costs import PRESETS, sram_pj
from bench.energy.counting import Counts
from bench.energy.models import MODELS, PJ_PER_UJ, TERMS, EnergyReport, EnergySettings



def _word_pj(words: float) -> float:
    return sram_pj("horowitz_log", words, 32)


@MODELS.register("simple")
def simple(counts: Counts, settings: EnergySettings) -> EnergyReport:
    e_ac, e_mac = PRESETS[settings.preset]
    value = settings.counting == "value"
    pj: dict[str, dict[str, float]] = {}
    table: dict[str, dict[str, float]] = {}
    for l, c in counts.layers:
        analog = l.flagged_analog or not counts.spiking
        packet = c["exact_packet"] if settings.counting == "packet" else c["exact_nonzero"]
        ac = 0.0 if analog else (
            c["exact_value"] + c["offgrid_exact_value"] if value
            else packet + c["offgrid_exact_nonzero"])
        mac = (c["analog_outputs"] - c["offgrid_outputs"]) * l.fan_in
        outputs = c["spike_outputs"] + c["analog_outputs"]
        access = _word_pj(l.weights + l.out_channels)
        parts = dict.fromkeys(TERMS, 0.0)
        parts.update(ac=ac * e_ac, mac=mac * e_mac, weights=(ac + mac) * access,
                     bias=outputs * access)
        if not counts.spiking:
            parts["outputs"] = outputs * _word_pj(outputs)
        pj[l.name] = parts
        table[l.name] = {"input": "analog" if analog else "spike", "adds": ac, "macs": mac,
                         "weights_accesses": ac + mac, "bias_accesses": outputs}
    for n, c in counts.neurons:
        access = _word_pj(n.per_step)
        writes = c["spikes_value"] if value else c["spikes_nonzero"]
        parts = dict.fromkeys(TERMS, 0.0)
        parts.update(potentials=2 * c["updates"] * access, outputs=writes * access)
        pj[n.name] = parts
        table[n.name] = {"input": "neuron", "updates": c["updates"],
                         "potentials_accesses": 2 * c["updates"], "outputs_accesses": writes}
    breakdown = {t: sum(p[t] for p in pj.values()) / PJ_PER_UJ for t in TERMS}
    return EnergyReport(settings, counts.images, sum(breakdown.values()), breakdown, table,
                        {name: sum(p.values()) / PJ_PER_UJ for name, p in pj.items()})
