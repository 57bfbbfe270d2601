"""Per-layer counts from forward hooks: what the energy formulas need, measured on real inputs.

Works on any network made of torch Conv1d/2d/3d and Linear layers and spikingjelly neurons
(bench's MultiLevelIF included), single- or multi-step. Nothing is synchronised with the host
until `counts()`: each hook adds to a few float64 device sums.

What the model is (spiking, N, its spike grid, its analog-input layers, each neuron's levels)
is read from its contract (bench.models.contract_of), nowhere else.

A synaptic layer's input, per forward call, is one of:
- *analog*: the layer is a declared analog input (an SNN's first conv), or the model is not
  spiking, or the input is off the spike grid (z = N*y not an integer: an average-pooled
  input): dense multiply-accumulates;
- *spikes*: z = round(N*y) integers, counted as events: `nonzero` (one per z > 0) and `value`
  (sum of z), together with the exact synaptic operations each causes (`exact_*`: the input's
  count in every receptive field, i.e. conv(z, ones) summed, which is what spikingjelly's SynOp
  counter counts on binary inputs), and `packet` (sum of ceil(z / N_in), N_in the levels of the
  spike format entering the layer).
Each spike-input layer also keeps the histogram of its input values z (per image), and each
layer and neuron the sizes one forward call holds (for `buffers="call"`): what
`bench.energy.reprice` needs to price the counts again under any setting.
"""

from __future__ import annotations

import dataclasses
import math
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.models.contract import contract_of, is_neuron

_CONVS = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
# device accumulator slots of a synaptic layer (float64 each)
LAYER_SLOTS = ("spike_outputs", "analog_outputs", "analog_inputs", "events_nonzero",
               "events_value", "exact_nonzero", "exact_value", "offgrid_outputs",
               "offgrid_exact_nonzero", "offgrid_exact_value", "events_packet", "exact_packet")
# an input histogram separates z = 0 .. HIST_SPAN * N_in; larger values share one last bin
# (SEW sums grow by N per block: 32 N is more than a ResNet-34's 17 N)
HIST_SPAN = 32
RECORD_FORMAT = 1  # of Counts.to_record
NEURON_SLOTS = ("updates", "spikes_nonzero", "spikes_value")


@dataclass(frozen=True)
class LayerShape:
    """What the formulas need from a synaptic layer's geometry (per image, per timestep)."""

    name: str
    kind: str  # "conv" or "linear"
    fan_in: int  # inputs per output element: C_in/groups * prod(k), or in_features
    fanout_channels: int  # outputs channels one input feeds: C_out/groups, or out_features
    kernel: int  # prod(kernel_size) (1 for linear)
    kernel_ceil: int  # prod(ceil(k / stride)) (1 for linear)
    out_channels: int
    weights: int  # weight elements
    bias: int  # bias elements (a BatchNorm right after the layer folds into one per channel)
    has_bias_param: bool
    flagged_analog: bool
    in_per_step: int = 0  # input elements per image per timestep (seen at run time)
    out_per_step: int = 0
    levels_in: int = 1  # N_in: levels of the spike format entering (a sum: its neurons' N)
    # one forward call (spikingjelly's profiler sizes buffers so): input and output elements
    # (the largest call), and the timesteps it carries (multi-step layers; else 1)
    in_per_call: int = 0
    out_per_call: int = 0
    steps_per_call: int = 1


@dataclass(frozen=True)
class NeuronShape:
    name: str
    per_step: int  # neurons per image per timestep
    leaky: bool  # LIF: one leak multiply per neuron per timestep
    levels: int
    per_call: int = 0  # neurons of one forward call per timestep (batch included)


