"""`dataset=fake`: synthetic data with the shape and size of a real set, so throughput checks and
GPU runs work anywhere without a download.

`fake_like` picks the shape and the code path: cifar10 / cifar100 go through the CIFAR datamodule
(torchvision's per-image transforms on the host, or the device-resident batches on CUDA), cifar10dvs
through the CIFAR10-DVS datamodule ([T, 2, image_size, image_size] event-count frames, 9:1 split,
validation = test). Only the files are replaced: an in-memory dataset stands where torchvision's or
spikingjelly's would read them.

Sizes: `fake_images` (0: the real count, 50,000 CIFAR / 10,000 DVS; else >= 100). CIFAR-like: that
many "training file" images, a tenth held out for validation, and a fifth as many test images
(45,000 / 5,000 / 10,000 at the default, as CIFAR); DVS-like: that many samples, split 9:1. Each class has a random template and an image is the mean of its
class's template and uniform noise, so a model can learn something; labels are balanced. The
bytes depend only on (fake_like, fake_images, T, image_size): a fixed seed, whatever the run's.
The whole set lives in host memory, so its size is checked with the config, before anything is
generated: at most MAX_BYTES (README "Run configuration", Limits).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
import torchvision
from torch import Tensor

from bench.config import RunConfig
from bench.data.cifar import (CIFAR10DataModule, CIFAR100DataModule, CIFARDataModule,
                              cifar_split_sizes, resident_device)
from bench.data.dvs import (CIFAR10DVS_CLASS_NAMES, TRAIN_FRACTION, CIFAR10DVSDataModule,
                            ResizeFrames, stratified_sizes)
from bench.data.gpu import cuda_in_use
from bench.data.loaders import check_batch_limits
from bench.errors import BenchError

FAKE_SEED = 0  # train file; the test set uses FAKE_SEED + 1
REAL_COUNT = {"cifar10": 50_000, "cifar100": 50_000, "cifar10dvs": 10_000}
MAX_COUNT = 3  # DVS frames: event counts per pixel in 0..MAX_COUNT
MAX_BYTES = 4 * 2**30  # a fake set's uint8 images (generating it briefly takes twice that)
CIFAR_SHAPE = (32, 32, 3)


def synthetic_images(n: int, shape: Sequence[int], num_classes: int,
                     seed: int = FAKE_SEED) -> tuple[Tensor, Tensor]:
    """(n uint8 images of `shape` in 0..254, int64 labels with every class n // num_classes or
    one more times), from a generator seeded with `seed`: the same bytes for the same arguments."""
    gen = torch.Generator().manual_seed(seed)
    templates = torch.randint(0, 256, (num_classes, *shape), dtype=torch.uint8, generator=gen)
    labels = (torch.arange(n) % num_classes)[torch.randperm(n, generator=gen)]
    images = torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=gen)
    images.bitwise_right_shift_(1).add_(templates[labels].bitwise_right_shift_(1))
    return images, labels


class SyntheticCIFAR(torchvision.datasets.CIFAR10):
    """torchvision's CIFAR dataset over in-memory arrays: `.data` [N, 32, 32, 3] uint8, `.targets`,
    and CIFAR10's own __getitem__ (PIL image -> transform), so both CIFAR paths run unchanged."""

    def __init__(self, images: Tensor, labels: Tensor) -> None:
        torchvision.datasets.VisionDataset.__init__(self, "")
        self.train = True
        self.data: np.ndarray = images.numpy()
        self.targets: list[int] = labels.tolist()


