"""Energy: counting hooks by hand, the Lemaire model against spikingjelly's profiler used as-is,
hand-computed multi-level totals, the `simple` model kept from before, the Lightning probe."""

from __future__ import annotations

import copy
import math

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from spikingjelly.activation_based import functional, layer, neuron
from spikingjelly.activation_based.op_counter import DispatchCounterMode, MACCounter, SynOpCounter
from spikingjelly.activation_based.op_counter.analytical_energy import (LemaireEnergyConfig,
                                                                         estimate_lemaire_energy)
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from bench.energy import EnergyCounter, EnergySettingError, EnergySettings, estimate, price
from bench.energy.costs import sram_pj
from bench.energy.probe import EnergyProbe
from bench.models import build_model, declare
from bench.neurons import MultiLevelIF, NeuronSettings

# spike counts z of image 0 (image 1 is all zeros); N = 4, so the input is y = z / 4
Z = [[0, 1, 0, 2],
     [3, 0, 0, 0],
     [0, 0, 4, 0],
     [1, 0, 0, 0]]


class TinySNN(nn.Module):
    """conv 1->2 3x3 pad 1 on 4x4 (spiking input) -> MultiLevelIF(N=4) -> linear 32->3."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1, bias=False)
        self.sn = MultiLevelIF(N=4, step_mode="m")
        self.fc = nn.Linear(32, 3)
        with torch.no_grad():  # centre taps only: channel 0 passes y, channel 1 passes y / 2
            self.conv.weight.zero_()
            self.conv.weight[0, 0, 1, 1], self.conv.weight[1, 0, 1, 1] = 1.0, 0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [T, B, 1, 4, 4]
        h = self.conv(x.flatten(0, 1)).unflatten(0, x.shape[:2])
        return self.fc(self.sn(h).flatten(2)).mean(0)


def _tiny_input() -> torch.Tensor:
    x = torch.zeros(1, 2, 1, 4, 4)
    x[0, 0, 0] = torch.tensor(Z, dtype=torch.float32) / 4
    return x


@pytest.fixture(scope="module")
def tiny_counts():
    net = TinySNN()
    with EnergyCounter(net) as counter, torch.no_grad():
        net(_tiny_input())
        return counter.counts()


def test_hand_counts(tiny_counts):
    # Input coverage of a 3x3 pad-1 conv on 4x4: position i lies in c_i = [2, 3, 3, 2] windows per
    # axis, so z[h][w] is read c_h * c_w times per output channel (2 channels), per image (B=2):
    #   value: 2 * (1*6 + 2*4 + 3*6 + 4*9 + 1*4) = 144 -> 72;  event: 2 * (6+4+6+9+4) = 58 -> 29
    # events: 5 non-zero (value 11) -> 2.5 (5.5) per image.
    # Neuron (theta 1, N 4): channel 0 gets z/4 -> z; channel 1 gets z/8 -> floor(z/2):
    #   spikes 11 + 4 = 15 -> 7.5, events 5 + 3 = 8 -> 4; linear: x3 outputs -> 22.5 / 12
    c = tiny_counts
    assert (c.images, c.levels, c.spiking, c.timesteps) == (2, 4, True, 1)
    (conv, cc), (fc, fcc) = c.layers
    assert (conv.name, conv.fan_in, conv.fanout_channels, conv.kernel, conv.kernel_ceil,
            conv.in_per_step, conv.out_per_step, conv.bias) == ("conv", 9, 2, 9, 9, 16, 32, 0)
    assert (cc["events_nonzero"], cc["events_value"], cc["exact_nonzero"], cc["exact_value"],
            cc["spike_outputs"], cc["analog_outputs"]) == (2.5, 5.5, 29, 72, 32, 0)
    assert (fc.name, fc.fan_in, fc.fanout_channels, fc.bias, fc.has_bias_param) == \
        ("fc", 32, 3, 3, True)
    assert (fcc["events_nonzero"], fcc["events_value"], fcc["exact_nonzero"],
            fcc["exact_value"], fcc["spike_outputs"]) == (4, 7.5, 12, 22.5, 3)
    ((sn, snc),) = c.neurons
    assert (sn.name, sn.per_step, sn.leaky, snc["updates"], snc["spikes_nonzero"],
            snc["spikes_value"]) == ("sn", 32, False, 32, 4, 7.5)


def test_sram_laws():
    # qualia: 1.09e-5 * elements * bits + 13.2 pJ per element access
    assert sram_pj("qualia", 1000, 16) == pytest.approx(13.2 + 0.1744)
    assert sram_pj("qualia", 2 ** 20, 32) == pytest.approx(13.2 + 1.09e-5 * 2 ** 25)
    # spikingjelly: pJ per byte piecewise linear in capacity bytes, clamped at 1 MiB
    assert sram_pj("spikingjelly", 2048, 32) == pytest.approx(10.0)  # 8 KiB: 2.5 pJ/B x 4 B
    assert sram_pj("spikingjelly", 1024, 32) == pytest.approx(5.0)  # 4 KiB: halfway to 8 KiB
    assert sram_pj("spikingjelly", 2 ** 20, 16) == pytest.approx(50.0)  # clamped: 25 pJ/B x 2
    assert sram_pj("spikingjelly", 12 * 1024, 8) == pytest.approx(2.5 + 2.5 * 4 / 24)  # 12 KiB
    # horowitz_log: bench's earlier word law, flat below 8 KB, log-interpolated above
    kb = 1024
    words = [s // 4 for s in (64, 8 * kb, 16 * kb, 32 * kb, 1024 * kb, 2048 * kb)]
    assert [sram_pj("horowitz_log", w, 32) for w in words] == pytest.approx(
        [10, 10, 15, 20, 100, 116])


def test_bad_settings_are_named():
    with pytest.raises(EnergySettingError, match="counting: 'spikes' is unknown.*event, value"):
        EnergySettings(counting="spikes")
    with pytest.raises(EnergySettingError, match="sram: 'x'.*qualia, spikingjelly, horowitz_log"):
        EnergySettings(sram="x")
    with pytest.raises(EnergySettingError, match="model: 'bogus'.*lemaire, simple"):
        EnergySettings(model="bogus")
    with pytest.raises(EnergySettingError, match="fifo: 0 must be"):
        EnergySettings(fifo=0)


# --------------------------------------------- Lemaire vs spikingjelly's profiler, binary nets


class LoopNet(nn.Module):
    """Single-step layers looped over T frames (x: [T, B, C, H, W]); `make_neuron()` per layer.

    spikingjelly's profiler sizes buffers per forward call, bench's per image and timestep by
    default (`buffers="timestep"`): with B = 1 and one call per timestep they coincide.
    """

    def __init__(self, make_neuron, convs, fc_in: int, hidden_fc: bool) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(*args, **kw) for args, kw in convs)
        self.neurons = nn.ModuleList(make_neuron() for _ in convs)
        self.fc_hidden = nn.Linear(fc_in, 12) if hidden_fc else None
        self.sn_hidden = make_neuron() if hidden_fc else None
        self.fc = nn.Linear(12 if hidden_fc else fc_in, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = 0
        for frame in x:
            h = frame
            for conv, sn in zip(self.convs, self.neurons):
                h = sn(conv(h))
            h = torch.flatten(h, 1)
            if self.fc_hidden is not None:
                h = self.sn_hidden(self.fc_hidden(h))
            out = out + self.fc(h)
        return out / len(x)


NETS = {
    # stride 1 and 2, with and without padding and bias; spiking and analog Linear inputs
    "pad-stride": ([((2, 4, 3), dict(padding=1)), ((4, 6, 3), dict(stride=2, padding=1,
                                                                    bias=False)),
                    ((6, 6, 3), dict(padding=0))], 6 * 4 * 4, False),
    "nopad-hidden-fc": ([((2, 5, 3), dict(stride=2, bias=False)), ((5, 4, 1), dict())],
                        4 * 5 * 5, True),
}
SJ_CONVENTIONS = dict(sram="spikingjelly", bias_adds="if_bias", param_buffer="shared",
                      dense_fc_addressing="sum", static_input_once=False)


def _if_node():
    return neuron.IFNode(v_threshold=0.4, v_reset=None, detach_reset=True)


def _multilevel():
    return MultiLevelIF(N=1, threshold=0.4, step_mode="s")


@pytest.mark.parametrize("net_name", sorted(NETS))
@pytest.mark.parametrize("T", [1, 4])
@pytest.mark.parametrize("ours", ["IFNode", "MultiLevelIF"])
def test_lemaire_equals_spikingjelly_profiler(net_name, T, ours):
    # spikingjelly's profiler is used as-is on its own IFNode net; bench prices either the same
    # net or its MultiLevelIF(N=1) twin (same weights, same spikes) with the conventions where
    # spikingjelly departs from the lab switched to spikingjelly's: its SRAM law, bias adds only
    # for layers with a bias, weights and bias in one buffer, N_in + N_out addressing of a dense
    # Linear, and the static first layer charged per frame (the frames are real frames here).
    convs, fc_in, hidden = NETS[net_name]
    torch.manual_seed(7)
    reference = LoopNet(_if_node, convs, fc_in, hidden)
    net = reference if ours == "IFNode" else LoopNet(_multilevel, convs, fc_in, hidden)
    net.load_state_dict(reference.state_dict())
    x = torch.rand(T, 1, 2, 12, 12) * 1.5
    functional.reset_net(reference)
    sj = estimate_lemaire_energy(reference, (x,), config=LemaireEnergyConfig(strict=False))
    report = estimate(net, x, fifo=1000, **SJ_CONVENTIONS)
    _assert_equals_spikingjelly(report, sj)


def _assert_equals_spikingjelly(report, sj) -> None:
    b, sjb = report.breakdown_uj, {k: v / 1e6 for k, v in sj.breakdown_pj.items()}
    assert report.total_uj == pytest.approx(sj.total_pj / 1e6, rel=5e-3)
    assert b["ac"] + b["mac"] == pytest.approx(sjb["ops_pj"], rel=5e-3)
    assert b["addressing"] == pytest.approx(sjb["addressing_pj"], rel=5e-3)
    assert b["weights"] + b["bias"] == pytest.approx(sjb["params_pj"], rel=5e-3)
    assert b["potentials"] == pytest.approx(sjb["potential_pj"], rel=5e-3)
    assert b["inputs"] + b["outputs"] == pytest.approx(sjb["inout_pj"], rel=5e-3)
    t = report.totals()
    assert t["synaptic_ops"] == sj.counts["synop"] > 0  # spikes did flow
    assert (t["adds"], t["macs"]) == (sj.counts["ac"], sj.counts["mac"])
    assert (t["addressing_adds"], t["addressing_macs"]) == (sj.counts["acc_addr"],
                                                            sj.counts["mac_addr"])
    assert t["potentials_accesses"] * 4 == sj.counts["read_potential_bytes"] * 2
    assert t["outputs_accesses"] * 4 == sj.counts["write_out_bytes"]


class MultiStepNet(nn.Module):
    """The same layers in multi-step mode: each layer takes all T frames [T, B, ...] in one call,
    so a buffer sized per call holds T (and B) times one image and timestep."""

    def __init__(self, make_neuron, convs, fc_in: int, hidden_fc: bool) -> None:
        super().__init__()
        self.convs = nn.ModuleList(layer.Conv2d(*args, **kw, step_mode="m") for args, kw in convs)
        self.neurons = nn.ModuleList(make_neuron() for _ in convs)
        self.fc_hidden = layer.Linear(fc_in, 12, step_mode="m") if hidden_fc else None
        self.sn_hidden = make_neuron() if hidden_fc else None
        self.fc = layer.Linear(12 if hidden_fc else fc_in, 5, step_mode="m")

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [T, B, C, H, W]
        h = x
        for conv, sn in zip(self.convs, self.neurons):
            h = sn(conv(h))
        h = h.flatten(2)
        if self.fc_hidden is not None:
            h = self.sn_hidden(self.fc_hidden(h))
        return self.fc(h).mean(0)


def _if_node_m():
    return neuron.IFNode(v_threshold=0.4, v_reset=None, detach_reset=True, step_mode="m")


def _multilevel_m():
    return MultiLevelIF(N=1, threshold=0.4, step_mode="m")


@pytest.mark.parametrize("net_name", sorted(NETS))
@pytest.mark.parametrize("ours", ["IFNode", "MultiLevelIF"])
def test_lemaire_equals_spikingjelly_profiler_multistep_distinct_frames(net_name, ours):
    # T = 4 distinct frames at batch 1 through multi-step layers: spikingjelly sizes the buffers
    # that a tensor sizes (a dense layer's input, potentials) per forward call, T included;
    # `buffers="call"` does the same (and walks the dense conv's kernel once per call, as
    # spikingjelly does) and every term agrees; per image and timestep (the lab's) the accesses
    # are the same but the dense input buffer is T times smaller
    convs, fc_in, hidden = NETS[net_name]
    torch.manual_seed(7)
    reference = MultiStepNet(_if_node_m, convs, fc_in, hidden)
    net = reference if ours == "IFNode" else MultiStepNet(_multilevel_m, convs, fc_in, hidden)
    net.load_state_dict(reference.state_dict())
    x = torch.rand(4, 1, 2, 12, 12) * 1.5
    functional.reset_net(reference)
    sj = estimate_lemaire_energy(reference, (x,), config=LemaireEnergyConfig(strict=False))
    report = estimate(net, x, fifo=1000, buffers="call", **SJ_CONVENTIONS)
    _assert_equals_spikingjelly(report, sj)
    lab = estimate(net, x, fifo=1000, buffers="timestep", **SJ_CONVENTIONS)
    per_step, per_call = lab.totals(), report.totals()
    stem = net.convs[0]
    walks = (4 - 1) * stem.out_channels * math.prod(stem.kernel_size)
    assert per_step.pop("addressing_adds") - per_call.pop("addressing_adds") == walks
    assert per_step == per_call  # the same accesses, in smaller buffers
    b, lb = report.breakdown_uj, lab.breakdown_uj
    assert lb["inputs"] + lb["outputs"] < b["inputs"] + b["outputs"]
    assert lb["potentials"] <= b["potentials"] and lab.total_uj < report.total_uj


# ------------------------------------------------------- hand-computed multi-level totals


class TwoLayer(nn.Module):
    """[T=1, N=4] spikes z = [0, 1, 3, 0] -> Linear(4, 2, bias) -> MultiLevelIF(N=4) ->
    Linear(2, 3, no bias). fc1 picks inputs 1 and 2 (+ bias 0.25 on output 0): currents 0.5 and
    0.75 -> z = 2 and 3."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(4, 2)
        self.sn = MultiLevelIF(N=4, step_mode="m")
        self.fc2 = nn.Linear(2, 3, bias=False)
        with torch.no_grad():
            self.fc1.weight.copy_(torch.tensor([[0.0, 1, 0, 0], [0, 0, 1, 0]]))
            self.fc1.bias.copy_(torch.tensor([0.25, 0.0]))
            self.fc2.weight.fill_(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [1, B, 4]
        return self.fc2(self.sn(self.fc1(x))).mean(0)


def _q16(elements: float) -> float:  # qualia law, 16-bit elements, by hand
    return 1.09e-5 * elements * 16 + 13.2


@pytest.mark.parametrize("counting", ["event", "packet", "value"])
@pytest.mark.parametrize("op", ["mac", "ac"])
def test_hand_lemaire_multilevel(counting, op):
    x = torch.tensor([0.0, 1, 3, 0]).div(4).reshape(1, 1, 4)
    report = estimate(TwoLayer(), x, counting=counting, multilevel_op=op, mem_bits=16,
                      sram="qualia", fifo=1000)
    # events: fc1 input z=[0,1,3,0] (2 non-zero, value 4); neuron out z=[2,3] (2, value 5)
    # packet: every z <= N = 4 is one packet, as event
    e1, s_out, e2 = (4, 5, 5) if counting == "value" else (2, 2, 2)
    syn1, syn2 = e1 * 2, e2 * 3  # x fan-out (out_features); weight and potential accesses too
    e_syn = 3.2 if op == "mac" else 0.1  # 32-bit: add 0.1, mult 3.1
    fifo = _q16(1000)
    fc1 = (syn1 * e_syn + 2 * 0.1 + e1 * 2 * 0.1  # synaptic ops, bias adds, addressing
           + syn1 * _q16(8) + 2 * _q16(2) + 2 * syn1 * _q16(2) + e1 * fifo)
    sn = s_out * 0.1 + 2 * 2 * _q16(2) + s_out * fifo  # resets, 2 neurons read+write, writes
    fc2 = (syn2 * e_syn + 3 * 0.1 + e2 * 3 * 0.1  # no bias: bias adds still (the lab's)
           + syn2 * _q16(6) + 2 * syn2 * _q16(3) + e2 * fifo)
    assert report.layer_uj["fc1"] == pytest.approx(fc1 * 1e-6, rel=1e-9)
    assert report.layer_uj["sn"] == pytest.approx(sn * 1e-6, rel=1e-9)
    assert report.layer_uj["fc2"] == pytest.approx(fc2 * 1e-6, rel=1e-9)
    assert report.total_uj == pytest.approx((fc1 + sn + fc2) * 1e-6, rel=1e-9)
    assert report.breakdown_uj["inputs"] == pytest.approx((e1 + e2) * fifo * 1e-6, rel=1e-9)
    assert report.counts["fc2"]["events"] == e2


class SumNet(nn.Module):
    """Two MultiLevelIF(N=4) maps summed (a SEW residual exit), then Linear(6, 2): currents z/4
    give z = [0, 3, 1, 4, 4, 1] and [0, 0, 4, 4, 0, 0], a sum of z = [0, 3, 5, 8, 4, 1]."""

    def __init__(self) -> None:
        super().__init__()
        self.sn_a, self.sn_b = MultiLevelIF(N=4, step_mode="m"), MultiLevelIF(N=4, step_mode="m")
        self.fc = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [1, B, 2, 6]
        return self.fc(self.sn_a(x[:, :, 0]) + self.sn_b(x[:, :, 1])).mean(0)


def _sum_input() -> torch.Tensor:
    z = torch.tensor([[0.0, 3, 1, 4, 4, 1], [0, 0, 4, 4, 0, 0]])
    return (z / 4).reshape(1, 1, 2, 6)


@pytest.mark.parametrize("counting,events", [
    ("event", 5),  # non-zero z: 3, 5, 8, 4, 1
    ("packet", 7),  # ceil(z / 4): 1 + 2 + 2 + 1 + 1
    ("value", 21),  # 3 + 5 + 8 + 4 + 1
])
def test_sum_of_two_multilevel_maps_by_counting(counting, events):
    report = estimate(SumNet(), _sum_input(), counting=counting)
    fc = report.counts["fc"]
    assert fc["events"] == events and fc["synaptic_ops"] == 2 * events
    assert report.breakdown_uj["inputs"] * 1e6 == pytest.approx(
        events * sram_pj("qualia", 1000, 32), rel=1e-12)
    # the neurons' own outputs are z <= N: one packet per non-zero z, as event
    assert report.counts["sn_a"]["output_events"] == (13 if counting == "value" else 5)
    measured = report.to_record()["measured"]
    layer = next(entry for entry in measured["layers"] if entry["name"]
                 == "fc")
    assert layer["levels_in"] == 4
    assert layer["hist"] == {"0": 1, "1": 1, "3": 1, "4": 1, "5": 1, "8": 1}
    assert layer["hist_over"] == 0


def test_sew_sum_counts_values_and_static_first_layer_once():
    # N = 1: a residual sum of two binary maps holds 2s; the lab counts the next layer's input
    # by value even under event counting (a 2 is two spikes)
    net = nn.Sequential(nn.Linear(3, 2))
    declare(net, N=1)
    report = estimate(net, torch.tensor([[1.0, 2.0, 0.0]]))
    assert report.counts["0"]["events"] == 3 and report.counts["0"]["synaptic_ops"] == 6

    # bench's models compute a static image's first conv once for all T: charged once (lab),
    # or T times with static_input_once=False
    torch.manual_seed(0)
    model = build_model("sew_resnet18", num_classes=3, in_channels=1, T=2,
                        neurons=NeuronSettings(N=2)).eval()
    images = torch.rand(2, 1, 8, 8)
    once, per_step = (estimate(model, images, static_input_once=s) for s in (True, False))
    stem = next(n for n, c in once.counts.items() if c.get("dense_macs"))
    assert per_step.counts[stem]["dense_macs"] == 2 * once.counts[stem]["dense_macs"] > 0


# --------------------------------------------------------- the `simple` model (kept as was)


@pytest.mark.parametrize("preset,counting,arith_pj,memory_pj", [
    # every buffer here is < 8 KB: 10 pJ per access. Memory, value-weighted:
    #   weights (72 + 22.5) * 10 = 945, bias (32 + 3) * 10 = 350, membrane 2 * 32 * 10 = 640,
    #   outputs 7.5 * 10 = 75 -> 2010. Event-based: 410 + 350 + 640 + 40 = 1440.
    ("horowitz45", "value", 94.5 * 0.1, 2010.0),
    ("snn_convention", "value", 94.5 * 0.9, 2010.0),
    ("horowitz45", "event", 41 * 0.1, 1440.0),
    ("snn_convention", "event", 41 * 0.9, 1440.0),
])
def test_simple_model_hand_energy(tiny_counts, preset, counting, arith_pj, memory_pj):
    r = price(tiny_counts, EnergySettings(model="simple", preset=preset, counting=counting))
    b = r.breakdown_uj
    assert b["ac"] == pytest.approx(arith_pj * 1e-6, rel=1e-12) and b["mac"] == 0
    assert b["weights"] + b["bias"] + b["potentials"] + b["outputs"] == pytest.approx(
        memory_pj * 1e-6, rel=1e-12)
    assert b["potentials"] == pytest.approx(640e-6) and b["bias"] == pytest.approx(350e-6)
    assert b["addressing"] == b["inputs"] == 0
    assert r.total_uj == pytest.approx((arith_pj + memory_pj) * 1e-6, rel=1e-12)
    if (preset, counting) == ("horowitz45", "value"):  # arithmetic + weight + bias reads
        assert [r.layer_uj[k] for k in ("conv", "fc")] == pytest.approx([1047.2e-6, 257.25e-6])


def test_analog_first_layer_and_ann_count_dense_macs():
    net = TinySNN()
    declare(net, N=4, analog_inputs=[net.conv])  # 2*4*4 outputs x 9 fan-in = 288 MACs per image, no AC
    r = estimate(net, torch.rand(1, 2, 1, 4, 4))
    assert r.counts["conv"]["dense_macs"] == 288 and "synaptic_ops" not in r.counts["conv"]
    # ANN: every layer dense, every activation written: 288 + 3*32 = 384 MACs per image
    ann = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(32, 3))
    declare(ann, N=None)
    simple = estimate(ann, torch.randn(3, 1, 4, 4), model_name="simple")
    # arith 384 * 3.2 = 1228.8; weights 384 * 10, bias 35 * 10, output writes 35 * 10
    assert simple.total_uj == pytest.approx((1228.8 + 3840 + 350 + 350) * 1e-6, rel=1e-12)
    lem = estimate(ann, torch.randn(3, 1, 4, 4))
    assert lem.totals()["macs"] == 384 and lem.totals()["outputs_accesses"] == 35
    assert lem.breakdown_uj["potentials"] == 0