@dataclass
class Counts:
    """Per-image counts of one evaluation: the input of every energy model."""

    images: int
    levels: int  # N of the spike grid (1 = binary)
    spiking: bool
    timesteps: int  # the most timesteps any neuron ran
    layers: list[tuple[LayerShape, dict[str, float]]] = field(default_factory=list)
    neurons: list[tuple[NeuronShape, dict[str, float]]] = field(default_factory=list)
    # layer -> per image, count of input values z = 0, 1, ... HIST_SPAN * N_in, then of larger z
    hists: dict[str, list[float]] = field(default_factory=dict)

    def to_record(self) -> dict[str, Any]:
        """Everything the energy models read, as JSON (the record's `energy.measured`)."""
        def hist(name: str) -> dict[str, Any]:
            h = self.hists.get(name)
            if h is None:
                return {"hist": None, "hist_over": None}
            return {"hist": {str(z): v for z, v in enumerate(h[:-1]) if v}, "hist_over": h[-1]}
        return {"format": RECORD_FORMAT, "images": self.images, "levels": self.levels,
                "spiking": self.spiking, "timesteps": self.timesteps,
                "layers": [{**dataclasses.asdict(s), **c, **hist(s.name)} for s, c in self.layers],
                "neurons": [{**dataclasses.asdict(s), **c} for s, c in self.neurons]}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "Counts":
        """The inverse of `to_record` (KeyError/TypeError on a malformed record)."""
        out = cls(int(record["images"]), int(record["levels"]), bool(record["spiking"]),
                  int(record["timesteps"]))
        layer_fields = [f.name for f in dataclasses.fields(LayerShape)]
        neuron_fields = [f.name for f in dataclasses.fields(NeuronShape)]
        for entry in record["layers"]:
            shape = LayerShape(**{k: entry[k] for k in layer_fields})
            out.layers.append((shape, {k: float(entry[k]) for k in LAYER_SLOTS}))
            if entry.get("hist") is not None:
                top = HIST_SPAN * shape.levels_in + 1
                h = [0.0] * (top + 1)
                for z, v in entry["hist"].items():
                    h[int(z)] = float(v)
                h[top] = float(entry["hist_over"])
                out.hists[shape.name] = h
        for entry in record["neurons"]:
            shape = NeuronShape(**{k: entry[k] for k in neuron_fields})
            out.neurons.append((shape, {k: float(entry[k]) for k in NEURON_SLOTS}))
        return out


def grid_tolerance(dtype: torch.dtype) -> float:
    # |N*y - z| for y = z/N stored in `dtype`, z <= 32 (a residual sum at N=16): 16 eps
    return max(1e-3, 16 * torch.finfo(dtype).eps) if dtype.is_floating_point else 0.0


def is_synaptic(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear) or (
        isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) and not module.transposed)


def _layer_shape(name: str, m: nn.Module, folded_bn: bool, analog: bool) -> LayerShape:
    bias = m.bias is not None or folded_bn
    if isinstance(m, nn.Linear):
        return LayerShape(name, "linear", m.in_features, m.out_features, 1, 1, m.out_features,
                          m.weight.numel(), m.out_features if bias else 0, m.bias is not None,
                          analog)
    kernel = math.prod(m.kernel_size)
    ceil_k = math.prod(math.ceil(k / s) for k, s in zip(m.kernel_size, m.stride))
    return LayerShape(name, "conv", m.weight[0].numel(), m.out_channels // m.groups, kernel,
                      ceil_k, m.out_channels, m.weight.numel(), m.out_channels if bias else 0,
                      m.bias is not None, analog)


def _folded_bn(modules: list[tuple[str, nn.Module]], i: int) -> bool:
    """A BatchNorm registered right after a bias-free layer folds into its bias at inference."""
    m = modules[i][1]
    nxt = next((mod for _, mod in modules[i + 1:] if not list(mod.children())), None)
    channels = m.out_features if isinstance(m, nn.Linear) else m.out_channels
    return isinstance(nxt, _BATCHNORMS) and nxt.num_features == channels


