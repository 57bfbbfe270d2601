"""Energy per image: synaptic operations and memory accesses (paper.md, "Activity and energy").

Three layers, each usable alone:
- constants: `EnergyPreset` (E_AC, E_MAC, SRAM access energy by buffer size); presets
  `horowitz45` and `snn_convention`;
- the pure model: `LayerStats` / `NeuronStats` (per-image counts) -> `energy_breakdown(...)`;
- the counting: `attach_energy_hooks(model)` (forward hooks, no Lightning) and `EnergyProbe`, a
  Lightning callback that runs those hooks during validation and test only.

Counting rules (time-first tensors; inputs of spiking layers are in y units, z = N * y):
- A synaptic layer (Conv1/2/3d, Linear) whose input is spikes costs accumulates (AC):
  Linear: sum(s) * out_features; Conv: C_out/groups * sum over output positions of the input
  counts s in the receptive field, i.e. conv(s, ones) summed, exact for any padding and stride.
  s = z (value-weighted: a spike of value k is k accumulates) or s = [z > 0] (event-based: one
  event per non-zero spike, whose integer weight costs one accumulate).
- A layer with `analog_input = True` (an SNN's first conv, every layer of an ANN; every layer of a
  model whose `is_spiking` is False) costs dense multiply-accumulates: output elements x fan-in.
- Values off the spike grid are not rounded: the input of the layer after global average pooling
  is an average of spikes (N * y = mean spike count); it is counted as accumulates of that
  averaged value (value-weighted) or one event per non-zero average (event-based), as if the
  pooling were folded into the next layer's accumulation.

Memory-aware model after Lemaire et al. (ICONIP 2022, "An analytical estimation of spiking neural
networks energy efficiency"), all words 32-bit, one SRAM access per word:
- weights: one weight read per synaptic operation (AC or MAC), from the layer's weight buffer;
- bias: one read per output element of every synaptic layer per timestep (BN folds into a bias at
  inference, so every neuron reads one), from the same buffer;
- membrane: one read + one write per neuron per timestep, from the layer's potential buffer
  (one word per neuron);
- outputs: one write per emitted spike (value-weighted: z writes) or event (event-based: one
  write per z > 0) into a buffer of the neuron layer's size. A network without spiking neurons
  (ANN) writes every synaptic-layer output element once instead.
Not modelled: input reads, addressing arithmetic, residual sums, pooling, DRAM.

All energies are per image; the breakdown is in microjoules.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from spikingjelly.activation_based.neuron import BaseNode, SimpleBaseNode
from torch import nn

COUNTINGS = ("value", "event")
_PJ_PER_UJ = 1e6
_CONVS = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}

# Horowitz, "Computing's energy problem", ISSCC 2014, 45 nm, 0.9 V: 64-bit SRAM read energy by
# array size. One 32-bit word access is charged one such read (the row read dominates, not the
# width; spikingjelly's Lemaire model charges the same).
HOROWITZ_SRAM_PJ = ((8 * 1024, 10.0), (32 * 1024, 20.0), (1024 * 1024, 100.0))


@dataclass(frozen=True)
class EnergyPreset:
    """Energy constants of one technology reading: arithmetic in pJ, SRAM access by buffer size.

    SRAM access energy (pJ) of a buffer of S bytes, piecewise linear in log2(S) through
    `sram_pj` points (S_i, E_i):  E(S) = E_i + (E_{i+1} - E_i) * log2(S / S_i) / log2(S_{i+1} / S_i)
    for S_i <= S <= S_{i+1}; E(S) = E_0 below the first point (no smaller measurement; the first
    segment extrapolated would reach 0 pJ at 2 KB) and the last segment extended above the last
    point (Horowitz: +16 pJ per doubling past 1 MB; a ResNet layer holds up to ~9 MB of weights).
    """

    name: str
    e_ac_pj: float  # one accumulate (add)
    e_mac_pj: float  # one multiply-accumulate (mult + add)
    word_bytes: int = 4  # weights, potentials, biases and spikes are 32-bit words
    sram_pj: tuple[tuple[int, float], ...] = HOROWITZ_SRAM_PJ

    def sram_access_pj(self, buffer_bytes: float) -> float:
        """Energy of one word access in a buffer of `buffer_bytes` bytes (formula above)."""
        points = self.sram_pj
        if buffer_bytes <= points[0][0]:
            return points[0][1]
        segments = list(zip(points, points[1:]))
        (s0, e0), (s1, e1) = next((seg for seg in segments if buffer_bytes <= seg[1][0]),
                                  segments[-1])
        return e0 + (e1 - e0) * math.log2(buffer_bytes / s0) / math.log2(s1 / s0)

    def word_access_pj(self, words: float) -> float:
        return self.sram_access_pj(words * self.word_bytes)


# 45 nm integer arithmetic (Horowitz 2014): 32-bit int add 0.1 pJ, 32-bit int mult 3.1 pJ, so
# E_AC = 0.1 and E_MAC = 3.1 + 0.1 = 3.2. Integer, because spikes and quantized weights are
# integers on the accelerators the memory model describes; the fp32 reading of the same table
# (add 0.9, mult 3.7) is what the second preset uses.
horowitz45 = EnergyPreset("horowitz45", e_ac_pj=0.1, e_mac_pj=3.2)
# The common SNN-literature numbers: fp32 add 0.9 pJ, fp32 MAC 4.6 pJ (= 3.7 mult + 0.9 add,
# the same Horowitz table). Same SRAM model, so the two presets differ only in arithmetic.
snn_convention = EnergyPreset("snn_convention", e_ac_pj=0.9, e_mac_pj=4.6)
PRESETS: dict[str, EnergyPreset] = {p.name: p for p in (horowitz45, snn_convention)}


@dataclass(frozen=True)
class LayerStats:
    """One synaptic layer's counts per image (all timesteps)."""

    name: str
    analog: bool  # True: dense MACs; False: spike-driven ACs
    ac_value: float  # accumulates, value-weighted counting
    ac_event: float  # accumulates, event-based counting
    mac: float  # dense multiply-accumulates
    outputs: float  # output elements (one bias read each)
    weight_words: int  # weights + one bias per output channel: the buffer read per operation


