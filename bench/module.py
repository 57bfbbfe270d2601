"""The LightningModule: any registered model x neuron settings x dataset, trained on T-averaged logits.

The science lives here (loss, accuracy, optimiser); cross-cutting measurements (spikes, gradient
norms, energy, the run record) are callbacks in bench/probes and bench/record.py.
"""

from __future__ import annotations

from typing import Any, Mapping

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from bench import schema
from bench.config import RunConfig
from bench.models import ARCHITECTURES, build_model

SPLITS = ("train", "val", "test")
LOSS_NAMES = {"train": "loss", "val": "validation loss", "test": "test loss"}


class Diverged(FloatingPointError):
    """The loss went NaN or infinite: these settings diverge, the run stops at once (its
    record's status is "diverged")."""


def _run_config(config: RunConfig | Mapping[str, Any]) -> RunConfig:
    if isinstance(config, RunConfig):
        return config
    from bench.config import build_config, record_layer

    # a checkpoint written by another bench version may hold keys this one no longer knows;
    # it runs none of the plugin files it names unless they were passed again
    return build_config(record_layer(config, "the checkpoint's config"))


class SpikingClassifier(L.LightningModule):
    """`config` is a RunConfig or its dict: the hyperparameters saved in a checkpoint are exactly
    this constructor's arguments, so `SpikingClassifier.load_from_checkpoint(path)` needs no other."""

    def __init__(self, config: RunConfig | Mapping[str, Any], num_classes: int,
                 in_channels: int) -> None:
        super().__init__()
        cfg = self.cfg = _run_config(config)
        # kept in checkpoints, not sent to the loggers: W&B gets the resolved config once
        # (bench.tracking), not a second nested copy as config.<key>
        self.save_hyperparameters({"config": cfg.to_dict(), "num_classes": num_classes,
                                   "in_channels": in_channels}, logger=False)
        options = {k: getattr(cfg, k) for k in ARCHITECTURES.meta(cfg.arch, "options", {})}
        self.model = build_model(cfg.arch, num_classes=num_classes, in_channels=in_channels,
                                 T=cfg.T, neurons=cfg.neuron_settings(), **options)
        if cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        # ModuleDict keys can't be "train" (nn.Module.train), hence the split_ prefix
        self.acc = torch.nn.ModuleDict(
            {f"split_{s}": MulticlassAccuracy(num_classes, average="micro") for s in SPLITS})
        self.loss_mean = torch.nn.ModuleDict({f"split_{s}": MeanMetric() for s in SPLITS})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [B, C, H, W] images, or [B, T, C, H, W] frames from a DataLoader -> model wants [T, B, ...]
        if x.dim() == 5:
            x = x.transpose(0, 1)
        if self.cfg.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        # every spiking model resets its neuron state at the start of forward: no leak between batches
        return self.model(x)  # [B, classes], averaged over T

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], split: str) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        # one host sync per step; a NaN must stop the run before it reaches the metrics and
        # the probes (a validation epoch on NaN weights after a finite last training loss too)
        if not torch.isfinite(loss):
            what = "NaN" if torch.isnan(loss) else "infinite"
            raise Diverged(f"{LOSS_NAMES[split]} is {what} at epoch {self.current_epoch}, "
                           f"step {self.global_step}")
        acc, mean = self.acc[f"split_{split}"], self.loss_mean[f"split_{split}"]
        acc.update(logits.detach(), y)
        mean.update(loss.detach(), weight=y.shape[0])
        on_step = split == "train"
        self.log(schema.logged(split, schema.LOSS), mean, on_step=False, on_epoch=True)
        self.log(schema.logged(split, schema.ACC), acc, on_step=False, on_epoch=True,
                 prog_bar=split != "test")
        if on_step:
            self.log("train/loss_step", loss.detach(), on_step=True, on_epoch=False, prog_bar=True)
        return loss

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._step(batch, "test")

    def configure_optimizers(self):
        cfg, lr = self.cfg, self.cfg.resolved_lr()
        if cfg.optimizer == "sgd":
            opt = torch.optim.SGD(self.parameters(), lr=lr, momentum=cfg.momentum,
                                  weight_decay=cfg.weight_decay)
        else:
            opt = torch.optim.Adam(self.parameters(), lr=lr, weight_decay=cfg.weight_decay)
        if cfg.schedule == "none":
            return opt
        steps = max(1, int(self.trainer.estimated_stepping_batches))
        if cfg.schedule == "cosine":
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
        else:
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
