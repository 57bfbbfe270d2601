"""Energy model: hand counts, spikingjelly's op counters, the Lightning probe."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from spikingjelly.activation_based import functional, layer, neuron
from spikingjelly.activation_based.op_counter import DispatchCounterMode, MACCounter, SynOpCounter
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from bench.neurons import MultiLevelIF
from bench.probes.energy import (EnergyProbe, attach_energy_hooks, energy_breakdown, horowitz45,
                                 snn_convention)

KEYS = {"preset", "counting", "ac_per_image", "mac_per_image", "arith_uj_per_image",
        "memory_uj_per_image", "total_uj_per_image", "memory_parts_uj_per_image", "per_layer",
        "presets_total_uj_per_image"}

# spike counts z of image 0 (image 1 is all zeros); N = 4, so the input is y = z / 4
Z = [[0, 1, 0, 2],
     [3, 0, 0, 0],
     [0, 0, 4, 0],
     [1, 0, 0, 0]]


class TinySNN(nn.Module):
    """conv 1->2 3x3 pad 1 on 4x4 (spiking input) -> MultiLevelIF(N=4) -> linear 32->3."""

    T, levels, is_spiking = 1, 4, True

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1, bias=False)
        self.sn = MultiLevelIF(levels=4, step_mode="m")
        self.fc = nn.Linear(32, 3)
        with torch.no_grad():  # centre taps only: channel 0 passes y, channel 1 passes y / 2
            self.conv.weight.zero_()
            self.conv.weight[0, 0, 1, 1], self.conv.weight[1, 0, 1, 1] = 1.0, 0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [T, B, 1, 4, 4]
        h = self.conv(x.flatten(0, 1)).unflatten(0, x.shape[:2])
        return self.fc(self.sn(h).flatten(2)).mean(0)


@pytest.fixture(scope="module")
def tiny_hand():
    net = TinySNN()
    x = torch.zeros(1, 2, 1, 4, 4)
    x[0, 0, 0] = torch.tensor(Z, dtype=torch.float32) / 4
    with attach_energy_hooks(net) as hooks, torch.no_grad():
        net(x)
        stats = hooks.stats()
    return net, stats


def test_hand_counts(tiny_hand):
    # Input coverage of a 3x3 pad-1 conv on 4x4: position i lies in c_i = [2, 3, 3, 2] windows per
    # axis, so z[h][w] is read c_h * c_w times per output channel (2 channels), per image (B=2):
    #   value: 2 * (1*6 + 2*4 + 3*6 + 4*9 + 1*4) = 144 -> 72;  event: 2 * (6+4+6+9+4) = 58 -> 29
    # Neuron (theta 1, N 4): channel 0 gets z/4 -> z; channel 1 gets z/8 -> floor(z/2):
    #   spikes 11 + 4 = 15 -> 7.5, events 5 + 3 = 8 -> 4; linear: x3 outputs -> 22.5 / 12
    layers, neurons = tiny_hand[1]
    conv, fc = layers
    assert (conv.name, conv.analog, conv.ac_value, conv.ac_event, conv.mac) == \
        ("conv", False, 72, 29, 0)
    assert (fc.name, fc.analog, fc.ac_value, fc.ac_event, fc.mac) == ("fc", False, 22.5, 12, 0)
    assert (conv.outputs, fc.outputs, conv.weight_words, fc.weight_words) == (32, 3, 20, 99)
    (sn,) = neurons
    assert (sn.name, sn.neurons, sn.updates, sn.spikes, sn.events) == ("sn", 32, 32, 7.5, 4)


@pytest.mark.parametrize("preset,counting,arith_pj,memory_pj", [
    # every buffer here is < 8 KB: 10 pJ per access. Memory, value-weighted:
    #   weights (72 + 22.5) * 10 = 945, bias (32 + 3) * 10 = 350, membrane 2 * 32 * 10 = 640,
    #   outputs 7.5 * 10 = 75 -> 2010. Event-based: 410 + 350 + 640 + 40 = 1440.
    ("horowitz45", "value", 94.5 * 0.1, 2010.0),   # 9.45 pJ arithmetic
    ("snn_convention", "value", 94.5 * 0.9, 2010.0),  # 85.05
    ("horowitz45", "event", 41 * 0.1, 1440.0),  # 4.1
    ("snn_convention", "event", 41 * 0.9, 1440.0),  # 36.9
])
def test_hand_energy(tiny_hand, preset, counting, arith_pj, memory_pj):
    bd = energy_breakdown(*tiny_hand[1], preset=preset, counting=counting)
    assert set(bd) == KEYS and (bd["preset"], bd["counting"]) == (preset, counting)
    assert bd["ac_per_image"] == (94.5 if counting == "value" else 41) and bd["mac_per_image"] == 0
    assert bd["arith_uj_per_image"] == pytest.approx(arith_pj * 1e-6, rel=1e-12)
    assert bd["memory_uj_per_image"] == pytest.approx(memory_pj * 1e-6, rel=1e-12)
    assert bd["total_uj_per_image"] == pytest.approx((arith_pj + memory_pj) * 1e-6, rel=1e-12)
    parts = bd["memory_parts_uj_per_image"]
    spikes = {"value": (945.0, 75.0), "event": (410.0, 40.0)}[counting]
    assert parts == pytest.approx({"weights": spikes[0] * 1e-6, "membrane": 640e-6,
                                   "bias": 350e-6, "outputs": spikes[1] * 1e-6}, rel=1e-12)
    # per layer: arithmetic + weight + bias reads (horowitz45, value: 7.2+720+320, 2.25+225+30)
    per_layer = bd["per_layer"]
    if (preset, counting) == ("horowitz45", "value"):
        assert [l["uj"] for l in per_layer] == pytest.approx([1047.2e-6, 257.25e-6], rel=1e-12)
    assert [(l["layer"], l["input"]) for l in per_layer] == [("conv", "spike"), ("fc", "spike")]
    totals = bd["presets_total_uj_per_image"]
    other = {"horowitz45": 0.1, "snn_convention": 0.9}
    ac = 94.5 if counting == "value" else 41
    assert totals == pytest.approx({k: (ac * e + memory_pj) * 1e-6 for k, e in other.items()})


def test_analog_first_layer_and_ann_count_dense_macs():
    # an SNN's analog-input conv: 2*4*4 outputs x 9 fan-in = 288 MACs per image, no AC
    net = TinySNN()
    net.conv.analog_input = True
    with attach_energy_hooks(net) as hooks, torch.no_grad():
        net(torch.rand(1, 2, 1, 4, 4))
        conv = hooks.stats()[0][0]
    assert (conv.analog, conv.ac_value, conv.ac_event, conv.mac) == (True, 0, 0, 288)

    # ANN (is_spiking False): every layer dense: 288 + 3*32 = 384 MACs per image
    ann = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(32, 3))
    ann.levels, ann.is_spiking = 0, False
    with attach_energy_hooks(ann) as hooks, torch.no_grad():
        ann(torch.randn(3, 1, 4, 4))
        bd = hooks.breakdown("horowitz45", "value")
    # arith 384 * 3.2 = 1228.8; weights 384 * 10 = 3840, bias 35 * 10, dense output writes 35 * 10
    assert (bd["ac_per_image"], bd["mac_per_image"]) == (0, 384)
    assert [l["mac"] for l in bd["per_layer"]] == [288, 96]
    assert bd["total_uj_per_image"] == pytest.approx((1228.8 + 3840 + 350 + 350) * 1e-6, rel=1e-12)
    assert bd["memory_parts_uj_per_image"]["membrane"] == 0


def test_pooled_input_counts_averaged_value():
    # after global average pooling N*y is a mean spike count: ch0 (1+2+0+3)/4 = 1.5, ch1 4/4 = 1,
    # counted unrounded: value (1.5 + 1) * 3 = 7.5 AC, event 2 * 3 = 6 (B=1)
    net = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 3))
    net.levels, net.is_spiking = 4, True
    z = torch.tensor([[[1.0, 2.0], [0.0, 3.0]], [[4.0, 0.0], [0.0, 0.0]]])
    with attach_energy_hooks(net) as hooks, torch.no_grad():
        net((z / 4).unsqueeze(0))
        (fc,), _ = hooks.stats()
    assert (fc.ac_value, fc.ac_event) == (7.5, 6)


def test_sram_access_energy_interpolates_on_log_size():
    kb = 1024
    sizes = (64, 8 * kb, 16 * kb, 32 * kb, 1024 * kb, 2048 * kb)
    for p in (horowitz45, snn_convention):  # 16 KB: halfway in log; 2 MB: +80/5 pJ per doubling
        assert [p.sram_access_pj(s) for s in sizes] == pytest.approx([10, 10, 15, 20, 100, 116])
    assert (horowitz45.e_ac_pj, horowitz45.e_mac_pj) == (0.1, 3.2)
    assert (snn_convention.e_ac_pj, snn_convention.e_mac_pj) == (0.9, 4.6)


def test_bad_preset_or_counting_is_named():
    with pytest.raises(ValueError, match="'bogus'.*horowitz45, snn_convention"):
        EnergyProbe(preset="bogus")
    with pytest.raises(ValueError, match="'spikes'.*value, event"):
        EnergyProbe(counting="spikes")
    with pytest.raises(ValueError, match="'x'"):
        energy_breakdown([], [], preset="x")


class BinaryNet(nn.Module):
    """Binary (N=1) multi-step net: analog conv, then spiking strided / reflect-padded / grouped
    convs and a linear; MultiLevelIF(N=1) and spikingjelly IFNode neurons."""

    def __init__(self) -> None:
        super().__init__()
        self.conv0 = layer.Conv2d(2, 4, 3, padding=1, step_mode="m")
        self.sn0 = MultiLevelIF(levels=1, threshold=0.3, step_mode="m")
        self.conv1 = layer.Conv2d(4, 6, 3, stride=2, padding=1, padding_mode="reflect",
                                  step_mode="m")
        self.sn1 = neuron.IFNode(v_threshold=0.3, v_reset=None, step_mode="m")
        self.conv2 = layer.Conv2d(6, 6, 3, padding=2, dilation=2, groups=2, step_mode="m")
        self.sn2 = MultiLevelIF(levels=1, threshold=0.3, step_mode="m")
        self.fc = layer.Linear(6 * 4 * 4, 5, step_mode="m")
        self.conv0.analog_input = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [T, B, 2, 8, 8]
        s = self.sn2(self.conv2(self.sn1(self.conv1(self.sn0(self.conv0(x))))))
        return self.fc(s.flatten(2)).mean(0)


def test_spike_ops_equal_spikingjelly_synops():
    # spikingjelly counts SynOps only where the input is binary and MACs only where it is not; our
    # rule (analog_input flag) agrees on this net: its first conv reads analog pixels, every other
    # layer reads binary spikes. Where spikingjelly differs: a layer after average pooling (its
    # input is no longer binary: 0 SynOps there, ours counts the averaged value), and multi-level
    # inputs (N > 1), which it sees as analog. Padding agrees: both count only real (or, for
    # reflect/circular padding, copied) input values in each window, never zero padding.
    torch.manual_seed(0)
    net = BinaryNet()
    x = torch.rand(2, 4, 2, 8, 8)  # [T, B, C, H, W]; B = 4 keeps per-image values exact in float
    with attach_energy_hooks(net) as hooks, torch.no_grad():
        functional.reset_net(net)
        net(x)
        layers, neurons = hooks.stats()
    synops, macs = SynOpCounter(), MACCounter()
    with torch.no_grad(), DispatchCounterMode([synops, macs]):
        functional.reset_net(net)
        net(x)
    scope = lambda counter, name: sum(counter.get_counts().get(f"BinaryNet.{name}", {}).values())
    assert hooks.images == 4 and [l.name for l in layers] == ["conv0", "conv1", "conv2", "fc"]
    for l in layers:
        assert l.ac_value * 4 == scope(synops, l.name) == l.ac_event * 4  # binary: value == event
        assert l.mac * 4 == scope(macs, l.name)
    assert layers[0].mac > 0 and all(l.ac_value > 0 for l in layers[1:])
    assert [n.name for n in neurons] == ["sn0", "sn1", "sn2"] and all(n.spikes > 0 for n in neurons)


class LitTiny(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1),
                                   MultiLevelIF(levels=4, step_mode="s"),
                                   nn.Flatten(), nn.Linear(64, 3))
        self.model.T, self.model.levels, self.model.is_spiking = 1, 4, True
        self.model[0].analog_input = True

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
    lit, probe = LitTiny(), EnergyProbe("snn_convention", "event")
    trainer = pl.Trainer(callbacks=[probe], max_epochs=1, limit_train_batches=1,
                         limit_val_batches=1, limit_test_batches=1, num_sanity_val_steps=1,
                         accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    val, test = _loader(1, 6), _loader(2, 5)
    trainer.fit(lit, _loader(0, 8), val)
    trainer.test(lit, test)
    # teardown removed every hook
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in lit.model.modules())
    # the probe saw exactly one pass over each evaluation set with the final weights: same numbers
    # as counting those batches by hand (training and sanity-check batches would change them)
    for split, loader in (("val", val), ("test", test)):
        with attach_energy_hooks(lit.model) as hooks, torch.no_grad():
            lit(next(iter(loader))[0])
            assert probe.last[split] == hooks.breakdown("snn_convention", "event")
        assert set(probe.last[split]) == KEYS
    assert probe.last["test"]["ac_per_image"] > 0 and probe.last["test"]["mac_per_image"] == 64 * 9
    assert float(trainer.callback_metrics["test/energy_uj_per_image"]) == pytest.approx(
        probe.last["test"]["total_uj_per_image"], rel=1e-6)
