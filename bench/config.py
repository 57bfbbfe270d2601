"""Run configuration: a frozen dataclass of plain literals (nanoGPT style).

A run is described by defaults < YAML file < `--set key=value` overrides. Unknown keys and bad
values raise BenchError naming the key and the allowed values.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

import yaml

from bench.errors import BenchError

DATASETS = ("digits", "cifar10", "cifar100", "cifar10dvs", "fake")
FAKE_LIKE = ("cifar10", "cifar100", "cifar10dvs")
ESTIMATORS = ("sigmoid", "ste", "ste_clipped")
OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("cosine", "onecycle", "none")
ROUNDINGS = ("floor", "round")
ENERGY_PRESETS = ("horowitz45", "snn_convention")
ENERGY_COUNTINGS = ("value", "event")
WANDB_MODES = ("offline", "online", "disabled")
PRECISIONS = ("32", "bf16-mixed", "16-mixed")


@dataclass(frozen=True)
class RunConfig:
    # what to train
    dataset: str = "digits"
    arch: str = "sparse_resnet18"
    T: int = 1  # timesteps
    N: int = 4  # spike levels per timestep (1 = binary)
    estimator: str = "sigmoid"  # ordinary neurons' gradient estimator
    barrier_estimator: str = "ste"  # barrier neurons' gradient estimator (Sparse-ResNet)
    alpha: float = 4.0  # sigmoid surrogate sharpness
    threshold: float = 1.0
    learnable_threshold: bool = False
    rounding: str = "floor"
    # data
    data_root: str = "data"
    download: bool = False
    image_size: int = 48  # CIFAR10-DVS frames are resized to this
    num_workers: int = 0
    gpu_resident: bool = True  # CIFAR on CUDA: whole uint8 set on the device, batched augmentation
    fake_like: str = "cifar10"  # dataset=fake: the shape, size and data path of this set
    fake_images: int = 0  # dataset=fake: image count, 0 or >= 100 (0: as many as fake_like has)
    # optimisation
    optimizer: str = "sgd"
    lr: float | None = None  # None: 0.08 for SGD, 1e-3 for Adam (the paper's settings)
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    epochs: int = 10
    batch_size: int = 64
    seed: int = 0
    deterministic: bool = True
    limit_train_batches: float = 1.0  # fraction (<=1.0) or number of batches (>1)
    limit_val_batches: float = 1.0
    limit_test_batches: float = 1.0
    # hardware
    accelerator: str = "auto"
    precision: str = "32"
    channels_last: bool = False
    # probes
    probes: bool = True
    grad_every: int = 10  # gradient norms every k training steps
    energy_preset: str = "horowitz45"
    energy_counting: str = "value"
    # tracking
    wandb: str = "offline"
    project: str = "bench"
    study: str = "default"
    run_id: str = ""  # empty: generated
    results: str = "results"
    progress_bar: bool = True

    def resolved_lr(self) -> float:
        if self.lr is not None:
            return float(self.lr)
        return 0.08 if self.optimizer == "sgd" else 1e-3

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "RunConfig":
        return build_config(self.to_dict(), changes)


CHOICES: dict[str, tuple[str, ...]] = {
    "dataset": DATASETS,
    "fake_like": FAKE_LIKE,
    "estimator": ESTIMATORS,
    "barrier_estimator": ESTIMATORS,
    "optimizer": OPTIMIZERS,
    "schedule": SCHEDULES,
    "rounding": ROUNDINGS,
    "energy_preset": ENERGY_PRESETS,
    "energy_counting": ENERGY_COUNTINGS,
    "wandb": WANDB_MODES,
    "precision": PRECISIONS,
}
POSITIVE = ("T", "N", "epochs", "batch_size", "grad_every", "image_size")
NON_NEGATIVE = ("num_workers", "weight_decay", "momentum", "seed", "fake_images")


def keys() -> list[str]:
    return [f.name for f in fields(RunConfig)]


def _field_type(name: str) -> str:
    return {f.name: str(f.type) for f in fields(RunConfig)}[name]


def coerce(key: str, value: Any) -> Any:
    """Turn a YAML or command-line value into the field's type; raise BenchError naming the key."""
    if key not in keys():
        raise BenchError(f"unknown config key '{key}'; known keys: {', '.join(keys())}")
    kind = _field_type(key)
    if isinstance(value, str) and "str" not in kind.split("|")[0]:
        value = yaml.safe_load(value) if value.strip() else None
    try:
        if value is None and "None" in kind:
            return None
        if kind == "bool":
            if isinstance(value, bool):
                return value
            raise ValueError
        if kind == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if kind.startswith("float"):
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if kind == "str":
            if isinstance(value, (dict, list)) or value is None:
                raise ValueError
            return str(value)
    except (TypeError, ValueError):
        pass
    raise BenchError(f"config key '{key}': {value!r} is not a valid {kind}")


def validate(cfg: RunConfig) -> RunConfig:
    from bench.models import names as model_names  # late: models import torch

    allowed = dict(CHOICES, arch=tuple(model_names()))
    for key, options in allowed.items():
        value = getattr(cfg, key)
        if value not in options:
            raise BenchError(f"config key '{key}': {value!r} is not one of {', '.join(options)}")
    for key in POSITIVE:
        if getattr(cfg, key) < 1:
            raise BenchError(f"config key '{key}': {getattr(cfg, key)!r} must be >= 1")
    for key in NON_NEGATIVE:
        if getattr(cfg, key) < 0:
            raise BenchError(f"config key '{key}': {getattr(cfg, key)!r} must be >= 0")
    for key in ("limit_train_batches", "limit_val_batches", "limit_test_batches", "threshold"):
        if not getattr(cfg, key) > 0:
            raise BenchError(f"config key '{key}': {getattr(cfg, key)!r} must be > 0")
    if 0 < cfg.fake_images < 100:  # validation needs an image of each of 10 classes (DVS's 9:1)
        raise BenchError(f"config key 'fake_images': {cfg.fake_images} must be 0 or >= 100")
    if cfg.lr is not None and not cfg.lr > 0:
        raise BenchError(f"config key 'lr': {cfg.lr!r} must be > 0")
    return cfg


def build_config(*layers: Mapping[str, Any]) -> RunConfig:
    """Defaults, then each mapping of overrides in order; validated."""
    values = RunConfig().to_dict()
    for layer in layers:
        for key, value in layer.items():
            values[key] = coerce(key, value)
    return validate(RunConfig(**values))


def parse_sets(pairs: list[str] | None) -> dict[str, Any]:
    """['T=4', 'arch=vgg16'] -> {'T': '4', 'arch': 'vgg16'} (coerced later, per key)."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise BenchError(f"--set expects key=value, got {pair!r}")
        out[key.strip()] = value
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping from a file, with one-line errors for a missing file or bad syntax."""
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"config file not found: {path}")
    try:
        data = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise BenchError(f"{path}: YAML syntax error{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise BenchError(f"{path}: top level must be a mapping of keys, got {type(data).__name__}")
    return data


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicated keys (PyYAML silently keeps the last one)."""

    def construct_mapping(self, node, deep=False):  # type: ignore[override]
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicated key '{key}'", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)
