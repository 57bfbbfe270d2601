"""Price a run's recorded counts again under other energy settings, without the model.

    from bench.energy import reprice, SENSITIVITY
    report = reprice("results/study/runs/run-1", counting="value", sram="spikingjelly")
    grid = {row["label"]: reprice(summary, **row["settings"]).total_uj for row in SENSITIVITY}

A record's `energy.measured` (bench.energy.counting.Counts.to_record) holds every count and size
the energy models read, so pricing it again equals `estimate` on the same evaluation under those
settings, to the last bit (the counts go through JSON unchanged).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench import schema
from bench.energy.counting import Counts
from bench.energy.models import EnergyReport, EnergySettings, price, settings_with
from bench.errors import BenchError

# The report's sensitivity grid: each row a short label and the EnergySettings overrides it
# prices a record under. Counting x the price of a multi-level event, at the default SRAM law;
# then the other SRAM laws at the default counting and operation.
_DEFAULT = EnergySettings.defaults()
SENSITIVITY: tuple[dict[str, Any], ...] = (
    *({"label": f"{counting} counting, {op.upper()}",
       "settings": {"counting": counting, "multilevel_op": op}}
      for counting in EnergySettings.choice("counting") for op in EnergySettings.choice("multilevel_op")),
    *({"label": f"SRAM {law}", "settings": {"sram": law}}
      for law in EnergySettings.choice("sram") if law != _DEFAULT["sram"]),
)


def reprice(source: str | Path | dict[str, Any], **settings: Any) -> EnergyReport:
    """The energy of a recorded evaluation under `settings` (EnergySettings fields; those not
    given keep the record's own). `source`: a run or eval folder, its summary.json, the summary
    dict or its `energy` dict. BenchError (one line, naming the file) when the record has no
    measured counts: records written before bench kept them."""
    energy, where = _energy_of(source)
    measured = energy.get(schema.ENERGY_MEASURED)
    if not isinstance(measured, dict):
        raise BenchError(f"{where}: the energy record has no histograms (`energy."
                         f"{schema.ENERGY_MEASURED}`: written before bench kept them), so it "
                         "cannot be priced under other settings; evaluate the model again "
                         "(`bench eval`)")
    recorded = {k: v for k, v in energy.items() if k in EnergySettings.keys()}
    try:
        counts = Counts.from_record(measured)
    except (KeyError, TypeError, ValueError) as exc:
        raise BenchError(f"{where}: `energy.{schema.ENERGY_MEASURED}` is malformed "
                         f"({type(exc).__name__}: {exc})") from None
    return price(counts, settings_with(recorded, settings))


def _energy_of(source: str | Path | dict[str, Any]) -> tuple[dict[str, Any], str]:
    """(the `energy` dict, where it comes from in words) of any accepted source."""
    if isinstance(source, dict):
        if schema.ENERGY in source:  # a summary
            source, where = source[schema.ENERGY], "summary"
        else:
            where = "energy record"
        if not isinstance(source, dict):
            raise BenchError(f"{where}: `{schema.ENERGY}` is not an object")
        return source, where
    path = Path(source)
    if path.is_dir():
        path = path / schema.SUMMARY_FILE
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BenchError(f"{path}: cannot read a summary ({type(exc).__name__})") from None
    energy = summary.get(schema.ENERGY) if isinstance(summary, dict) else None
    if not isinstance(energy, dict):
        raise BenchError(f"{path}: no `{schema.ENERGY}` record (an energy estimate)")
    return energy, str(path)
