"""Datasets as LightningDataModules, chosen by `cfg.dataset`.

Every datamodule has `name`, `num_classes`, `in_channels`, `image_size` (H = W) and yields
(x, y) batches: x float32 [B, C, H, W] for images, [B, T, C, H, W] for DVS frames; y int64 [B].

    check_available(cfg)        # BenchError (one line) if the files are missing; costs nothing
    dm = build_datamodule(cfg)  # then trainer.fit(model, datamodule=dm)
"""

from __future__ import annotations

import lightning as L

from bench.config import RunConfig
from bench.data.cifar import CIFAR10DataModule, CIFAR100DataModule
from bench.data.digits import DigitsDataModule
from bench.data.dvs import CIFAR10DVSDataModule
from bench.data.fake import FakeData
from bench.errors import BenchError

# a datamodule class, or FakeData, which picks one by `fake_like`
DATAMODULES: dict[str, type[L.LightningDataModule] | type[FakeData]] = {
    cls.name: cls for cls in (DigitsDataModule, CIFAR10DataModule, CIFAR100DataModule,
                              CIFAR10DVSDataModule, FakeData)
}


def names() -> list[str]:
    return list(DATAMODULES)


def _datamodule_cls(cfg: RunConfig) -> type[L.LightningDataModule] | type[FakeData]:
    try:
        return DATAMODULES[cfg.dataset]
    except KeyError:
        known = ", ".join(names())
        raise BenchError(f"config key 'dataset': {cfg.dataset!r} is not one of {known}") from None


def check_available(cfg: RunConfig) -> None:
    """Raise BenchError naming the dataset, the folder looked in and how to get the files."""
    _datamodule_cls(cfg).check_available(cfg)


def build_datamodule(cfg: RunConfig) -> L.LightningDataModule:
    """The datamodule of `cfg.dataset`, configured from the run config (nothing is loaded yet)."""
    return _datamodule_cls(cfg).from_config(cfg)


__all__ = ["DATAMODULES", "build_datamodule", "check_available", "names", "CIFAR10DataModule",
           "CIFAR100DataModule", "CIFAR10DVSDataModule", "DigitsDataModule"]
