"""What every datamodule shares: the three split loaders and the host-memory DataLoader."""

from __future__ import annotations

from typing import Iterable

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from bench.config import RunConfig
from bench.errors import BenchError

SPLITS = ("train", "val", "test")


def check_batch_limits(cfg: RunConfig, sizes: dict[str, int], what: str) -> None:
    """Lightning's own rule, applied before anything is loaded: a float limit takes
    int(share x batches) batches and stops the run when that is 0 (an int takes at most that
    many). Batches are ceil(images / batch_size): no loader drops its last batch."""
    for split, images in sizes.items():
        key = f"limit_{split}_batches"
        limit, batches = getattr(cfg, key), -(-images // cfg.batch_size)
        if isinstance(limit, float) and int(batches * limit) == 0:
            raise BenchError(f"config key '{key}': {limit!r} of the {batches} {split} batches of "
                             f"{what} ({images} images, batch_size {cfg.batch_size}) is no batch; "
                             f"give a share of at least 1/{batches} or a number of batches (an "
                             "integer)")


class SplitDataModule(L.LightningDataModule):
    """train/val/test loaders come from `_loader(split)`; subclasses build the splits.

    The training loader's shuffling generator is checkpointed (state_dict) and put back into the
    loader a resumed run creates, before Lightning draws from it: the resumed epochs see the
    batches the uninterrupted run would have seen.
    """

    _train_generator: torch.Generator | None = None
    _restored_generator: torch.Tensor | None = None

    @classmethod
    def split_sizes(cls, cfg: RunConfig) -> dict[str, int] | None:
        """Images in each split under `cfg`, known without loading anything (None: unknown,
        e.g. a plugin's data set: its limits are Lightning's to check)."""
        return None

    @classmethod
    def check_config(cls, cfg: RunConfig) -> None:
        """BenchError (one line, naming the key) for a batch limit that gives no batch; the
        run config calls this through the data set registry before anything is loaded."""
        sizes = cls.split_sizes(cfg)
        if sizes:
            check_batch_limits(cfg, sizes, getattr(cls, "label", cls.name))

    def train_dataloader(self) -> Iterable:
        loader = self._loader("train")
        gen = getattr(loader, "generator", None)
        if isinstance(gen, torch.Generator):
            if self._restored_generator is not None:
                gen.set_state(self._restored_generator)
                self._restored_generator = None
            self._train_generator = gen
        return loader

    def state_dict(self) -> dict:
        gen = self._train_generator
        return {"train_generator": gen.get_state()} if gen is not None else {}

    def load_state_dict(self, state_dict: dict) -> None:
        self._restored_generator = state_dict.get("train_generator")

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
