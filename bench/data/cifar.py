"""CIFAR-10 / CIFAR-100 through torchvision's datasets (the python-pickle release).

Splits: train = 45,000 augmented training images, val = a fixed 5,000-image hold-out of the
training set (seed 0 whatever the run's seed, so every run is validated on the same images),
test = the official 10,000-image test set. On CUDA with `gpu_resident`, the uint8 sets live on the
device and batches are augmented there (bench/data/gpu.py); otherwise a DataLoader runs
torchvision's per-image transforms.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Iterable

import torch
import torchvision
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision import transforms

from bench.config import RunConfig
from bench.data.gpu import DeviceBatches, cuda_in_use, to_device_images
from bench.data.loaders import SplitDataModule, host_loader
from bench.errors import BenchError

SPLIT_SEED = 0  # the val hold-out is the same for every run
VAL_SIZE = 5000  # training images held out for validation
TRAIN_IMAGES, TEST_IMAGES = 50_000, 10_000  # CIFAR-10 and CIFAR-100 alike


def holdout_split(n: int, val_size: int, seed: int = SPLIT_SEED) -> tuple[Tensor, Tensor]:
    """(train indices, val indices): a seeded random `val_size` of range(n) and the rest."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[val_size:], perm[:val_size]


def cifar_split_sizes(train_file: int, val_size: int, test: int) -> dict[str, int]:
    """Images per split: the training file less its validation hold-out, the hold-out, test."""
    return {"train": train_file - val_size, "val": val_size, "test": test}


def resident_device(cfg: RunConfig) -> torch.device | None:
    """CUDA when the run trains there and asked for the resident path; None: DataLoader path."""
    return torch.device("cuda") if cfg.gpu_resident and cuda_in_use(cfg.accelerator) else None