@dataclass(frozen=True)
class NeuronStats:
    """One spiking neuron layer's counts per image (all timesteps)."""

    name: str
    neurons: int  # neurons per image and timestep: the potential / output buffer in words
    updates: float  # (neuron, timestep) pairs: membrane read + write each
    spikes: float  # sum of spike values z
    events: float  # count of z > 0


def check_choice(preset: str | EnergyPreset, counting: str) -> EnergyPreset:
    """The preset object; ValueError naming a bad preset or counting."""
    if counting not in COUNTINGS:
        raise ValueError(f"energy counting {counting!r} is unknown; "
                         f"allowed: {', '.join(COUNTINGS)}")
    if isinstance(preset, EnergyPreset):
        return preset
    if preset not in PRESETS:
        raise ValueError(f"energy preset {preset!r} is unknown; allowed: {', '.join(PRESETS)}")
    return PRESETS[preset]


def _layer_pj(layer: LayerStats, p: EnergyPreset, counting: str) -> dict[str, float]:
    ac = 0.0 if layer.analog else (layer.ac_value if counting == "value" else layer.ac_event)
    access = p.word_access_pj(layer.weight_words)
    return {"ac": ac, "mac": layer.mac, "arith": ac * p.e_ac_pj + layer.mac * p.e_mac_pj,
            "weights": (ac + layer.mac) * access, "bias": layer.outputs * access}


def _neuron_pj(neuron: NeuronStats, p: EnergyPreset, counting: str) -> dict[str, float]:
    access = p.word_access_pj(neuron.neurons)
    writes = neuron.spikes if counting == "value" else neuron.events
    return {"membrane": 2 * neuron.updates * access, "outputs": writes * access}


def _ann_output_pj(layers: list[LayerStats], p: EnergyPreset) -> float:
    # no spiking neuron: every activation is written, one word each, into a layer-sized buffer
    return sum(l.outputs * p.word_access_pj(l.outputs) for l in layers)


