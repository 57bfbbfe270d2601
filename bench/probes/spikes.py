"""Spike counts at every probe point (all neurons and residual sums), per image.

Forward hooks on the model's declared probe points (bench.models.probe_points: the module and
its ProbePoint, read from the model's contract) reduce each output to three device scalars
(summed spike counts z, non-zero count, largest z) during validation and test only, so training
steps pay nothing and there is no per-batch host sync.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from bench import schema
from bench.models import probe_points

SPLITS = ("val", "test")


class SpikeProbe(L.Callback):
    """Keeps `last[split]`: probe -> {kind, index, levels, neurons, spikes_per_image,
    nonzero_per_image, max_spike, rate} for the latest val epoch and the test run."""

    def __init__(self) -> None:
        self.last: dict[str, dict[str, dict[str, Any]]] = {}
        self._handles: list = []
        self._stats: dict[str, torch.Tensor] = {}  # probe -> [spikes, nonzero, max] on the device
        self._neurons: dict[str, int] = {}  # probe -> elements per image per timestep
        self._steps: dict[str, int] = {}  # probe -> timesteps of its output [T, B, ...]
        self._images = 0
        self._active = False
        self._meta: dict[str, tuple[str, int, int]] = {}

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self._handles:
            return
        for index, (name, (module, point)) in enumerate(probe_points(pl_module.model).items()):
            self._meta[name] = (point.kind, index, point.N)
            self._handles.append(module.register_forward_hook(
                self._hook(name, point.spike_scale)))

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def _hook(self, name: str, spike_scale: float):
        def hook(module: torch.nn.Module, inputs: Any, out: torch.Tensor) -> None:
            if not self._active:
                return
            z = torch.round(out.detach().float() * spike_scale)  # [T, B, ...] spike counts
            stats = torch.stack([z.sum(), (z > 0).sum().to(z.dtype), z.amax()])
            acc = self._stats.get(name)
            if acc is None:
                self._stats[name] = stats
                self._neurons[name], self._steps[name] = z[0, 0].numel(), z.shape[0]
            else:  # in place on the device: sums, and the running max
                acc[:2] += stats[:2]
                torch.maximum(acc[2], stats[2], out=acc[2])
        return hook

    def _start(self) -> None:
        self._stats, self._images, self._active = {}, 0, True

    def _count(self, batch: Any) -> None:
        self._images += int(batch[1].shape[0])

    def _finish(self, split: str, pl_module: L.LightningModule) -> None:
        self._active = False
        if not self._stats or self._images == 0:
            return
        names = list(self._stats)
        host = torch.stack([self._stats[n] for n in names]).cpu().tolist()  # one sync per epoch
        table: dict[str, dict[str, Any]] = {}
        for name, (spikes, nonzero, top) in zip(names, host):
            kind, index, levels = self._meta[name]
            neurons, T = self._neurons[name], self._steps[name]
            table[name] = {  # a layers.csv row but for split, epoch and probe
                schema.KIND: kind, schema.INDEX: index, schema.LEVELS: levels,
                schema.NEURONS: neurons,
                schema.SPIKES_PER_IMAGE: spikes / self._images,
                schema.NONZERO_PER_IMAGE: nonzero / self._images,
                schema.MAX_SPIKE: int(top),
                schema.RATE: spikes / self._images / (neurons * T),
            }
        self.last[split] = table
        total = sum(row[schema.SPIKES_PER_IMAGE] for row in table.values())
        pl_module.log(schema.logged(split, schema.SPIKES_TOTAL_PER_IMAGE), total)

    def summary(self, split: str) -> dict[str, Any]:
        """summary.json's spike fields of `split` (README "The run record")."""
        table = self.last.get(split, {})
        out: dict[str, Any] = {}
        # per-probe numbers and their sums (a layers.csv column is a summary field)
        for per_probe, total in ((schema.SPIKES_PER_IMAGE, schema.SPIKES_TOTAL_PER_IMAGE),
                                 (schema.NONZERO_PER_IMAGE, schema.NONZERO_TOTAL_PER_IMAGE)):
            out[per_probe] = {p: s[per_probe] for p, s in table.items()}
            out[total] = sum(out[per_probe].values()) if table else None
        out[schema.MAX_SPIKE_PER_PROBE] = {p: s[schema.MAX_SPIKE] for p, s in table.items()}
        return out

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._start()

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if self._active:
            self._count(batch)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if self._active:
            self._finish("val", pl_module)

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self._start()

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self._count(batch)

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._finish("test", pl_module)

    def state_dict(self) -> dict[str, Any]:
        return {"last": self.last}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.last = dict(state_dict.get("last", {}))