def test_pooled_input_is_dense_for_lemaire_and_averaged_for_simple():
    # after global average pooling N*y is a mean spike count (1.5 and 1): off the spike grid, so
    # the Lemaire model multiplies (2 x 3 MACs); `simple` keeps its old unrounded accumulates
    net = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 3))
    declare(net, N=4)
    z = torch.tensor([[[1.0, 2.0], [0.0, 3.0]], [[4.0, 0.0], [0.0, 0.0]]])
    lem = estimate(net, (z / 4).unsqueeze(0))
    assert lem.counts["2"]["dense_macs"] == 6 and lem.counts["2"]["input"] == "analog"
    simple = estimate(net, (z / 4).unsqueeze(0), model_name="simple", counting="value")
    assert simple.counts["2"]["adds"] == 7.5  # (1.5 + 1) * 3


class BinaryNet(nn.Module):
    """Binary (N=1) multi-step net: analog conv, then spiking strided / reflect-padded / grouped
    convs and a linear; MultiLevelIF(N=1) and spikingjelly IFNode neurons."""

    def __init__(self) -> None:
        super().__init__()
        self.conv0 = layer.Conv2d(2, 4, 3, padding=1, step_mode="m")
        self.sn0 = MultiLevelIF(N=1, threshold=0.3, step_mode="m")
        self.conv1 = layer.Conv2d(4, 6, 3, stride=2, padding=1, padding_mode="reflect",
                                  step_mode="m")
        self.sn1 = neuron.IFNode(v_threshold=0.3, v_reset=None, step_mode="m")
        self.conv2 = layer.Conv2d(6, 6, 3, padding=2, dilation=2, groups=2, step_mode="m")
        self.sn2 = MultiLevelIF(N=1, threshold=0.3, step_mode="m")
        self.fc = layer.Linear(6 * 4 * 4, 5, step_mode="m")
        declare(self, N=1, analog_inputs=[self.conv0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [T, B, 2, 8, 8]
        s = self.sn2(self.conv2(self.sn1(self.conv1(self.sn0(self.conv0(x))))))
        return self.fc(s.flatten(2)).mean(0)


def test_exact_synaptic_ops_equal_spikingjelly_synops():
    # the exact receptive-field count (fanout="exact") equals spikingjelly's SynOp counter on a
    # binary net, padding modes, strides, dilation and groups included
    torch.manual_seed(0)
    net = BinaryNet()
    x = torch.rand(2, 4, 2, 8, 8)  # [T, B, C, H, W]; B = 4 keeps per-image values exact
    report = estimate(net, x, fanout="exact")
    synops, macs = SynOpCounter(), MACCounter()
    with torch.no_grad(), DispatchCounterMode([synops, macs]):
        functional.reset_net(net)
        net(x)
    scope = lambda counter, name: sum(counter.get_counts().get(f"BinaryNet.{name}", {}).values())
    assert report.images == 4
    for name in ("conv1", "conv2", "fc"):
        c = report.counts[name]
        assert c["synaptic_ops_exact"] * 4 == scope(synops, name) == c["synaptic_ops"] * 4 > 0
    assert report.counts["conv0"]["dense_macs"] * 4 == scope(macs, "conv0") > 0


# -------------------------------------------------------------------- the Lightning probe


class LitTiny(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1),
                                   MultiLevelIF(N=4, step_mode="s"),
                                   nn.Flatten(), nn.Linear(64, 3))
        declare(self.model, N=4, T=1, analog_inputs=[self.model[0]])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        functional.reset_net(self.model)
        return self.model(x)

    def _step(self, batch, split: str) -> torch.Tensor:
        loss = F.cross_entropy(self(batch[0]), batch[1])
        self.log(f"{split}/loss", loss)
        return loss

    def training_step(self, batch, _):
        return self._step(batch, "train")

    def validation_step(self, batch, _):
        self._step(batch, "val")

    def test_step(self, batch, _):
        self._step(batch, "test")

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5)


