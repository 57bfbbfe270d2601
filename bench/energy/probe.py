"""EnergyProbe: the Lightning callback that runs bench.energy's counting during evaluation.

It only wires the counter into a run: hooks `pl_module.model` at setup, counts during
validation and test epochs (never training steps, never the sanity check), prices the counts
with the run's EnergySettings, logs `{split}/energy_uj_per_image` and keeps the record.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl

from bench import schema
from bench.energy.counting import EnergyCounter
from bench.energy.models import EnergyReport, EnergySettings, price


class EnergyProbe(pl.Callback):
    def __init__(self, settings: EnergySettings | None = None) -> None:
        self.settings = settings or EnergySettings()
        self.last: dict[str, dict[str, Any]] = {}  # split -> EnergyReport.to_record()
        self.reports: dict[str, EnergyReport] = {}
        self._counter: EnergyCounter | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._counter is None:
            self._counter = EnergyCounter(pl_module.model)
            self._counter.active = False

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._counter is not None:
            self._counter.remove()
            self._counter = None

    def _start(self, trainer: pl.Trainer) -> None:
        if self._counter is not None and not trainer.sanity_checking:
            self._counter.reset()
            self._counter.active = True

    def _end(self, split: str, pl_module: pl.LightningModule) -> None:
        if self._counter is None or not self._counter.active:
            return
        self._counter.active = False
        if self._counter.images:
            report = price(self._counter.counts(), self.settings)
            self.reports[split], self.last[split] = report, report.to_record()
            pl_module.log(schema.logged(split, schema.ENERGY_UJ_PER_IMAGE), report.total_uj)
        self._counter.reset()

    def summary(self, split: str) -> dict[str, Any]:
        """summary.json's energy fields of `split`."""
        breakdown = self.last.get(split)
        total = breakdown[schema.ENERGY_TOTAL_UJ] if breakdown else None
        return {schema.ENERGY_UJ_PER_IMAGE: total, schema.ENERGY: breakdown}

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start(trainer)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._end("val", pl_module)

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start(trainer)

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._end("test", pl_module)

    def state_dict(self) -> dict[str, Any]:
        return {"settings": self.settings.to_dict(), "last": self.last}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.last = dict(state_dict.get("last", {}))
