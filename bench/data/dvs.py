"""CIFAR10-DVS through spikingjelly: events integrated into T frames, resized on the fly.

Layout under <data_root>/CIFAR10DVS/ (spikingjelly's own):
    events_np/<class>/<file>.npz       events t, x, y, p (spikingjelly converts the official .aedat
                                       zips into this when it finds them in download/)
    frames_number_{T}_split_by_number/ frames [T, 2, 128, 128] written by spikingjelly on first use
Each sample comes out as float32 [T, 2, image_size, image_size] (event counts per pixel, area-
averaged when resized); batches are [B, T, 2, H, W] and the LightningModule makes them time-first.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from spikingjelly.datasets.cifar10_dvs import CIFAR10DVS, CIFAR10DVS_CLASS_NAMES
from torch import Tensor
from torch.utils.data import DataLoader, Subset

from bench.config import RunConfig
from bench.data.gpu import cuda_in_use
from bench.data.loaders import SplitDataModule, host_loader
from bench.errors import BenchError

FOLDER = "CIFAR10DVS"
SPLIT_SEED = 0  # the 9:1 split is the same for every run
TRAIN_FRACTION = 0.9
SAMPLES_PER_CLASS = 1000  # CIFAR10-DVS: 10,000 recordings


class ResizeFrames:
    """[T, 2, 128, 128] numpy frames -> [T, 2, size, size] float32 (area: mean event count)."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, frames: np.ndarray) -> Tensor:
        x = torch.from_numpy(frames)
        if x.shape[-1] == self.size and x.shape[-2] == self.size:
            return x
        return F.interpolate(x, size=(self.size, self.size), mode="area")


def stratified_split(targets: list[int], train_fraction: float,
                     seed: int = SPLIT_SEED) -> tuple[list[int], list[int]]:
    """Per class, a seeded shuffle and the first ceil(fraction * n) to train (as spikingjelly's
    split_to_train_test_set, without loading every sample to read its label)."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(targets)
    train, test = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        cut = math.ceil(len(idx) * train_fraction)
        train += idx[:cut].tolist()
        test += idx[cut:].tolist()
    return sorted(train), sorted(test)


def stratified_sizes(per_class: list[int], train_fraction: float) -> dict[str, int]:
    """Images per split of `stratified_split` for these class counts (validation = test)."""
    train = sum(math.ceil(n * train_fraction) for n in per_class)
    return {"train": train, "val": sum(per_class) - train, "test": sum(per_class) - train}


class CIFAR10DVSDataModule(SplitDataModule):
    name = "cifar10dvs"
    num_classes = 10
    in_channels = 2

    def __init__(
        self,
        data_root: str | Path = "data",
        *,
        T: int,  # frames per sample: the run config's T (its one default)
        image_size: int = 48,
        download: bool = False,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
        pin_memory: bool = False,
    ) -> None:
        super().__init__()
        self.root = Path(data_root) / FOLDER
        self.T, self.image_size, self.download = T, image_size, download
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.pin_memory = pin_memory
        self._splits: dict[str, Subset] | None = None

    @classmethod
    def from_config(cls, cfg: RunConfig) -> "CIFAR10DVSDataModule":
        return cls(cfg.data_root, T=cfg.T, image_size=cfg.image_size, download=cfg.download,
                   batch_size=cfg.batch_size, num_workers=cfg.num_workers, seed=cfg.seed,
                   pin_memory=cuda_in_use(cfg.accelerator))

    @classmethod
    def check_available(cls, cfg: RunConfig) -> None:
        if not cfg.download:
            cls._check_events(Path(cfg.data_root) / FOLDER)

    @classmethod
    def split_sizes(cls, cfg: RunConfig) -> dict[str, int]:
        return stratified_sizes([SAMPLES_PER_CLASS] * len(CIFAR10DVS_CLASS_NAMES), TRAIN_FRACTION)

    @classmethod
    def _check_events(cls, root: Path) -> None:
        events = root / "events_np"
        zips = [name for name, _, _ in CIFAR10DVS.resource_url_md5()]
        if all((root / "download" / z).is_file() for z in zips):
            return  # spikingjelly checks their md5, extracts and converts them offline
        missing = [c for c in CIFAR10DVS_CLASS_NAMES if not any((events / c).glob("*.npz"))]
        if missing:
            partly = len(missing) < len(CIFAR10DVS_CLASS_NAMES)
            which = f" (none for {', '.join(missing)})" if partly else ""
            raise BenchError(
                f"{cls.name}: no events in {events}/<class>/*.npz{which}; "
                f"put the 10 CIFAR10-DVS zips ({zips[0]} ... {zips[-1]}, figshare, listed in "
                f"spikingjelly.datasets.cifar10_dvs.CIFAR10DVS.resource_url_md5) in "
                f"{root / 'download'} for spikingjelly to convert, "
                f"or --set download=true when online"
            )

    # Lightning hooks -----------------------------------------------------------------------------

    def prepare_data(self) -> None:
        if not self.download:
            self._check_events(self.root)
        self._dataset()  # integrates events into frames on disk, once per T

    def setup(self, stage: str | None = None) -> None:
        if self._splits is not None:
            return
        if not self.download:
            self._check_events(self.root)
        full = self._dataset()
        if tuple(full.classes) != CIFAR10DVS_CLASS_NAMES:
            raise BenchError(f"{self.name}: class folders {full.classes} in {full.root} are not "
                             f"the 10 CIFAR10-DVS classes {', '.join(CIFAR10DVS_CLASS_NAMES)}")
        train_idx, test_idx = stratified_split(full.targets, TRAIN_FRACTION)
        test = Subset(full, test_idx)
        # CIFAR10-DVS has no official test set: validation and test both use the held-out 10 %
        self._splits = {"train": Subset(full, train_idx), "val": test, "test": test}

    # ---------------------------------------------------------------------------------------------

    def _dataset(self) -> CIFAR10DVS:
        self.root.mkdir(parents=True, exist_ok=True)  # spikingjelly's download step needs it
        try:
            return CIFAR10DVS(str(self.root), data_type="frame", frames_number=self.T,
                              split_by="number", transform=ResizeFrames(self.image_size))
        except (RuntimeError, OSError, NotImplementedError) as exc:  # e.g. a stale .building marker
            raise BenchError(f"{self.name}: spikingjelly could not prepare {self.root}: "
                             f"{str(exc).splitlines()[0]}") from None

    def _loader(self, split: str) -> DataLoader:
        if self._splits is None:
            self.setup()
        return host_loader(self._splits[split], batch_size=self.batch_size,
                           shuffle=split == "train", num_workers=self.num_workers, seed=self.seed,
                           pin_memory=self.pin_memory)