def _loader(seed: int, n: int) -> DataLoader:
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 1, 4, 4, generator=g) * 3
    return DataLoader(TensorDataset(images, torch.randint(0, 3, (n,), generator=g)), batch_size=n)


def test_probe_in_lightning_fit_and_test():
    settings = EnergySettings(counting="value", multilevel_op="ac", mem_bits=16)
    lit, probe = LitTiny(), EnergyProbe(settings)
    trainer = pl.Trainer(callbacks=[probe], max_epochs=1, limit_train_batches=1,
                         limit_val_batches=1, limit_test_batches=1, num_sanity_val_steps=1,
                         accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    val, test = _loader(1, 6), _loader(2, 5)
    trainer.fit(lit, _loader(0, 8), val)
    trainer.test(lit, test)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in lit.model.modules())
    # exactly one pass over each evaluation set with the final weights: the same numbers as
    # estimating those batches directly (training and sanity-check batches would change them)
    for split, loader in (("val", val), ("test", test)):
        direct = estimate(copy.deepcopy(lit.model), next(iter(loader))[0], counting="value",
                          multilevel_op="ac", mem_bits=16)
        assert probe.last[split] == direct.to_record()
    record = probe.last["test"]
    assert (record["model"], record["counting"], record["mem_bits"], record["sram"],
            record["fifo"]) == ("lemaire", "value", 16, "qualia", 1000)
    assert record["ops_per_image"]["dense_macs"] == 64 * 9
    assert float(trainer.callback_metrics["test/energy_uj_per_image"]) == pytest.approx(
        record["total_uj_per_image"], rel=1e-6)


def test_layers_reading_one_neuron_output_reduce_it_once_and_count_the_same(
        monkeypatch) -> None:
    from bench.energy import counting

    torch.manual_seed(0)
    net = build_model("sparse_resnet18", num_classes=3, in_channels=1, T=2,
                      neurons=NeuronSettings(N=3)).eval()
    x = torch.rand(4, 1, 8, 8)
    computed = []
    grid_maps = counting.grid_maps
    monkeypatch.setattr(counting, "grid_maps", lambda *a: computed.append(1) or grid_maps(*a))
    with counting.EnergyCounter(net) as shared, torch.inference_mode():
        net(x)
    reused = shared.counts()
    # 20 spiking synaptic layers; the 3 downsampling shortcuts read what their block's first
    # conv read, reduced once
    assert len(computed) == 17
    monkeypatch.setattr(counting._Spikes, "holds", lambda self, t: False)
    with counting.EnergyCounter(net) as alone, torch.no_grad():
        net(x)
    assert alone.counts() == reused  # the same counts, each layer reducing its own input
