"""scikit-learn's 8x8 digits: 1797 images shipped inside the package, so runs and tests need no
download. Small enough to live in three TensorDatasets."""

from __future__ import annotations

import lightning as L
import torch
from sklearn.datasets import load_digits
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from bench.config import RunConfig

SPLIT_SEED = 0  # every run sees the same split, whatever its own seed
SPLIT_SIZES = (1400, 197, 200)  # train, val, test


class DigitsDataModule(L.LightningDataModule):
    name = "digits"
    num_classes = 10
    in_channels = 1
    image_size = 8

    def __init__(self, batch_size: int = 64, num_workers: int = 0, seed: int = 0) -> None:
        super().__init__()
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self._splits: dict[str, TensorDataset] | None = None
        self.split_indices: dict[str, Tensor] = {}  # split -> rows of load_digits(), after setup

    @classmethod
    def from_config(cls, cfg: RunConfig) -> "DigitsDataModule":
        return cls(batch_size=cfg.batch_size, num_workers=cfg.num_workers, seed=cfg.seed)

    @classmethod
    def check_available(cls, cfg: RunConfig) -> None:
        """Always available: the data ships with scikit-learn."""

    def setup(self, stage: str | None = None) -> None:
        if self._splits is not None:
            return
        digits = load_digits()
        x = torch.from_numpy(digits.data / 16.0).float().view(-1, 1, 8, 8)  # [1797, 1, 8, 8], 0..1
        y = torch.from_numpy(digits.target).long()
        perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(SPLIT_SEED))
        self.split_indices = dict(zip(("train", "val", "test"), torch.split(perm, SPLIT_SIZES)))
        self._splits = {split: TensorDataset(x[idx], y[idx])
                        for split, idx in self.split_indices.items()}

    def train_dataloader(self) -> DataLoader:
        return self._dataloader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._dataloader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._dataloader("test", shuffle=False)

    def _dataloader(self, split: str, shuffle: bool) -> DataLoader:
        if self._splits is None:
            self.setup()
        return DataLoader(
            self._splits[split], batch_size=self.batch_size, shuffle=shuffle,
            num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
            generator=torch.Generator().manual_seed(self.seed) if shuffle else None,
        )
