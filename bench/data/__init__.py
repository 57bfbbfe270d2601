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
from bench.registry import DATASETS

# a datamodule class (with check_available(cfg) and from_config(cfg)), or FakeData, which picks
# one by `fake_like`; `fakeable`: dataset=fake can stand in for it (same shapes, generated);
# `label`: its name in the paper and report tables; `reads`: the config keys it acts on beyond
# the common ones (a report shows them only for runs on it; fake adds its fake_like set's)
DATASETS.register("digits", reads=())(DigitsDataModule)
DATASETS.register("cifar10", fakeable=True, label="CIFAR-10",
                  reads=("data_root", "download", "gpu_resident"))(CIFAR10DataModule)
DATASETS.register("cifar100", fakeable=True, label="CIFAR-100",
                  reads=("data_root", "download", "gpu_resident"))(CIFAR100DataModule)
DATASETS.register("cifar10dvs", fakeable=True, label="CIFAR10-DVS",
                  reads=("data_root", "download", "image_size"))(CIFAR10DVSDataModule)
DATASETS.register("fake", reads=("fake_like", "fake_images"))(FakeData)


def _datamodule_cls(cfg: RunConfig) -> type[L.LightningDataModule] | type[FakeData]:
    return DATASETS.get(cfg.dataset)


def check_available(cfg: RunConfig) -> None:
    """Raise BenchError naming the dataset, the folder looked in and how to get the files."""
    _datamodule_cls(cfg).check_available(cfg)


def build_datamodule(cfg: RunConfig) -> L.LightningDataModule:
    """The datamodule of `cfg.dataset`, configured from the run config (nothing is loaded yet)."""
    return _datamodule_cls(cfg).from_config(cfg)


__all__ = ["DATASETS", "build_datamodule", "check_available", "CIFAR10DataModule",
           "CIFAR100DataModule", "CIFAR10DVSDataModule", "DigitsDataModule"]