def _conv_receptive_sum(module: nn.Module, maps: torch.Tensor) -> torch.Tensor:
    """Sum over output positions of the input inside each receptive field, per map.

    maps: [M, *spatial] inputs already summed over batch, time and channels. Summing channels
    first is exact: every input channel of a group feeds C_out/groups outputs with the same
    geometry, and padding (any mode) commutes with the channel sum.
    """
    k = module.weight.dim() - 2
    maps, padding = maps.unsqueeze(1), module.padding  # [M, 1, *spatial]
    if module.padding_mode != "zeros":
        maps = F.pad(maps, module._reversed_padding_repeated_twice, mode=module.padding_mode)
        padding = 0
    ones = maps.new_ones((1, 1, *module.kernel_size))
    out = _CONVS[k](maps, ones, None, module.stride, padding, module.dilation)
    return out.sum(dim=tuple(range(1, out.dim())), dtype=torch.float64)  # [M]


def exact_synaptic_ops(module: nn.Module, maps: torch.Tensor) -> torch.Tensor:
    """Synaptic ops caused by input maps [M, *spatial] (conv) or [M, in_features] (linear):
    float64 [M], no host sync."""
    if isinstance(module, nn.Linear):
        return maps.sum(1, dtype=torch.float64) * module.out_features
    return _conv_receptive_sum(module, maps) * (module.out_channels // module.groups)


def _kept_dims(module: nn.Module) -> int:
    # trailing dims of a layer input that its maps keep: the spatial dims of a conv input, the
    # features of a linear input (batch, time and channels are summed)
    return 1 if isinstance(module, nn.Linear) else module.weight.dim() - 2


def grid_maps(x: torch.Tensor, keep: int, scale: float, levels_in: int = 1,
              bounded: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(off-grid flag, maps [4, *x.shape[-keep:]], histogram) of a layer input y: the flag is 1.0
    when some z = scale*y is not an integer (within the grid tolerance); the maps hold, per
    position of the `keep` trailing dims summed over the others, the non-zero counts, the rounded
    values z, the raw values scale*y and the packets ceil(|z| / levels_in) (`bounded`: z <= N_in
    is known, a neuron's own output, so packets are the non-zero counts); the histogram counts
    |z| = 0 .. HIST_SPAN * levels_in, then larger |z| in one last bin.

    Written for few passes over the input (each is a full-size read on image-sized layers): one
    scratch copy z, its rounding, and in-place reductions; per-position sums stay small
    integers, exact in float32."""
    lead = tuple(range(x.dim() - keep))
    z = x.float() * scale
    raw = z.sum(lead)
    zr = torch.round(z)
    off = (z.sub_(zr).abs_().amax() > grid_tolerance(x.dtype)).to(torch.float64)
    values = zr.sum(lead)
    zr.abs_()
    hist = _histogram(zr, HIST_SPAN * levels_in + 1)
    packets = values if levels_in == 1 else None  # binary: a packet per unit (signed, as values)
    if packets is None and not bounded:
        packets = torch.ceil(zr / levels_in).sum(lead)
    nonzero = zr.clamp_(max=1).sum(lead)
    return off, torch.stack([nonzero, values, raw, nonzero if packets is None else packets]), hist


def _histogram(z: torch.Tensor, top: int) -> torch.Tensor:
    """float64 counts of the integers z >= 0 in bins 0 .. top-1, and of z >= top in bin `top`.

    On the CPU bincount on int32 is the cheapest pass; on an accelerator bincount reads the
    largest value back to the host (a sync per layer), histc with a fixed range does not."""
    if z.device.type == "cpu":
        zi = z.to(torch.int32).clamp_(0, top)  # NaN -> a negative int: clamped into bin 0
        return torch.bincount(zi.flatten(), minlength=top + 1).to(torch.float64)
    return torch.histc(z.clamp(max=top), bins=top + 1, min=-0.5,
                       max=top + 0.5).to(torch.float64)


def _images(x: Any) -> int:
    # model input: [B, ...] images or [T, B, C, H, W] frames (time-first)
    if not torch.is_tensor(x) or x.dim() == 0:
        return 0
    return int(x.shape[1]) if x.dim() == 5 else int(x.shape[0])


def _where(t: torch.Tensor) -> tuple[int, int]:
    """Where t's elements start in memory (a view and its source share it; inference-mode views
    keep no `_base`)."""
    return t.untyped_storage().data_ptr(), t.storage_offset()


@dataclass
class _Spikes:
    """A neuron's output within one forward pass, and its grid maps once a layer computed them:
    the layers reading the same output next (a block's first conv and its downsampling
    shortcut) reduce it once."""

    ref: weakref.ref  # the output (not kept alive: while it lives its memory is not reused)
    # its in-place version then: an in-place change since voids the maps (inference tensors have
    # no version counter: under inference_mode such a change goes unseen; bench's models and
    # spikingjelly's make none between a neuron and the layers reading it)
    version: int
    numel: int
    levels: int  # the neuron's N: its z are 0 .. N
    keep: int = 0
    off: torch.Tensor | None = None
    maps: torch.Tensor | None = None
    hist: torch.Tensor | None = None

    def holds(self, x: torch.Tensor) -> bool:
        """Whether x is the output's elements in the same order."""
        out = self.ref()
        return (out is not None and _where(out) == _where(x) and _version(out) == self.version
                and x.numel() == self.numel and x.is_contiguous() and out.is_contiguous())


def _version(t: torch.Tensor) -> int:
    return -1 if t.is_inference() else t._version


def _add(acc: dict[str, torch.Tensor], name: str, values: torch.Tensor) -> None:
    """acc[name] += values, in float64 (the first call keeps a float64 copy)."""
    if name in acc:
        acc[name].add_(values)
    else:
        acc[name] = values.to(torch.float64, copy=True)


def _per_step(module: nn.Module, out: torch.Tensor) -> int:
    lead = 2 if getattr(module, "step_mode", "s") == "m" and out.dim() > 2 else 1
    return math.prod(out.shape[lead:])


def _steps_per_call(module: nn.Module, t: torch.Tensor) -> int:
    # timesteps one call carries, as spikingjelly's profiler reads them: a multi-step module's
    # leading dim, else 1
    return int(t.shape[0]) if getattr(module, "step_mode", "s") == "m" and t.dim() > 1 else 1


def _spatial_per_step(module: nn.Module, t: torch.Tensor) -> int:
    # elements per image per timestep of a conv/linear tensor: the trailing C, *spatial dims
    k = 0 if isinstance(module, nn.Linear) else module.weight.dim() - 2
    return math.prod(t.shape[t.dim() - k - 1:])


class EnergyCounter:
    """Forward hooks counting what `bench.energy` prices; `active` pauses them, `remove()` ends.

    Per forward call a hook only reduces what it must see on the device: a synaptic layer its
    input's per-position maps (and whether they are on the spike grid), a neuron its non-zero
    count and value sum; sizes are host integers. The receptive-field sums, linear in the maps,
    run once per `counts()` on the maps summed over calls (float64: exact for any epoch).
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        modules = list(model.named_modules())
        self.layer_modules = OrderedDict((n, m) for n, m in modules if is_synaptic(m))
        self.neuron_modules = OrderedDict((n, m) for n, m in modules if is_neuron(m))
        self.contract = contract_of(model)
        # an ANN has no levels: 0
        self.levels = 0 if self.contract.N is None else self.contract.N
        self.spiking = self.contract.spiking
        # the input grid of synaptic layers: z = y * scale (N, or N / theta for z theta / N)
        self.scale = float(self.contract.spike_scale or 1)
        # each neuron's declared levels and spike grid (ContractError naming an undeclared one)
        self._points = {n: self.contract.point(m, n) for n, m in self.neuron_modules.items()}
        index = {n: i for i, (n, _) in enumerate(modules)}
        self._shapes = {n: _layer_shape(n, m, _folded_bn(modules, index[n]),
                                        self.contract.is_analog(m))
                        for n, m in self.layer_modules.items()}
        self.active = True
        self.reset()
        self._handles = [model.register_forward_pre_hook(self._count_images)]
        self._handles += [m.register_forward_hook(self._layer_hook(n))
                          for n, m in self.layer_modules.items()]
        self._handles += [m.register_forward_hook(self._neuron_hook(n))
                          for n, m in self.neuron_modules.items()]

    def reset(self) -> None:
        self.images = 0
        # layer -> host totals [output elements, input elements] of every call
        self._sizes: dict[str, list[float]] = {}
        # layer -> device float64 sums over calls: maps [4, *spatial] of all spike-counted
        # calls, the same of off-grid calls only, the output elements of off-grid calls, and
        # the input histogram of on-grid calls
        self._maps: dict[str, torch.Tensor] = {}
        self._maps_off: dict[str, torch.Tensor] = {}
        self._off_outputs: dict[str, torch.Tensor] = {}
        self._hists: dict[str, torch.Tensor] = {}
        self._levels_in: dict[str, int] = {}  # layer -> N_in, from its first call
        # layer -> (input, output elements) of its largest call and that call's timesteps
        self._calls: dict[str, tuple[int, int, int]] = {}
        self._neuron_calls: dict[str, int] = {}  # neuron -> neurons per call per timestep
        self._neuron_updates: dict[str, int] = {}  # neuron -> host total of output elements
        self._neuron_acc: dict[str, torch.Tensor] = {}  # neuron -> device [non-zero, value]
        self._geometry: dict[str, tuple[int, int]] = {}  # layer -> (in, out) per image-step
        self._neuron_geometry: dict[str, int] = {}
        self._spikes: dict[tuple[int, int], _Spikes] = {}

    def _count_images(self, _module: nn.Module, args: tuple) -> None:
        if self.active and args:
            self.images += _images(args[0])
            self._spikes.clear()  # a new forward pass

    def _layer_hook(self, name: str):
        shape = self._shapes[name]

        def hook(module: nn.Module, args: tuple, out: torch.Tensor) -> None:
            if not self.active or not args or not torch.is_tensor(args[0]):
                return
            x = args[0].detach()
            self._geometry[name] = (_spatial_per_step(module, x), _spatial_per_step(module, out))
            call = self._calls.get(name, (0, 0, 1))
            self._calls[name] = (max(call[0], x.numel()), max(call[1], out.numel()),
                                 _steps_per_call(module, x))
            sizes = self._sizes.setdefault(name, [0.0, 0.0])
            sizes[0] += out.numel()
            sizes[1] += x.numel()
            if shape.flagged_analog or not self.spiking:
                return  # dense: the sizes say it all
            with torch.no_grad():
                keep = _kept_dims(module)
                seen = self._spikes.get(_where(x))
                if seen is None or not seen.holds(x):  # a sum, or off the grid: analog
                    levels = self._levels_in.setdefault(name, self.levels or 1)
                    off, maps, hist = grid_maps(x, keep, self.scale, levels)
                else:  # a neuron's output: reduced by the first layer that read it
                    levels = self._levels_in.setdefault(name, seen.levels)
                    if seen.maps is None or seen.keep != keep \
                            or seen.maps.shape[1:] != x.shape[x.dim() - keep:]:
                        seen.off, seen.maps, seen.hist = grid_maps(
                            x, keep, self.scale, seen.levels, True)
                        seen.keep = keep
                    off, maps, hist = seen.off, seen.maps, seen.hist
                if hist.numel() != HIST_SPAN * levels + 2:  # N_in changed: keep the first's
                    hist = _histogram(torch.round(x.float().abs() * self.scale),
                                      HIST_SPAN * levels + 1)
                _add(self._maps, name, maps)
                _add(self._maps_off, name, maps * off)
                _add(self._off_outputs, name, off * out.numel())
                _add(self._hists, name, hist * (1 - off))
        return hook

    def _neuron_hook(self, name: str):
        def hook(module: nn.Module, _args: tuple, out: Any) -> None:
            out = out[0] if isinstance(out, (tuple, list)) and out else out
            if not self.active or not torch.is_tensor(out):
                return
            scale = self._points[name].spike_scale
            with torch.no_grad():
                y = out.detach()
                # per-position sums over the leading dims stay small, exact after rounding
                values = torch.round(y.float().sum(tuple(range(y.dim() - 1))) * scale)
                _add(self._neuron_acc, name, torch.stack([
                    torch.count_nonzero(y).to(torch.float64), values.sum(dtype=torch.float64)]))
            if self.spiking:
                self._spikes[_where(out)] = _Spikes(weakref.ref(out), _version(out), out.numel(),
                                                    self._points[name].N)
            self._neuron_updates[name] = self._neuron_updates.get(name, 0) + out.numel()
            self._neuron_geometry[name] = _per_step(module, out)
            self._neuron_calls[name] = max(self._neuron_calls.get(name, 0),
                                           out.numel() // _steps_per_call(module, out))
        return hook

    def _layer_values(self, name: str, device: torch.device) -> torch.Tensor:
        """The LAYER_SLOTS sums of a layer, float64 on the device (no host sync)."""
        module, (n_out, n_in) = self.layer_modules[name], self._sizes[name]
        if name not in self._maps:  # dense every call
            values = [0.0] * len(LAYER_SLOTS)
            values[1:3] = n_out, n_in
            return torch.tensor(values, dtype=torch.float64, device=device)
        maps_off = self._maps_off[name]
        maps_on = self._maps[name] - maps_off
        events = maps_on.sum(tuple(range(1, maps_on.dim())))
        exact_on = exact_synaptic_ops(module, maps_on)  # [non-zero, values, raw, packets]
        exact_off = exact_synaptic_ops(module, maps_off)
        off_out = self._off_outputs[name]
        return torch.stack([n_out - off_out, off_out, off_out * (n_in / n_out), events[0],
                            events[1], exact_on[0], exact_on[1], off_out, exact_off[0],
                            exact_off[2], events[3], exact_on[3]])

    def counts(self) -> Counts:
        """Per-image counts of everything that ran since `reset()` (one host sync)."""
        layers = [n for n in self.layer_modules if n in self._sizes]
        neurons = [n for n in self.neuron_modules if n in self._neuron_acc]
        device = next((t.device for t in self._maps.values()), torch.device("cpu"))
        hists = [n for n in layers if n in self._hists]
        parts = [self._layer_values(n, device) for n in layers] + [self._neuron_acc[n].to(device)
                                                                    for n in neurons]
        parts += [self._hists[n].to(device) for n in hists]
        flat = torch.cat(parts).tolist() if parts else []  # one sync
        per = 1.0 / self.images if self.images else 0.0
        out = Counts(self.images, self.levels, self.spiking, 1)
        at = len(layers) * len(LAYER_SLOTS)
        for i, name in enumerate(neurons):
            nonzero, value = flat[at + 2 * i: at + 2 * i + 2]
            values = dict(zip(NEURON_SLOTS, (v * per for v in
                                              (self._neuron_updates[name], nonzero, value))))
            module, per_step = self.neuron_modules[name], self._neuron_geometry[name]
            leaky = hasattr(module, "tau") or hasattr(module, "decay")
            out.neurons.append((NeuronShape(name, per_step, leaky, self._points[name].N,
                                            self._neuron_calls[name]), values))
            if per_step:
                out.timesteps = max(out.timesteps, round(values["updates"] / per_step))
        for i, name in enumerate(layers):
            geo_in, geo_out = self._geometry[name]
            in_call, out_call, steps = self._calls[name]
            shape = dataclasses.replace(
                self._shapes[name], in_per_step=geo_in, out_per_step=geo_out,
                levels_in=self._levels_in.get(name, self.levels or 1), in_per_call=in_call,
                out_per_call=out_call, steps_per_call=steps)
            slots = flat[i * len(LAYER_SLOTS):(i + 1) * len(LAYER_SLOTS)]
            out.layers.append((shape, dict(zip(LAYER_SLOTS, (v * per for v in slots)))))
        at += 2 * len(neurons)
        for name in hists:
            size = self._hists[name].numel()
            out.hists[name] = [v * per for v in flat[at:at + size]]
            at += size
        return out

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __enter__(self) -> "EnergyCounter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()
