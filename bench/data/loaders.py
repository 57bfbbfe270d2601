"""What every datamodule shares: the three split loaders and the host-memory DataLoader."""

from __future__ import annotations

from typing import Iterable

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset


class SplitDataModule(L.LightningDataModule):
    """train/val/test loaders come from `_loader(split)`; subclasses build the splits."""

    def train_dataloader(self) -> Iterable:
        return self._loader("train")

    def val_dataloader(self) -> Iterable:
        return self._loader("val")

    def test_dataloader(self) -> Iterable:
        return self._loader("test")

    def _loader(self, split: str) -> Iterable:
        raise NotImplementedError


def host_loader(dataset: Dataset, *, batch_size: int, shuffle: bool, num_workers: int, seed: int,
                pin_memory: bool = False) -> DataLoader:
    """A DataLoader whose shuffling depends on `seed` only (not on the global RNG)."""
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers,
        generator=torch.Generator().manual_seed(seed) if shuffle else None,
        pin_memory=pin_memory, persistent_workers=num_workers > 0,
    )
