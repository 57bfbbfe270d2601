"""EnergySettings is the one declaration of the energy settings: the run config's energy_* keys
are its fields with its defaults, and its check bounds every value."""

from __future__ import annotations

import dataclasses

import pytest

from bench import config
from bench.cli import main
from bench.energy import EnergySettingError, EnergySettings
from bench.energy.settings import MAX_FIFO, RUN_KEYS
from bench.errors import BenchError
from bench.report.load import ENERGY_KEYS


def test_run_config_energy_keys_are_energy_settings_fields_with_their_defaults():
    defaults = EnergySettings.defaults()
    run = {k: v for k, v in config.RunConfig().to_dict().items() if k.startswith("energy_")}
    assert run == {f"energy_{k}": defaults[k] for k in RUN_KEYS}
    assert ENERGY_KEYS == tuple(run)  # the report groups runs by the same keys
    assert set(RUN_KEYS) <= set(EnergySettings.keys())
    assert config.RunConfig().energy_settings() == EnergySettings()
    # every config key's type is its field's (the config coerces `--set` values by it)
    kinds = {f.name: f.type for f in dataclasses.fields(config.RunConfig)}
    fields = {f.name: f.type for f in dataclasses.fields(EnergySettings)}
    assert all(kinds[f"energy_{k}"] == fields[k] for k in RUN_KEYS)


@pytest.mark.parametrize("value,message", [
    (0, "must be an integer from 1 to"), (MAX_FIFO + 1, f"from 1 to {MAX_FIFO}"),
    (10**23, f"from 1 to {MAX_FIFO}"), (True, "must be an integer"), (1000.0, "an integer"),
])
def test_fifo_is_a_bounded_integer(value, message):
    with pytest.raises(EnergySettingError, match=f"energy fifo: .*{message}"):
        EnergySettings(fifo=value)
    assert EnergySettings(fifo=MAX_FIFO).fifo == MAX_FIFO


@pytest.mark.parametrize("key,value", [("mem_bits", 64), ("op_bits", 16), ("mem_bits", "32"),
                                       ("buffers", "batch"), ("static_input_once", 1)])
def test_widths_and_names_are_checked(key, value):
    with pytest.raises(EnergySettingError, match=f"energy {key}: "):
        EnergySettings(**{key: value})


@pytest.mark.parametrize("text,message", [
    ("1.0e+23", f"'energy_fifo': .* from 1 to {MAX_FIFO}"),
    ("", "'energy_fifo': empty; give it a value"),
    ("null", "'energy_fifo': null is not a valid int"),
    ("0", "'energy_fifo': 0 must be"),
])
def test_run_config_refuses_a_bad_fifo_in_one_line(text, message):
    with pytest.raises(BenchError, match=message):
        config.build_config(config.parse_sets([f"energy_fifo={text}"]))


def test_cli_refuses_an_empty_fifo_with_exit_2(capsys, tmp_path):
    code = main(["run", "--set", "energy_fifo=", "--set", f"results={tmp_path}",
                 "--set", "wandb=disabled"])
    err = capsys.readouterr().err
    assert code == 2 and "energy_fifo" in err and "Traceback" not in err
    assert not any(tmp_path.iterdir())  # refused before anything was written
