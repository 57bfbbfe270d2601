"""scikit-learn's 8x8 digits: 1797 images shipped inside the package, so runs and tests need no
download. Small enough to live in three TensorDatasets."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from bench.config import RunConfig
from bench.data.loaders import SPLITS, SplitDataModule, host_loader

SPLIT_SEED = 0  # every run sees the same split, whatever its own seed
SPLIT_SIZES = (1400, 197, 200)  # train, val, test


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """(pixels [1797, 64] float64 in 0..16, labels [1797] int64), as sklearn's load_digits
    returns them. Read here from the CSV scikit-learn ships, with np.loadtxt as load_digits
    does: importing sklearn.datasets costs a run's start about 0.25 s for what is one file
    read (tests/test_data.py checks the arrays equal sklearn's own)."""
    spec = importlib.util.find_spec("sklearn")  # finds the package without importing it
    shipped = (Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
               / "digits.csv.gz") if spec and spec.submodule_search_locations else None
    if shipped is None or not shipped.is_file():  # another layout: ask sklearn itself
        from sklearn.datasets import load_digits as sklearn_digits

        digits = sklearn_digits()
        return digits.data, digits.target
    table = np.loadtxt(shipped, delimiter=",")
    return table[:, :-1], table[:, -1].astype(np.int64)


class DigitsDataModule(SplitDataModule):
    name = "digits"
    num_classes = 10
    in_channels = 1
    image_size = 8

    def __init__(self, batch_size: int = 64, num_workers: int = 0, seed: int = 0) -> None:
        super().__init__()
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self._splits: dict[str, TensorDataset] | None = None
        self.split_indices: dict[str, Tensor] = {}  # split -> rows of the digits table, after setup

    @classmethod
    def from_config(cls, cfg: RunConfig) -> "DigitsDataModule":
        return cls(batch_size=cfg.batch_size, num_workers=cfg.num_workers, seed=cfg.seed)

    @classmethod
    def check_available(cls, cfg: RunConfig) -> None:
        """Always available: the data ships with scikit-learn."""

    @classmethod
    def split_sizes(cls, cfg: RunConfig) -> dict[str, int]:
        return dict(zip(SPLITS, SPLIT_SIZES))

    def setup(self, stage: str | None = None) -> None:
        if self._splits is not None:
            return
        pixels, labels = load_digits()
        x = torch.from_numpy(pixels / 16.0).float().view(-1, 1, 8, 8)  # [1797, 1, 8, 8], 0..1
        y = torch.from_numpy(labels).long()
        perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(SPLIT_SEED))
        self.split_indices = dict(zip(SPLITS, torch.split(perm, SPLIT_SIZES)))
        self._splits = {split: TensorDataset(x[idx], y[idx])
                        for split, idx in self.split_indices.items()}

    def _loader(self, split: str) -> DataLoader:
        if self._splits is None:
            self.setup()
        return host_loader(self._splits[split], batch_size=self.batch_size,
                           shuffle=split == "train", num_workers=self.num_workers, seed=self.seed)
