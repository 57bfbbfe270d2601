"""bench.energy.reprice: a record's measured counts priced again equal `estimate` under any
setting; the input histograms agree with the counts; the sensitivity grid; old records."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch

from bench import schema
from bench.energy import (SENSITIVITY, EnergySettingError, EnergySettings, estimate, reprice)
from bench.errors import BenchError
from bench.models import build_model
from bench.neurons import NeuronSettings


@pytest.fixture(scope="module")
def sew():
    # fixed (seeded) weights: multi-level spikes (N = 2) and SEW residual sums well above N
    torch.manual_seed(3)
    model = build_model("sew_resnet18", num_classes=3, in_channels=1, T=2,
                        neurons=NeuronSettings(N=2)).eval()
    images = torch.rand(3, 1, 8, 8) * 8
    return model, images


@pytest.fixture(scope="module")
def record(sew, tmp_path_factory):
    """A run folder whose summary.json holds the default estimate's record (as bench writes
    it: indented JSON)."""
    report = estimate(*sew)
    folder = tmp_path_factory.mktemp("run")
    summary = {schema.ENERGY: report.to_record(), schema.ENERGY_UJ_PER_IMAGE: report.total_uj}
    (folder / schema.SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
    return folder


def _same(a, b) -> None:
    # the same counts through JSON (exact floats) priced by the same code: equal to the last bit
    assert a.settings == b.settings
    assert a.total_uj == b.total_uj and a.breakdown_uj == b.breakdown_uj
    assert a.counts == b.counts and a.layer_uj == b.layer_uj


COMBOS = list(itertools.product(EnergySettings.choice("counting"),
                                EnergySettings.choice("multilevel_op"),
                                EnergySettings.choice("sram")))


@pytest.mark.parametrize("counting,op,sram", COMBOS)
def test_reprice_equals_estimate_on_every_counting_op_and_sram(sew, record, counting, op, sram):
    settings = dict(counting=counting, multilevel_op=op, sram=sram)
    _same(reprice(record, **settings), estimate(*sew, **settings))


@pytest.mark.parametrize("settings", [
    dict(mem_bits=16, fifo=64), dict(mem_bits=8, op_bits=8, counting="value"),
    dict(buffers="call", sram="spikingjelly"), dict(fanout="exact", counting="packet"),
    dict(bias_adds="if_bias", param_buffer="shared", static_input_once=False),
    dict(model="simple", preset="snn_convention", counting="event"),
])
def test_reprice_equals_estimate_on_widths_fifo_buffers_and_conventions(sew, record, settings):
    _same(reprice(record, **settings), estimate(*sew, **settings))


def test_reprice_reads_a_folder_a_file_a_summary_and_its_energy(record):
    path = record / schema.SUMMARY_FILE
    summary = json.loads(path.read_text())
    recorded = summary[schema.ENERGY_UJ_PER_IMAGE]
    for source in (record, str(record), path, summary, summary[schema.ENERGY]):
        assert reprice(source).total_uj == recorded  # no settings: the record's own
    assert reprice(summary, counting="value").settings.counting == "value"


def test_sums_above_n_and_histograms_agree_with_the_counts(record):
    measured = json.loads((record / schema.SUMMARY_FILE).read_text())[schema.ENERGY]["measured"]
    seen_above = 0
    for layer in measured["layers"]:
        if layer["hist"] is None:  # the analog stem: priced from its sizes
            assert layer["analog_outputs"] > 0
            continue
        n, hist = layer["levels_in"], {int(z): c for z, c in layer["hist"].items()}
        assert n == 2 and layer["hist_over"] == 0
        seen_above = max(seen_above, max(hist))
        total = layer["in_per_step"] * measured["timesteps"]  # every input element, per image
        assert sum(hist.values()) == pytest.approx(total, rel=1e-12)
        for slot, weight in (("events_nonzero", lambda z: z > 0), ("events_value", lambda z: z),
                             ("events_packet", lambda z: math.ceil(z / n))):
            assert sum(weight(z) * c for z, c in hist.items()) == pytest.approx(
                layer[slot], rel=1e-12), (layer["name"], slot)
    assert seen_above > 2  # SEW sums above N: packet differs from event here
    assert reprice(record, counting="packet").total_uj != reprice(record, counting="event").total_uj


def test_sensitivity_grid_is_counting_by_op_then_the_other_sram_laws(record):
    labels = [row["label"] for row in SENSITIVITY]
    assert len(set(labels)) == len(labels) == 3 * 2 + 2
    grid = [(r["settings"].get("counting"), r["settings"].get("multilevel_op"),
             r["settings"].get("sram")) for r in SENSITIVITY]
    assert grid[:6] == [(c, o, None) for c in ("packet", "event", "value") for o in ("mac", "ac")]
    assert grid[6:] == [(None, None, "spikingjelly"), (None, None, "horowitz_log")]
    totals = {row["label"]: reprice(record, **row["settings"]).total_uj for row in SENSITIVITY}
    assert totals["value counting, MAC"] > totals["packet counting, MAC"] > \
        totals["event counting, MAC"]


def test_old_record_without_histograms_is_named(tmp_path, record):
    summary = json.loads((record / schema.SUMMARY_FILE).read_text())
    del summary[schema.ENERGY]["measured"]
    (tmp_path / schema.SUMMARY_FILE).write_text(json.dumps(summary))
    with pytest.raises(BenchError, match=rf"^{tmp_path / schema.SUMMARY_FILE}: the energy record "
                                         "has no histograms"):
        reprice(tmp_path, counting="value")
    with pytest.raises(BenchError, match=r"no `energy` record"):
        (tmp_path / schema.SUMMARY_FILE).write_text("{}")
        reprice(tmp_path)


def test_reprice_names_an_unknown_or_bad_setting(record):
    with pytest.raises(EnergySettingError, match="energy countng: is not an energy setting"):
        reprice(record, countng="value")
    with pytest.raises(EnergySettingError, match="energy counting: 'spikes' is unknown"):
        reprice(record, counting="spikes")