def _total_pj(layers: list[LayerStats], neurons: list[NeuronStats], p: EnergyPreset,
              counting: str) -> tuple[list[dict[str, float]], dict[str, float]]:
    per_layer = [_layer_pj(l, p, counting) for l in layers]
    per_neuron = [_neuron_pj(n, p, counting) for n in neurons]
    parts = {"weights": sum(d["weights"] for d in per_layer),
             "membrane": sum(d["membrane"] for d in per_neuron),
             "bias": sum(d["bias"] for d in per_layer),
             "outputs": (sum(d["outputs"] for d in per_neuron) if neurons
                         else _ann_output_pj(layers, p))}
    return per_layer, parts


def energy_breakdown(layer_stats: Iterable[LayerStats], neuron_stats: Iterable[NeuronStats],
                     preset: str | EnergyPreset = "horowitz45",
                     counting: str = "value") -> dict[str, Any]:
    """Energy per image in microjoules (keys are the run record's `energy` field).

    per_layer[i]["uj"] is the layer's arithmetic plus its weight and bias reads; membrane and
    output accesses belong to neurons and appear only in memory_parts_uj_per_image.
    """
    p = check_choice(preset, counting)
    layers, neurons = list(layer_stats), list(neuron_stats)
    per_layer, parts = _total_pj(layers, neurons, p, counting)
    arith = sum(d["arith"] for d in per_layer)
    memory = sum(parts.values())
    presets_total = {}
    for name, q in PRESETS.items():
        q_layer, q_parts = _total_pj(layers, neurons, q, counting)
        q_pj = sum(d["arith"] for d in q_layer) + sum(q_parts.values())
        presets_total[name] = q_pj / _PJ_PER_UJ
    return {
        "preset": p.name,
        "counting": counting,
        "ac_per_image": sum(d["ac"] for d in per_layer),
        "mac_per_image": sum(d["mac"] for d in per_layer),
        "arith_uj_per_image": arith / _PJ_PER_UJ,
        "memory_uj_per_image": memory / _PJ_PER_UJ,
        "total_uj_per_image": (arith + memory) / _PJ_PER_UJ,
        "memory_parts_uj_per_image": {k: v / _PJ_PER_UJ for k, v in parts.items()},
        "per_layer": [{"layer": l.name, "input": "analog" if l.analog else "spike",
                       "ac": d["ac"], "mac": d["mac"],
                       "uj": (d["arith"] + d["weights"] + d["bias"]) / _PJ_PER_UJ}
                      for l, d in zip(layers, per_layer)],
        "presets_total_uj_per_image": presets_total,
    }


# ---------------------------------------------------------------------------------- counting


def _grid_tolerance(dtype: torch.dtype) -> float:
    # |N*y - z| for y = z/N stored in `dtype`, z <= 32 (a residual sum at N=16): 16 eps
    return max(1e-3, 16 * torch.finfo(dtype).eps) if dtype.is_floating_point else 0.0


def spike_values(y: torch.Tensor, levels: int) -> torch.Tensor:
    """Spike counts z = round(N * y), float32; values off the grid (averages) stay unrounded."""
    z = y.float() * levels
    zr = torch.round(z)
    return torch.where((z - zr).abs_() <= _grid_tolerance(y.dtype), zr, z)


def _synaptic(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear) or (
        isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) and not module.transposed)


def _conv_receptive_sum(module: nn.Module, maps: torch.Tensor) -> torch.Tensor:
    """sum over output positions of the input in the receptive field, per map.

    maps: [M, *spatial] input counts already summed over batch, time and channels. Summing the
    channels first is exact: every input channel of a group feeds the same C_out/groups outputs
    with the same geometry, and padding (any mode) commutes with the channel sum.
    """
    k = module.weight.dim() - 2
    maps, padding = maps.unsqueeze(1), module.padding  # [M, 1, *spatial]
    if module.padding_mode != "zeros":
        maps = F.pad(maps, module._reversed_padding_repeated_twice, mode=module.padding_mode)
        padding = 0
    ones = maps.new_ones((1, 1, *module.kernel_size))
    out = _CONVS[k](maps, ones, None, module.stride, padding, module.dilation)
    return out.sum(dim=tuple(range(1, out.dim())), dtype=torch.float64)  # [M]