class FakeCIFARDataModule(CIFARDataModule):
    """CIFARDataModule whose files are synthetic (`like`: cifar10 or cifar100)."""

    name = "fake"

    def __init__(self, like: str = "cifar10", images: int = 0, **kwargs: Any) -> None:
        real: type[CIFARDataModule] = {"cifar10": CIFAR10DataModule,
                                       "cifar100": CIFAR100DataModule}[like]
        self.like, self.n_images = like, images or REAL_COUNT[like]
        super().__init__("", dataset_cls=real.dataset_cls, val_size=self.n_images // 10, **kwargs)
        self.label = f"fake {real.label}"
        self.num_classes, self.mean, self.std = real.num_classes, real.mean, real.std

    @classmethod
    def from_config(cls, cfg: RunConfig) -> "FakeCIFARDataModule":
        return cls(cfg.fake_like, cfg.fake_images, batch_size=cfg.batch_size,
                   num_workers=cfg.num_workers, seed=cfg.seed, device=resident_device(cfg),
                   pin_memory=cuda_in_use(cfg.accelerator) and resident_device(cfg) is None)

    @classmethod
    def _check_files(cls, root: Any, dataset_cls: Any) -> None:
        """Nothing to check: no files."""

    def prepare_data(self) -> None:
        """Nothing to download."""

    def _load(self, train: bool, download: bool = False) -> SyntheticCIFAR:
        n = self.n_images if train else max(1, self.n_images // 5)
        seed = FAKE_SEED if train else FAKE_SEED + 1
        return SyntheticCIFAR(*synthetic_images(n, CIFAR_SHAPE, self.num_classes, seed))


class SyntheticFrames(torch.utils.data.Dataset):
    """What spikingjelly's CIFAR10DVS gives the datamodule: `.classes`, `.targets`, and
    (transform(float32 frames [T, 2, S, S]), label) items."""

    def __init__(self, frames: Tensor, labels: Tensor, transform: ResizeFrames) -> None:
        self.frames, self.transform = frames, transform
        self.targets: list[int] = labels.tolist()
        self.classes = list(CIFAR10DVS_CLASS_NAMES)
        self.root = "(synthetic)"

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return self.transform(self.frames[i].numpy().astype(np.float32)), self.targets[i]


class FakeDVSDataModule(CIFAR10DVSDataModule):
    """CIFAR10DVSDataModule whose event frames are synthetic (counts 0..MAX_COUNT per pixel)."""

    name = "fake"

    def __init__(self, images: int = 0, **kwargs: Any) -> None:
        super().__init__("", **kwargs)
        self.like, self.n_images = "cifar10dvs", images or REAL_COUNT["cifar10dvs"]

    @classmethod
    def from_config(cls, cfg: RunConfig) -> "FakeDVSDataModule":
        return cls(cfg.fake_images, T=cfg.T, image_size=cfg.image_size, batch_size=cfg.batch_size,
                   num_workers=cfg.num_workers, seed=cfg.seed,
                   pin_memory=cuda_in_use(cfg.accelerator))

    @classmethod
    def _check_events(cls, root: Any) -> None:
        """Nothing to check: no files."""

    def prepare_data(self) -> None:
        """Nothing to download or convert."""

    def _dataset(self) -> SyntheticFrames:
        shape = (self.T, 2, self.image_size, self.image_size)
        images, labels = synthetic_images(self.n_images, shape, self.num_classes)
        counts = images.floor_divide_(256 // (MAX_COUNT + 1))  # 0..254 -> 0..MAX_COUNT
        return SyntheticFrames(counts, labels, ResizeFrames(self.image_size))


class FakeData:
    """`dataset=fake`: the datamodule of `fake_like`'s shape."""

    name = "fake"

    @classmethod
    def check_available(cls, cfg: RunConfig) -> None:
        """Always available: generated in memory."""

    @classmethod
    def split_sizes(cls, cfg: RunConfig) -> dict[str, int]:
        """Images per split, as the datamodule of `fake_like` will hold them."""
        n = cfg.fake_images or REAL_COUNT[cfg.fake_like]
        if cfg.fake_like == "cifar10dvs":
            per_class = [n // 10 + (c < n % 10) for c in range(10)]  # synthetic_images' labels
            return stratified_sizes(per_class, TRAIN_FRACTION)
        return cifar_split_sizes(n, n // 10, max(1, n // 5))

    @classmethod
    def check_config(cls, cfg: RunConfig) -> None:
        """The set's bytes within MAX_BYTES and every batch limit giving a batch (one line)."""
        n, sizes = cfg.fake_images or REAL_COUNT[cfg.fake_like], cls.split_sizes(cfg)
        if cfg.fake_like == "cifar10dvs":  # one stored set: validation = test
            shape, stored = (1 if cfg.T is None else cfg.T, 2, cfg.image_size, cfg.image_size), n
        else:
            shape, stored = CIFAR_SHAPE, n + sizes["test"]
        size = stored * math.prod(shape)
        if size > MAX_BYTES:
            raise BenchError(f"config key 'fake_images': {stored} generated images of "
                             f"{'x'.join(map(str, shape))} bytes are {size / 2**30:.1f} GiB, over "
                             f"the {MAX_BYTES // 2**30} GiB a fake set may take in memory (fewer "
                             "images, or a smaller T or image_size)")
        check_batch_limits(cfg, sizes, f"fake {cfg.fake_like}")

    @classmethod
    def from_config(cls, cfg: RunConfig) -> FakeCIFARDataModule | FakeDVSDataModule:
        if cfg.fake_like == "cifar10dvs":
            return FakeDVSDataModule.from_config(cfg)
        return FakeCIFARDataModule.from_config(cfg)
