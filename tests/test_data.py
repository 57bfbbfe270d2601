"""bench.data on tiny files written in the real on-disk formats and read by the real loaders
(torchvision's CIFAR pickles, spikingjelly's events_np layout, scikit-learn's digits)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torchvision import transforms

from bench.config import RunConfig
from bench.data import build_datamodule, check_available
from bench.data.cifar import CIFAR10DataModule, CIFAR100DataModule, holdout_split
from bench.data.digits import DigitsDataModule
from bench.data.dvs import CIFAR10DVSDataModule, CIFAR10DVS_CLASS_NAMES
from bench.data.gpu import DeviceBatches, normalize, random_crop_flip
from bench.errors import BenchError

N_TRAIN, N_TEST, VAL = 20, 6, 5  # tiny CIFAR: 5 batches of 4 training images


def _without_md5(cls: type) -> type:
    """torchvision's class with its md5 list emptied; every other line of its loading runs.

    CIFAR10.__init__ calls _check_integrity and _load_meta checks the meta file, both against the
    md5 of the official release, whatever `download` says; synthetic files cannot match those
    digests, so this is the one place the tests replace them (with None: "file must exist").
    """
    return type(f"Tiny{cls.__name__}", (cls,), {
        "train_list": [[name, None] for name, _ in cls.train_list],
        "test_list": [[name, None] for name, _ in cls.test_list],
        "meta": dict(cls.meta, md5=None),
    })


TinyCIFAR10 = _without_md5(torchvision.datasets.CIFAR10)
TinyCIFAR100 = _without_md5(torchvision.datasets.CIFAR100)


def _dump(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)  # the release's pickles are protocol 2


def _images(n: int, seed: int) -> np.ndarray:
    """[n, 3, 32, 32] uint8 in 1..255, so the zero padding of a crop is recognisable."""
    return np.random.default_rng(seed).integers(1, 256, size=(n, 3, 32, 32), dtype=np.uint8)


def _rows(images: np.ndarray) -> np.ndarray:
    return images.reshape(len(images), 3072)  # the release's row: 1024 R, 1024 G, 1024 B, row-major


@pytest.fixture(scope="module")
def cifar10(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("cifar10")
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    train, test = _images(N_TRAIN, 1), _images(N_TEST, 2)
    train_y, test_y = [i % 10 for i in range(N_TRAIN)], [9, 0, 3, 5, 7, 1]
    for b in range(5):
        part = slice(4 * b, 4 * b + 4)
        _dump(folder / f"data_batch_{b + 1}", {
            "batch_label": f"training batch {b + 1} of 5", "labels": train_y[part],
            "data": _rows(train[part]), "filenames": [f"img_{i}.png" for i in range(4)]})
    _dump(folder / "test_batch", {"batch_label": "testing batch 1 of 1", "labels": test_y,
                                  "data": _rows(test), "filenames": ["t.png"] * N_TEST})
    _dump(folder / "batches.meta", {"num_cases_per_batch": 4, "num_vis": 3072,
                                    "label_names": [f"class{i}" for i in range(10)]})
    return {"root": root, "train": train, "train_y": train_y, "test": test, "test_y": test_y}


@pytest.fixture(scope="module")
def cifar100(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("cifar100")
    folder = root / "cifar-100-python"
    folder.mkdir()
    train, test = _images(N_TRAIN, 3), _images(N_TEST, 4)
    train_y, test_y = [5 * i for i in range(N_TRAIN)], [99, 0, 42, 17, 63, 88]
    for name, x, y in (("train", train, train_y), ("test", test, test_y)):
        _dump(folder / name, {"filenames": ["f.png"] * len(y), "batch_label": f"{name} batch",
                              "fine_labels": y, "coarse_labels": [v // 5 for v in y],
                              "data": _rows(x)})
    _dump(folder / "meta", {"fine_label_names": [f"fine{i}" for i in range(100)],
                            "coarse_label_names": [f"coarse{i}" for i in range(20)]})
    return {"root": root, "train": train, "train_y": train_y, "test": test, "test_y": test_y}


def _cifar10_dm(data: dict, **kw) -> CIFAR10DataModule:
    dm = CIFAR10DataModule(data["root"], batch_size=4, val_size=VAL, dataset_cls=TinyCIFAR10, **kw)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def _stack(loader) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*loader)
    return torch.cat(xs).cpu(), torch.cat(ys).cpu()


def assert_resident_eval_splits_match(host, resident) -> None:
    """The device-resident loaders of val and test give the host path's batches (pixels within
    float rounding of the batched normalisation, labels exactly)."""
    for split in ("val", "test"):
        ref_x, ref_y = _stack(getattr(host, f"{split}_dataloader")())
        loader = getattr(resident, f"{split}_dataloader")()
        assert isinstance(loader, DeviceBatches)
        x, y = _stack(loader)
        assert torch.equal(y, ref_y)
        torch.testing.assert_close(x, ref_x, rtol=0, atol=1e-6)


def _to_uint8(x: torch.Tensor, dm) -> torch.Tensor:
    """Normalization inverted: [B, 3, H, W] float -> the uint8 pixels it came from."""
    mean, std = torch.tensor(dm.mean).view(1, 3, 1, 1), torch.tensor(dm.std).view(1, 3, 1, 1)
    return ((x * std + mean) * 255).round().to(torch.uint8)


def _crops(images: torch.Tensor, pad: int = 4) -> torch.Tensor:
    """Every crop of the zero-padded images, and its mirror: [K, C, H, W] -> [K, M, C, H, W],
    M = 2 (2 pad + 1)^2."""
    k, c, h, w = images.shape
    padded = torch.nn.functional.pad(images, (pad, pad, pad, pad))
    windows = padded.unfold(2, h, 1).unfold(3, w, 1)  # [K, C, 2p + 1, 2p + 1, H, W]
    out = windows.permute(0, 2, 3, 1, 4, 5).reshape(k, -1, c, h, w)
    return torch.cat([out, out.flip(-1)], dim=1)


def _crop_source(x: torch.Tensor, crops: torch.Tensor) -> tuple[int, int]:
    """(image, crop) indices of the entry of `crops` [K, M, C, H, W] that `x` [C, H, W] equals;
    (-1, -1) if none."""
    hits = (crops == x).flatten(2).all(2).nonzero()
    return (int(hits[0, 0]), int(hits[0, 1])) if len(hits) else (-1, -1)


# ---- CIFAR through torchvision ------------------------------------------------------------------

def test_cifar10_test_set_comes_back_exact(cifar10):
    dm = _cifar10_dm(cifar10)
    x, y = _stack(dm.test_dataloader())
    assert x.dtype == torch.float32 and x.shape == (N_TEST, 3, 32, 32)
    assert y.dtype == torch.int64 and y.tolist() == cifar10["test_y"]
    assert torch.equal(_to_uint8(x, dm), torch.from_numpy(cifar10["test"]))
    assert (dm.num_classes, dm.in_channels, dm.image_size, dm.name) == (10, 3, 32, "cifar10")


def test_cifar10_val_is_a_fixed_unaugmented_holdout(cifar10):
    dm = _cifar10_dm(cifar10, seed=1)
    train_idx = dm.train_dataloader().dataset.indices
    val_idx = dm.val_dataloader().dataset.indices
    assert (len(train_idx), len(val_idx)) == (N_TRAIN - VAL, VAL)
    assert sorted(train_idx + val_idx) == list(range(N_TRAIN))
    x, y = _stack(dm.val_dataloader())
    assert torch.equal(_to_uint8(x, dm), torch.from_numpy(cifar10["train"][val_idx]))
    assert y.tolist() == [cifar10["train_y"][i] for i in val_idx]
    other = _cifar10_dm(cifar10, seed=7)  # the hold-out does not move with the run's seed
    assert other.val_dataloader().dataset.indices == val_idx


def test_cifar10_train_augmentation_crops_and_flips(cifar10):
    dm = _cifar10_dm(cifar10)
    train = dm.train_dataloader().dataset
    originals = torch.from_numpy(cifar10["train"])
    crops = _crops(originals)
    torch.manual_seed(0)
    changed = 0
    for k in range(len(train)):
        x, y = train[k]
        assert x.shape == (3, 32, 32) and y == cifar10["train_y"][train.indices[k]]
        pixels = _to_uint8(x[None], dm)[0]
        row = train.indices[k]
        assert _crop_source(pixels, crops[row:row + 1])[0] == 0  # a crop / mirror of its own image
        changed += not torch.equal(pixels, originals[row])
    assert changed >= len(train) - 2  # the identity crop has probability 1/162


def test_cifar100_fine_labels_and_pixels(cifar100):
    dm = CIFAR100DataModule(cifar100["root"], batch_size=4, val_size=VAL, dataset_cls=TinyCIFAR100)
    dm.prepare_data()
    dm.setup()
    x, y = _stack(dm.test_dataloader())
    assert y.tolist() == cifar100["test_y"]
    assert torch.equal(_to_uint8(x, dm), torch.from_numpy(cifar100["test"]))
    assert len(dm.train_dataloader().dataset) == N_TRAIN - VAL
    assert len(dm.val_dataloader().dataset) == VAL
    assert (dm.num_classes, dm.in_channels, dm.image_size, dm.name) == (100, 3, 32, "cifar100")


def test_cifar_corrupted_files_fail_torchvision_md5_with_one_line(cifar10):
    dm = CIFAR10DataModule(cifar10["root"], val_size=VAL)  # torchvision's own md5 list
    with pytest.raises(BenchError, match="md5") as err:
        dm.setup()
    assert "cifar10" in str(err.value) and "cifar-10-batches-py" in str(err.value)
    assert "\n" not in str(err.value)


# ---- the device-resident path, run on the CPU ---------------------------------------------------

def test_device_path_matches_torchvision_path_on_eval_splits(cifar10):
    cpu, resident = _cifar10_dm(cifar10), _cifar10_dm(cifar10, device="cpu")
    assert_resident_eval_splits_match(cpu, resident)


def test_device_path_train_batches_are_crops_of_the_training_images(cifar10):
    dm = _cifar10_dm(cifar10, device="cpu")
    loader = dm.train_dataloader()
    batches = list(loader)
    assert len(loader) == len(batches) == 4  # 15 images in batches of 4
    assert [tuple(x.shape) for x, _ in batches] == [(4, 3, 32, 32)] * 3 + [(3, 3, 32, 32)]
    crops = _crops(torch.from_numpy(cifar10["train"]))
    seen = []
    for x, y in batches:
        for image, label in zip(_to_uint8(x, dm), y.tolist()):
            k, _ = _crop_source(image, crops)
            assert k >= 0 and cifar10["train_y"][k] == label
            seen.append(k)
    # each training image once an epoch
    assert sorted(seen) == sorted(holdout_split(N_TRAIN, VAL)[0].tolist())


def test_random_crop_flip_without_padding_is_identity_or_mirror():
    images = torch.randint(0, 256, (64, 3, 5, 7), dtype=torch.uint8)
    out = random_crop_flip(images, pad=0, generator=torch.Generator().manual_seed(0))
    same = (out == images).flatten(1).all(1)
    mirrored = (out == images.flip(-1)).flatten(1).all(1)
    assert bool((same | mirrored).all())
    assert 0 < int(mirrored.sum()) < 64  # both outcomes happen (p = 2^-63 otherwise)


def test_random_crop_flip_picks_each_crop_of_the_padded_image():
    images = torch.randint(1, 256, (48, 3, 32, 32), dtype=torch.uint8)
    out = random_crop_flip(images, pad=4, generator=torch.Generator().manual_seed(1))
    assert out.shape == images.shape and out.dtype == torch.uint8
    crops = _crops(images)
    found = [_crop_source(o, crops[i:i + 1]) for i, o in enumerate(out)]
    assert all(k == 0 for k, _ in found)  # every output is a crop / mirror of its own image
    assert len({c for _, c in found}) > 20  # offsets and flips vary across the batch


def test_normalize_equals_totensor_normalize():
    mean, std = CIFAR10DataModule.mean, CIFAR10DataModule.std
    images = torch.randint(0, 256, (3, 32, 32, 3), dtype=torch.uint8)
    reference = transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean, std)])
    expected = torch.stack([reference(Image.fromarray(im.numpy())) for im in images])
    got = normalize(images.permute(0, 3, 1, 2), torch.tensor(mean).view(1, 3, 1, 1),
                    torch.tensor(std).view(1, 3, 1, 1))
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


def test_device_batches_order_is_seeded():
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 1, 2, 2).contiguous()
    labels = torch.arange(10)

    def epoch(seed: int, shuffle: bool = True) -> list[int]:
        b = DeviceBatches(images, labels, 3, (0.0,), (1.0,), augment=False, shuffle=shuffle,
                          seed=seed)
        xs, ys = _stack(b)
        # each image's pixels hold its index: they travel with their labels
        assert torch.equal((xs[:, 0, 0, 0] * 255).round(), ys.float())
        return ys.tolist()

    assert epoch(0, shuffle=False) == list(range(10))
    assert epoch(3) == epoch(3) != epoch(4)
    assert sorted(epoch(3)) == list(range(10))
    assert len(DeviceBatches(images, labels, 3, (0.0,), (1.0,), augment=False, shuffle=False,
                             drop_last=True)) == 3


def test_lightning_trains_on_device_batches(cifar10):
    import lightning as L

    class Linear(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(3 * 32 * 32, 10)

        def training_step(self, batch, _):
            x, y = batch
            return torch.nn.functional.cross_entropy(self.fc(x.flatten(1)), y)

        def validation_step(self, batch, _):
            self.log("val/loss", self.training_step(batch, _))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    dm = CIFAR10DataModule(cifar10["root"], batch_size=4, val_size=VAL, dataset_cls=TinyCIFAR10,
                           device="cpu")
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(Linear(), datamodule=dm)
    assert trainer.global_step == 2 * 4  # 15 training images in batches of 4, two epochs
    assert np.isfinite(float(trainer.callback_metrics["val/loss"]))


# ---- CIFAR10-DVS through spikingjelly -----------------------------------------------------------

T, SIZE, FILES_PER_CLASS = 2, 16, 10


@pytest.fixture(scope="module")
def dvs(tmp_path_factory) -> dict:
    """events_np/<class>/cifar10_<class>_<i>.npz with t, x, y, p as spikingjelly's converter
    writes them; the datamodule integrates them into frames once for the module."""
    data_root = tmp_path_factory.mktemp("dvs")
    rng = np.random.default_rng(0)
    events = {}
    for cls in CIFAR10DVS_CLASS_NAMES:
        folder = data_root / "CIFAR10DVS" / "events_np" / cls
        folder.mkdir(parents=True)
        for i in range(FILES_PER_CLASS):
            n = int(rng.integers(20, 60))
            ev = {"t": np.sort(rng.integers(0, 10**6, n)).astype(np.uint32),
                  "x": rng.integers(0, 128, n).astype(np.uint32),
                  "y": rng.integers(0, 128, n).astype(np.uint32),
                  "p": rng.integers(0, 2, n).astype(np.int64)}
            name = f"cifar10_{cls}_{i}.npz"
            np.savez_compressed(folder / name, **ev)
            events[name] = ev
    dm = _dvs_dm(data_root, SIZE)
    return {"root": data_root, "events": events, "dm": dm}


def _dvs_dm(data_root: Path, size: int) -> CIFAR10DVSDataModule:
    dm = CIFAR10DVSDataModule(data_root, T=T, image_size=size, batch_size=8)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def _reference_frames(ev: dict) -> np.ndarray:
    """[T, 2, 128, 128] event counts: T equal-count slices of the file's events, pixel [p, y, x]."""
    frames = np.zeros((T, 2, 128, 128))
    n = len(ev["t"])
    bounds = [i * (n // T) for i in range(T)] + [n]  # the last slice takes the remainder
    for k in range(T):
        s = slice(bounds[k], bounds[k + 1])
        np.add.at(frames[k], (ev["p"][s], ev["y"][s], ev["x"][s]), 1)
    return frames


def _file_of(subset, k: int) -> str:
    return Path(subset.dataset.samples[subset.indices[k]][0]).name


def test_dvs_frames_keep_every_event_after_resize(dvs):
    dm = dvs["dm"]
    assert (dm.num_classes, dm.in_channels, dm.image_size, dm.name) == (10, 2, SIZE, "cifar10dvs")
    assert (dvs["root"] / "CIFAR10DVS" / f"frames_number_{T}_split_by_number").is_dir()
    x, y = next(iter(dm.val_dataloader()))
    assert x.dtype == torch.float32 and x.shape == (8, T, 2, SIZE, SIZE)
    assert y.dtype == torch.int64
    test = dm.val_dataloader().dataset
    for k in range(len(test)):
        frames, label = test[k]
        name = _file_of(test, k)
        assert CIFAR10DVS_CLASS_NAMES[label] in name
        counts = _reference_frames(dvs["events"][name]).sum(axis=(2, 3))  # [T, 2] per polarity
        # area resize 128 -> 16 averages 8x8 blocks: the sum times 64 is the event count
        per_frame = frames.sum(dim=(2, 3)).numpy() * (128 // SIZE) ** 2
        np.testing.assert_allclose(per_frame, counts, rtol=1e-6)
        assert counts.sum() == len(dvs["events"][name]["t"])


def test_dvs_full_resolution_frames_equal_reference(dvs):
    dm = _dvs_dm(dvs["root"], 128)  # same T: reuses the frames spikingjelly wrote
    test = dm.test_dataloader().dataset
    for k in range(len(test)):
        frames, _ = test[k]
        expected = _reference_frames(dvs["events"][_file_of(test, k)])
        np.testing.assert_array_equal(frames.numpy(), expected)


def test_dvs_split_is_stratified_9_to_1_and_fixed(dvs):
    dm = dvs["dm"]
    train, val, test = (getattr(dm, f"{s}_dataloader")().dataset for s in ("train", "val", "test"))
    assert (len(train), len(test)) == (90, 10) and val.indices == test.indices
    assert not set(train.indices) & set(test.indices)
    targets = np.asarray(train.dataset.targets)
    assert np.bincount(targets[test.indices], minlength=10).tolist() == [1] * 10
    again = CIFAR10DVSDataModule(dvs["root"], T=T, image_size=SIZE, seed=5)
    again.setup()
    assert again.test_dataloader().dataset.indices == test.indices


# ---- digits ------------------------------------------------------------------------------------

def test_digits_split_is_fixed_disjoint_and_scaled():
    from sklearn.datasets import load_digits

    from bench.data.digits import load_digits as bench_digits

    a, b = DigitsDataModule(seed=0), DigitsDataModule(seed=1)
    a.setup(), b.setup()
    sizes = {k: len(v) for k, v in a.split_indices.items()}
    assert sizes == {"train": 1400, "val": 197, "test": 200}
    rows = torch.cat(list(a.split_indices.values()))
    assert sorted(rows.tolist()) == list(range(1797))
    for split in ("train", "val", "test"):
        assert torch.equal(a.split_indices[split], b.split_indices[split])
    digits = load_digits()
    pixels, labels = bench_digits()  # read without importing sklearn: the same arrays
    np.testing.assert_array_equal(pixels, digits.data)
    np.testing.assert_array_equal(labels, digits.target)
    assert pixels.dtype == digits.data.dtype and labels.dtype == digits.target.dtype
    x, y = _stack(a.test_dataloader())
    idx = a.split_indices["test"].numpy()
    assert x.shape == (200, 1, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64
    expected = (digits.data[idx] / 16).astype(np.float32)
    np.testing.assert_array_equal(x.view(200, 64).numpy(), expected)
    np.testing.assert_array_equal(y.numpy(), digits.target[idx])
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    first = lambda dm: next(iter(dm.train_dataloader()))[1].tolist()  # noqa: E731
    assert first(a) == first(DigitsDataModule(seed=0)) != first(b)  # shuffling follows the seed


# ---- the factory and missing data --------------------------------------------------------------

@pytest.mark.parametrize("dataset,attrs", [
    ("digits", (DigitsDataModule, 10, 1, 8)),
    ("cifar10", (CIFAR10DataModule, 10, 3, 32)),
    ("cifar100", (CIFAR100DataModule, 100, 3, 32)),
    ("cifar10dvs", (CIFAR10DVSDataModule, 10, 2, 24)),
])
def test_build_datamodule_picks_by_name(tmp_path, dataset, attrs):
    dm = build_datamodule(RunConfig(dataset=dataset, data_root=str(tmp_path), image_size=24, T=3))
    assert (type(dm), dm.num_classes, dm.in_channels, dm.image_size) == attrs
    assert dm.name == dataset
    if dataset in ("cifar10", "cifar100"):
        assert dm.device == (torch.device("cuda") if torch.cuda.is_available() else None)
        cpu = build_datamodule(RunConfig(dataset=dataset, accelerator="cpu"))
        assert cpu.device is None  # the resident path only when training on CUDA


@pytest.mark.parametrize("dataset,folder", [
    ("cifar10", "cifar-10-batches-py"),
    ("cifar100", "cifar-100-python"),
    ("cifar10dvs", "CIFAR10DVS/events_np"),
])
def test_missing_data_is_one_line_naming_dataset_and_path(tmp_path, dataset, folder):
    root = tmp_path / "nodata"
    cfg = RunConfig(dataset=dataset, data_root=str(root))
    for attempt in (lambda: check_available(cfg), build_datamodule(cfg).prepare_data,
                    build_datamodule(cfg).setup):
        with pytest.raises(BenchError) as err:
            attempt()
        message = str(err.value)
        assert message.startswith(f"{dataset}: ") and str(root / folder) in message
        assert "\n" not in message and "download=true" in message
    assert not root.exists()  # nothing written, no half-made spikingjelly folders