class CIFARDataModule(SplitDataModule):
    """Common code of the CIFAR-10 and CIFAR-100 datamodules (they differ in class attributes)."""

    name: str
    label: str  # the dataset's usual spelling, for messages
    dataset_cls: type[torchvision.datasets.CIFAR10]
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    in_channels = 3
    image_size = 32

    def __init__(
        self,
        data_root: str | Path = "data",
        *,
        download: bool = False,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
        device: torch.device | str | None = None,
        val_size: int = VAL_SIZE,
        pin_memory: bool = False,
        dataset_cls: type[torchvision.datasets.CIFAR10] | None = None,
    ) -> None:
        """`device`: hold the sets there and augment batched (gpu.py); None: DataLoader path.

        `dataset_cls` replaces torchvision's class (same loading code); the tests pass one whose
        md5 list is empty, since torchvision checks every file's md5 on construction.
        """
        super().__init__()
        self.data_root = Path(data_root)
        self.download = download
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.device = torch.device(device) if device is not None else None
        self.val_size, self.pin_memory = val_size, pin_memory
        if dataset_cls is not None:
            self.dataset_cls = dataset_cls
        self._loaders: dict[str, Any] | None = None

    @classmethod
    def from_config(cls, cfg: RunConfig) -> "CIFARDataModule":
        return cls(cfg.data_root, download=cfg.download, batch_size=cfg.batch_size,
                   num_workers=cfg.num_workers, seed=cfg.seed, device=resident_device(cfg),
                   pin_memory=cuda_in_use(cfg.accelerator) and resident_device(cfg) is None)

    @classmethod
    def check_available(cls, cfg: RunConfig) -> None:
        if not cfg.download:
            cls._check_files(Path(cfg.data_root), cls.dataset_cls)

    @classmethod
    def split_sizes(cls, cfg: RunConfig) -> dict[str, int]:
        return cifar_split_sizes(TRAIN_IMAGES, VAL_SIZE, TEST_IMAGES)

    @classmethod
    def _check_files(cls, root: Path, dataset_cls: type[torchvision.datasets.CIFAR10]) -> None:
        folder = root / dataset_cls.base_folder
        names = [n for n, _ in dataset_cls.train_list + dataset_cls.test_list]
        names.append(dataset_cls.meta["filename"])
        missing = [n for n in names if not (folder / n).is_file()]
        if missing:
            which = "" if len(missing) == len(names) else f" (missing {', '.join(missing)})"
            raise BenchError(
                f"{cls.name}: no {cls.label} python files in {folder}{which}; "
                f"download {dataset_cls.filename} from {dataset_cls.url} and extract it in {root}, "
                f"or --set download=true when online"
            )

    # Lightning hooks -----------------------------------------------------------------------------

    def prepare_data(self) -> None:
        if self.download:
            for train in (True, False):
                self._load(train=train, download=True)
        else:
            self._check_files(self.data_root, self.dataset_cls)

    def setup(self, stage: str | None = None) -> None:
        if self._loaders is not None:  # Lightning calls setup for fit and again for test
            return
        self._check_files(self.data_root, self.dataset_cls)
        train, test = self._load(train=True), self._load(train=False)
        if not 0 < self.val_size < len(train):
            raise BenchError(f"{self.name}: val hold-out of {self.val_size} images needs more than "
                             f"the {len(train)} training images in {self.data_root}")
        train_idx, val_idx = holdout_split(len(train), self.val_size)
        if self.device is not None:
            self._loaders = self._device_loaders(train, test, train_idx, val_idx)
        else:
            self._loaders = self._cpu_loaders(train, test, train_idx, val_idx)

    # ---------------------------------------------------------------------------------------------

    def _loader(self, split: str) -> Iterable:
        if self._loaders is None:
            self.setup()
        return self._loaders[split]

    def _load(self, train: bool, download: bool = False) -> torchvision.datasets.CIFAR10:
        folder = self.data_root / self.dataset_cls.base_folder
        try:
            return self.dataset_cls(str(self.data_root), train=train, download=download)
        except RuntimeError as exc:  # torchvision: a file is missing or fails its md5 check
            raise BenchError(f"{self.name}: {self.label} files in {folder} failed torchvision's "
                             f"md5 check ({exc}); delete the folder and download "
                             f"{self.dataset_cls.filename} again") from None
        except OSError as exc:  # download=True offline, or an unreadable file
            raise BenchError(f"{self.name}: could not download or read {self.label} into {folder}: "
                             f"{str(exc).splitlines()[0]}") from None

    def _transforms(self) -> tuple[transforms.Compose, transforms.Compose]:
        to_input = [transforms.ToTensor(), transforms.Normalize(self.mean, self.std)]
        augment = [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip()]
        return transforms.Compose(augment + to_input), transforms.Compose(to_input)

    def _cpu_loaders(self, train: Dataset, test: Dataset, train_idx: Tensor,
                     val_idx: Tensor) -> dict[str, DataLoader]:
        train_tf, eval_tf = self._transforms()
        train.transform = train_tf
        # a shallow copy shares the decoded arrays; CIFAR10.__getitem__ reads `self.transform`
        plain = copy.copy(train)
        plain.transform = eval_tf
        test.transform = eval_tf
        return {
            "train": self._dataloader(Subset(train, train_idx.tolist()), shuffle=True),
            "val": self._dataloader(Subset(plain, val_idx.tolist()), shuffle=False),
            "test": self._dataloader(test, shuffle=False),
        }

    def _dataloader(self, dataset: Dataset, shuffle: bool) -> DataLoader:
        return host_loader(dataset, batch_size=self.batch_size, shuffle=shuffle,
                           num_workers=self.num_workers, seed=self.seed, pin_memory=self.pin_memory)

    def _device_loaders(self, train: Dataset, test: Dataset, train_idx: Tensor,
                        val_idx: Tensor) -> dict[str, DeviceBatches]:
        images = to_device_images(train.data, self.device)  # [50000, 3, 32, 32] uint8
        labels = torch.as_tensor(train.targets, dtype=torch.int64, device=self.device)
        train_idx, val_idx = train_idx.to(self.device), val_idx.to(self.device)

        def batches(x: Tensor, y: Tensor, augment: bool) -> DeviceBatches:
            return DeviceBatches(x, y, self.batch_size, self.mean, self.std, augment=augment,
                                 shuffle=augment, seed=self.seed)

        test_images = to_device_images(test.data, self.device)
        return {
            "train": batches(images[train_idx], labels[train_idx], augment=True),
            "val": batches(images[val_idx], labels[val_idx], augment=False),
            "test": batches(test_images, torch.as_tensor(test.targets), augment=False),
        }


class CIFAR10DataModule(CIFARDataModule):
    name = "cifar10"
    label = "CIFAR-10"
    dataset_cls = torchvision.datasets.CIFAR10
    num_classes = 10
    # per-channel mean / std of the 50,000 training images
    mean = (0.4914, 0.4822, 0.4465)
    std = (0.2470, 0.2435, 0.2616)


class CIFAR100DataModule(CIFARDataModule):
    name = "cifar100"
    label = "CIFAR-100"
    dataset_cls = torchvision.datasets.CIFAR100
    num_classes = 100
    mean = (0.5071, 0.4865, 0.4409)
    std = (0.2673, 0.2564, 0.2762)