def synaptic_ops(module: nn.Module, x: torch.Tensor, levels: int) -> torch.Tensor:
    """Accumulates of a spiking-input layer: float64 [value-weighted, event-based], no host sync.

    x: the layer's input in y units, [..., C, *spatial] for a conv (any leading batch/time dims),
    [..., in_features] for a linear.
    """
    z = spike_values(x, levels)
    events = (z > 0).float()
    if isinstance(module, nn.Linear):
        feats = z.shape[-1]  # sum leading dims first: partial sums stay exact in float32
        sums = torch.stack([z.reshape(-1, feats).sum(0), events.reshape(-1, feats).sum(0)])
        return sums.sum(1, dtype=torch.float64) * module.out_features
    k = module.weight.dim() - 2
    lead = tuple(range(z.dim() - k))  # batch, time and channel dims
    maps = torch.stack([z.sum(lead), events.sum(lead)])  # [2, *spatial]
    return _conv_receptive_sum(module, maps) * (module.out_channels // module.groups)


def dense_macs(module: nn.Module, out: torch.Tensor) -> int:
    """Multiply-accumulates of a dense (analog-input) layer: output elements x fan-in."""
    fan_in = module.in_features if isinstance(module, nn.Linear) else module.weight[0].numel()
    return out.numel() * fan_in


def _images(x: Any) -> int:
    # model input: [B, ...] images or [T, B, C, H, W] frames (time-first)
    if not torch.is_tensor(x) or x.dim() == 0:
        return 0
    return int(x.shape[1]) if x.dim() == 5 else int(x.shape[0])


def _model_levels(model: nn.Module, neurons: Mapping[str, nn.Module]) -> tuple[int, bool]:
    """(N, is_spiking): the model's attributes, else read from its neurons (IFNode: N=1)."""
    levels = getattr(model, "levels", None)
    if levels is None:
        levels = max((getattr(m, "levels", 1) for m in neurons.values()), default=0)
    spiking = getattr(model, "is_spiking", None)
    if spiking is None:
        spiking = bool(neurons) and levels > 0
    return int(levels), bool(spiking)


class EnergyHooks:
    """Forward hooks on a model's synaptic layers and spiking neurons (see `attach_energy_hooks`).

    Counts stay on the model's device as float64 tensors (one [2] per module) and python ints from
    shapes; nothing is synchronised until `stats()`. Set `active = False` to pause counting.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.layers = OrderedDict((n, m) for n, m in model.named_modules() if _synaptic(m))
        self.neurons = OrderedDict((n, m) for n, m in model.named_modules()
                                   if isinstance(m, (SimpleBaseNode, BaseNode)))
        self.levels, self.is_spiking = _model_levels(model, self.neurons)
        self.active = True
        self.reset()
        self._handles = [model.register_forward_pre_hook(self._count_images)]
        self._handles += [m.register_forward_hook(self._layer_hook(n))
                          for n, m in self.layers.items()]
        self._handles += [m.register_forward_hook(self._neuron_hook(n))
                          for n, m in self.neurons.items()]

    def reset(self) -> None:
        self.images = 0
        self._ops: dict[str, torch.Tensor] = {}  # name -> [ac_value, ac_event] or [spikes, events]
        # layer -> [mac, outputs]; neuron -> [neurons per timestep, updates]
        self._ints: dict[str, list[int]] = {}

    def _add(self, name: str, counts: torch.Tensor) -> None:
        acc = self._ops.get(name)
        if acc is None:
            self._ops[name] = counts
        else:
            acc.add_(counts)

    def _count_images(self, _module: nn.Module, args: tuple) -> None:
        if self.active and args:
            self.images += _images(args[0])

    def _layer_hook(self, name: str):
        def hook(module: nn.Module, args: tuple, out: torch.Tensor) -> None:
            if not self.active:
                return
            ints = self._ints.setdefault(name, [0, 0])
            ints[1] += out.numel()
            if getattr(module, "analog_input", False) or not self.is_spiking:
                ints[0] += dense_macs(module, out)
                return
            with torch.no_grad():
                self._add(name, synaptic_ops(module, args[0].detach(), self.levels))
        return hook

    def _neuron_hook(self, name: str):
        def hook(module: nn.Module, _args: tuple, out: torch.Tensor) -> None:
            if not self.active or not torch.is_tensor(out):
                return
            with torch.no_grad():
                z = spike_values(out.detach(), int(getattr(module, "levels", 1)))
                self._add(name, torch.stack([z.sum(dtype=torch.float64),
                                             (z > 0).sum().to(torch.float64)]))
            per_step = out.shape[2:] if getattr(module, "step_mode", "s") == "m" else out.shape[1:]
            ints = self._ints.setdefault(name, [0, 0])
            ints[0] = max(ints[0], math.prod(per_step))
            ints[1] += out.numel()
        return hook

    def stats(self) -> tuple[list[LayerStats], list[NeuronStats]]:
        """Per-image counts of the modules that ran since `reset()` (one host sync)."""
        if not self.images:
            return [], []
        names = list(self._ops)
        host = torch.stack([self._ops[n] for n in names]).tolist() if names else []
        ops = dict(zip(names, host))
        per = 1.0 / self.images
        layers = []
        for name, m in self.layers.items():
            if name in self._ints:
                ac_value, ac_event = ops.get(name, (0.0, 0.0))
                mac, outputs = self._ints[name]
                out_ch = m.out_features if isinstance(m, nn.Linear) else m.out_channels
                layers.append(LayerStats(name, name not in ops, ac_value * per, ac_event * per,
                                         mac * per, outputs * per, m.weight.numel() + out_ch))
        neurons = [NeuronStats(name, self._ints[name][0], self._ints[name][1] * per,
                               ops[name][0] * per, ops[name][1] * per)
                   for name in self.neurons if name in self._ints]
        return layers, neurons

    def breakdown(self, preset: str | EnergyPreset = "horowitz45",
                  counting: str = "value") -> dict[str, Any]:
        return energy_breakdown(*self.stats(), preset=preset, counting=counting)

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __enter__(self) -> "EnergyHooks":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()


def attach_energy_hooks(model: nn.Module) -> EnergyHooks:
    """Count synaptic ops and spikes of every forward of `model` until `.remove()`.

    Works without Lightning:  h = attach_energy_hooks(net); net(x); h.breakdown("horowitz45",
    "value"); h.remove()  (or `with attach_energy_hooks(net) as h:`). N and spiking-ness come
    from `model.levels` / `model.is_spiking`, else from its spikingjelly neurons.
    """
    return EnergyHooks(model)


class EnergyProbe(pl.Callback):
    """Energy per validation / test image, logged as `{split}/energy_uj_per_image`.

    Hooks `pl_module.model` on setup, counts only during validation and test epochs (not
    training, not the sanity check), keeps the full breakdown in `self.last[split]`.
    """

    def __init__(self, preset: str = "horowitz45", counting: str = "value") -> None:
        check_choice(preset, counting)
        self.preset, self.counting = preset, counting
        self.last: dict[str, dict[str, Any]] = {}
        self._hooks: EnergyHooks | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._hooks is None:
            self._hooks = attach_energy_hooks(pl_module.model)
            self._hooks.active = False

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._hooks is not None:
            self._hooks.remove()
            self._hooks = None

    def _start(self, trainer: pl.Trainer) -> None:
        if self._hooks is not None and not trainer.sanity_checking:
            self._hooks.reset()
            self._hooks.active = True

    def _end(self, split: str, pl_module: pl.LightningModule) -> None:
        if self._hooks is None or not self._hooks.active:
            return
        self._hooks.active = False
        self.last[split] = self._hooks.breakdown(self.preset, self.counting)
        self._hooks.reset()
        pl_module.log(f"{split}/energy_uj_per_image", self.last[split]["total_uj_per_image"])

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start(trainer)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._end("val", pl_module)

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start(trainer)

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._end("test", pl_module)

    def state_dict(self) -> dict[str, Any]:
        return {"preset": self.preset, "counting": self.counting, "last": self.last}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.last = dict(state_dict.get("last", {}))
