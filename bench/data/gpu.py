"""Device-resident image batches: the whole uint8 set lives on one device, augmentation is batched.

CIFAR's per-image PIL pipeline (RandomCrop, flip, ToTensor, Normalize) costs more CPU time per step
than a small spiking ResNet costs GPU time. Here the uint8 set (150 MB for CIFAR-10) is copied to
the device once and every batch is cropped, flipped and normalized by a handful of tensor ops, with
the same distribution as torchvision's RandomCrop(padding=pad, fill 0) + RandomHorizontalFlip(0.5)
+ ToTensor + Normalize. Nothing here assumes CUDA: the tests run it on the CPU.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def cuda_in_use(accelerator: str) -> bool:
    """Whether a run with this `accelerator` trains on CUDA (Lightning's "auto" picks it)."""
    return accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()


def to_device_images(images_hwc: np.ndarray, device: torch.device | str) -> Tensor:
    """[N, H, W, C] uint8 numpy (torchvision CIFAR's `.data`) -> [N, C, H, W] uint8 on `device`."""
    images = torch.from_numpy(np.ascontiguousarray(images_hwc))
    return images.permute(0, 3, 1, 2).contiguous().to(device)


def normalize(images: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """uint8 [B, C, H, W] -> float32 (x / 255 - mean) / std: the ops of ToTensor + Normalize."""
    return images.float().div_(255).sub_(mean).div_(std)


def random_crop_flip(images: Tensor, pad: int, generator: torch.Generator) -> Tensor:
    """Random crop of the zero-padded images and random horizontal flip, one gather for the batch.

    images [B, C, H, W] -> [B, C, H, W]; each image gets its own offsets (uniform in 0..2*pad, as
    torchvision's RandomCrop) and its own coin for the flip (p = 0.5).
    """
    b, c, h, w = images.shape
    dev = images.device
    padded = F.pad(images, (pad, pad, pad, pad))  # [B, C, H + 2p, W + 2p], fill 0 like RandomCrop
    top = torch.randint(0, 2 * pad + 1, (b, 1, 1), generator=generator, device=dev)
    left = torch.randint(0, 2 * pad + 1, (b, 1, 1), generator=generator, device=dev)
    flip = torch.rand((b, 1, 1), generator=generator, device=dev) < 0.5
    rows = top + torch.arange(h, device=dev).view(1, h, 1)  # [B, H, 1]
    cols = torch.arange(w, device=dev).view(1, 1, w)
    cols = left + torch.where(flip, cols.flip(-1), cols)  # [B, 1, W]; a flip reads backwards
    # flat pixel index into each padded plane, the same for every channel: [B, C, H * W]
    index = (rows * (w + 2 * pad) + cols).view(b, 1, h * w).expand(b, c, h * w)
    return padded.flatten(2).gather(2, index).view(b, c, h, w)


class DeviceBatches:
    """An iterable of (x float32 [B, C, H, W], y int64 [B]) batches cut from resident tensors.

    Lightning accepts any iterable with a length as a dataloader; each `iter()` (one epoch) draws a
    new order from the generator seeded once with `seed`, so a run is reproducible from its seed.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        batch_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        *,
        augment: bool,
        shuffle: bool,
        seed: int = 0,
        pad: int = 4,
        drop_last: bool = False,
    ) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"images must be uint8 [N, C, H, W], got {images.dtype} "
                             f"{tuple(images.shape)}")
        self.images = images
        self.labels = labels.to(images.device, torch.int64)
        self.batch_size = batch_size
        self.augment, self.shuffle, self.pad, self.drop_last = augment, shuffle, pad, drop_last
        dev = images.device
        self.mean = torch.tensor(mean, dtype=torch.float32, device=dev).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=dev).view(1, -1, 1, 1)
        self.generator = torch.Generator(device=dev).manual_seed(seed)

    @property
    def device(self) -> torch.device:
        return self.images.device

    def __len__(self) -> int:
        n = self.images.shape[0]
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        n = self.images.shape[0]
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator, device=self.device)
        else:
            order = torch.arange(n, device=self.device)
        for i in range(len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            x = self.images[idx]
            if self.augment:
                x = random_crop_flip(x, self.pad, self.generator)
            yield normalize(x, self.mean, self.std), self.labels[idx]
