"""Run configuration: a frozen dataclass of plain literals (nanoGPT style).

A run is described by defaults < YAML file < `--set key=value` overrides. Unknown keys and bad
values raise BenchError naming the key and the allowed values.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

import yaml

from bench.energy.settings import RUN_KEYS as ENERGY_RUN_KEYS
from bench.energy.settings import EnergySettingError, EnergySettings
from bench.errors import BenchError
from bench.neurons.settings import DEFAULT_T, NeuronSettingError, NeuronSettings, check_T
from bench.plugins import load_plugins, recorded
from bench.registry import ARCHITECTURES, DATASETS

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("cosine", "onecycle", "none")
WANDB_MODES = ("offline", "online", "disabled")
PRECISIONS = ("32", "bf16-mixed", "16-mixed")
CHECKPOINTS = ("both", "last", "best", "none")  # last.ckpt (resume) and/or best.ckpt (by val/acc)
# Keys that make a different trained network: its layers and weights' meaning (arch, N, threshold,
# rounding...), its timesteps (T), its input (dataset, image_size). `bench eval` refuses to change
# them; everything else (energy model, probes, batch size, limits, hardware, the gradient-only
# estimator settings) can be changed when a trained model is measured again.
NETWORK_KEYS = ("dataset", "arch", "T", "neuron", "N", "threshold", "learnable_threshold",
                "rounding", "output_scale", "stem", "shortcut", "image_size")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")
# the largest values a run accepts, checked before anything is allocated (README, "Limits")
MAXIMA = {"image_size": 1024, "batch_size": 65536, "epochs": 100000,
          "num_workers": 256, "grad_every": 10**9, "fake_images": 1_000_000}
MAX_SEED = 2**32 - 1  # numpy, torch and Optuna seeds are uint32
# study, run_id, project and a sweep's name become folders, W&B names and Optuna study names:
# a plain name, no path (matched whole: `$` alone would let a final newline through)
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
MAX_NAME = 100
MAX_YAML_BYTES = 1_000_000  # config and sweep files
MAX_YAML_DEPTH = 32  # nesting levels of a config or sweep file (a sweep needs 4)


_NEURON = NeuronSettings()  # the neuron keys' defaults, declared once (bench.neurons.settings)
# the energy keys' defaults, declared once (bench.energy.settings; read without building an
# instance: its check looks the energy model up in the registry, which imports bench.energy)
_ENERGY = EnergySettings.defaults()


@dataclass(frozen=True)
class RunConfig:
    # what to train (dataset, arch, neuron: registered names, README "Plugins")
    dataset: str = "digits"
    arch: str = "sparse_resnet18"
    T: int | None = DEFAULT_T  # timesteps; null for an ANN architecture (one pass, no time)
    # the neurons: fields of bench.neurons.NeuronSettings, which declares and checks them
    N: int | None = _NEURON.N  # null for an ANN architecture
    threshold: float = _NEURON.threshold
    estimator: str = _NEURON.estimator
    barrier_estimator: str = _NEURON.barrier_estimator
    alpha: float = _NEURON.alpha
    learnable_threshold: bool = _NEURON.learnable_threshold
    rounding: str = _NEURON.rounding
    neuron: str = _NEURON.neuron
    output_scale: str = _NEURON.output_scale
    backend: str = _NEURON.backend
    stem: str = "cifar"  # ResNet stem: cifar (3x3 stride 1) or imagenet (7x7 stride 2 + max-pool)
    shortcut: str = "conv"  # ResNet downsampling shortcut: conv (strided 1x1) or conv_pool
    plugins: tuple[str, ...] = ()  # Python files that register architectures, estimators...
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
    # as Lightning reads them: an int is a number of batches, a float in (0, 1] a share of the set
    limit_train_batches: int | float = 1.0
    limit_val_batches: int | float = 1.0
    limit_test_batches: int | float = 1.0
    # hardware
    accelerator: str = "auto"
    precision: str = "32"
    channels_last: bool = False
    # probes
    probes: bool = True
    grad_every: int = 10  # gradient norms every k training steps
    # energy: energy_<f> for f in bench.energy.settings.RUN_KEYS, fields of EnergySettings,
    # which declares and checks them (README "Energy" explains them)
    energy_model: str = _ENERGY["model"]
    energy_counting: str = _ENERGY["counting"]
    energy_multilevel_op: str = _ENERGY["multilevel_op"]
    energy_mem_bits: int = _ENERGY["mem_bits"]
    energy_sram: str = _ENERGY["sram"]
    energy_fifo: int = _ENERGY["fifo"]
    energy_buffers: str = _ENERGY["buffers"]
    energy_preset: str = _ENERGY["preset"]
    # tracking
    wandb: str = "offline"
    wandb_system_metrics: bool = True  # CPU/GPU/memory charts in the W&B run (a sampler thread)
    # checkpoints as a W&B model artifact: null = yes for `bench run`, no for a sweep trial
    wandb_model_artifacts: bool | None = None
    project: str = "bench"
    study: str = "default"
    run_id: str = ""  # empty: generated
    results: str = "results"
    progress_bar: bool = True
    checkpoint: str = "both"  # which of last.ckpt / best.ckpt the run folder keeps

    def resolved_lr(self) -> float:
        if self.lr is not None:
            return float(self.lr)
        return 0.08 if self.optimizer == "sgd" else 1e-3

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["plugins"] = list(self.plugins)  # JSON and YAML have lists, not tuples
        return out

    @property
    def spiking(self) -> bool:
        """Whether `arch` is a spiking architecture (an ANN has T = N = None)."""
        return self.N is not None

    def neuron_settings(self) -> NeuronSettings | None:
        """The neurons' settings; None for an ANN (NeuronSettingError naming a bad field)."""
        return NeuronSettings.from_mapping(self.to_dict()) if self.spiking else None

    def tag(self) -> str:
        """Timesteps and levels as run ids and W&B names show them: T1N4, or ANN."""
        return f"T{self.T}N{self.N}" if self.spiking else "ANN"

    def energy_settings(self) -> EnergySettings:
        """The run's bench.energy.EnergySettings (EnergySettingError naming a bad field)."""
        return EnergySettings(**{k: getattr(self, f"energy_{k}") for k in ENERGY_RUN_KEYS})

    def replace(self, **changes: Any) -> "RunConfig":
        return build_config(self.to_dict(), changes)


CHOICES: dict[str, tuple[str, ...]] = {
    "optimizer": OPTIMIZERS,
    "schedule": SCHEDULES,
    "wandb": WANDB_MODES,
    "precision": PRECISIONS,
    "checkpoint": CHECKPOINTS,
    "accelerator": ACCELERATORS,
}
# keys whose values an architecture declares (registry metadata `options`), e.g. ResNet's stem
ARCH_OPTIONS = ("stem", "shortcut")
# the keys whose null is a documented setting (the others refuse null and empty values)
NULL_MEANS = {"lr": "the optimizer's default learning rate",
              "T": "no timesteps (an ANN architecture only)",
              "N": "no spike levels (an ANN architecture only)",
              "wandb_model_artifacts": "yes for bench run, no for a sweep trial"}
EMPTY_MEANS = {"run_id": "a generated run id"}  # the keys whose empty string is a setting
LIMIT_KEYS = ("limit_train_batches", "limit_val_batches", "limit_test_batches")
POSITIVE = ("epochs", "batch_size", "grad_every", "image_size")
NON_NEGATIVE = ("num_workers", "weight_decay", "momentum", "seed", "fake_images")


def keys() -> list[str]:
    return [f.name for f in fields(RunConfig)]


def _field_type(name: str) -> str:
    return {f.name: str(f.type) for f in fields(RunConfig)}[name]


def short(value: Any, limit: int = 80) -> str:
    """repr() of a value cut to `limit` characters, for one-line messages."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def check_name(key: str, value: Any) -> str:
    """A study, run, project or sweep name: the one check of every name that reaches a path,
    W&B or Optuna (no path, no '..', no newline, bounded length)."""
    if not isinstance(value, str) or not NAME_RE.fullmatch(value) or ".." in value:
        raise BenchError(f"{key} {short(value)} must be 1-{MAX_NAME} letters, digits, '_', '.' "
                         "or '-', starting with a letter or digit, without '..' "
                         "(it names a folder, a W&B project or run, an Optuna study)")
    return value


def parse_value(key: str, text: str) -> Any:
    """A `--set` value as YAML (1, 0.5, true, [a]); a parse error names the key."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader) if text.strip() else None
    except (yaml.YAMLError, RecursionError):
        raise BenchError(f"config key '{key}': {short(text)} is not a valid value "
                         "(YAML syntax)") from None


def coerce(key: str, value: Any) -> Any:
    """Turn a YAML or command-line value into the field's type; raise BenchError naming the key."""
    if key not in keys():
        raise BenchError(f"unknown config key {short(key)}; known keys: {', '.join(keys())}")
    kind = _field_type(key)
    base = kind.split("|")[0].strip()  # "int | None" -> "int"
    if isinstance(value, str) and not value.strip() and key not in EMPTY_MEANS:
        # `--set N=` (an unset shell variable): never a default in disguise
        raise BenchError(f"config key '{key}': empty; give it a value"
                         + (f" (null: {NULL_MEANS[key]})" if key in NULL_MEANS else ""))
    if isinstance(value, str) and ("str" not in base or value.lstrip().startswith("[")):
        value = parse_value(key, value)
    if value is None:
        if key in NULL_MEANS:
            return None
        raise BenchError(f"config key '{key}': null is not a valid {kind}")
    try:
        if kind == "int | float":  # kept typed: Lightning reads 1 and 1.0 differently
            if isinstance(value, str):  # YAML leaves `inf`, `1e999` as text
                return float(value)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError
            return value
        if base == "bool":
            if isinstance(value, bool):
                return value
            raise ValueError
        if base == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if base == "float":
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if base == "str":
            if isinstance(value, (dict, list)):
                raise ValueError
            return str(value)
        if base.startswith("tuple"):  # a list of strings, or one string
            items = [value] if isinstance(value, str) else value
            if not isinstance(items, (list, tuple)) or not all(isinstance(v, str) for v in items):
                raise ValueError
            return tuple(items)
    except (TypeError, ValueError, OverflowError):
        pass
    raise BenchError(f"config key '{key}': {short(value)} is not a valid {kind}")


def validate(cfg: RunConfig) -> RunConfig:
    for key, options in CHOICES.items():
        value = getattr(cfg, key)
        if value not in options:
            raise BenchError(f"config key '{key}': {value!r} is not one of {', '.join(options)}")
    for registry in (DATASETS, ARCHITECTURES):
        if getattr(cfg, registry.key) not in registry:
            raise BenchError(registry.unknown(getattr(cfg, registry.key)))
    _check_architecture(cfg)
    for key in POSITIVE:
        if getattr(cfg, key) < 1:
            raise BenchError(f"config key '{key}': {getattr(cfg, key)!r} must be >= 1")
    for key in NON_NEGATIVE:
        if getattr(cfg, key) < 0:
            raise BenchError(f"config key '{key}': {getattr(cfg, key)!r} must be >= 0")
    for key in LIMIT_KEYS:
        value = getattr(cfg, key)
        if isinstance(value, float) and not 0 < value <= 1:
            raise BenchError(f"config key '{key}': {value!r} must be a share in (0, 1] (a float) "
                             "or a number of batches >= 1 (an integer)")
        if isinstance(value, int) and value < 1:
            raise BenchError(f"config key '{key}': {value!r} must be >= 1 batch (an integer) or a "
                             "share in (0, 1] (a float)")
    if 0 < cfg.fake_images < 100:  # validation needs an image of each of 10 classes (DVS's 9:1)
        raise BenchError(f"config key 'fake_images': {cfg.fake_images} must be 0 or >= 100")
    if cfg.fake_like not in DATASETS.names_with("fakeable"):
        raise BenchError(f"config key 'fake_like': {cfg.fake_like!r} is not one of "
                         f"{', '.join(DATASETS.names_with('fakeable'))}")
    if cfg.lr is not None and not cfg.lr > 0:
        raise BenchError(f"config key 'lr': {cfg.lr!r} must be > 0")
    _check_limits(cfg)
    _check_data(cfg)
    try:
        cfg.neuron_settings()
    except NeuronSettingError as exc:
        raise BenchError(f"config key '{exc.key}': {exc.detail}") from None
    try:
        cfg.energy_settings()
    except EnergySettingError as exc:
        raise BenchError(f"config key 'energy_{exc.key}': {exc.detail}") from None
    return cfg


def _check_architecture(cfg: RunConfig) -> None:
    """T and N exist for a spiking architecture only; other keys an architecture declares in
    its `options` (ResNet's stem and shortcut) keep their default elsewhere."""
    if cfg.spiking != bool(ARCHITECTURES.meta(cfg.arch, "spiking")):
        raise BenchError(f"config key 'N': an {'ANN' if cfg.N is None else 'SNN'} setting for "
                         f"arch {cfg.arch}")  # build_config sets both: a caller bypassed it
    if cfg.spiking:
        try:
            check_T(cfg.T)
        except ValueError as exc:
            raise BenchError(f"config key 'T': {exc} for the spiking arch {cfg.arch}") from None
    options = ARCHITECTURES.meta(cfg.arch, "options", {})
    for key in ARCH_OPTIONS:
        value, default = getattr(cfg, key), getattr(RunConfig, key)
        if key in options and value not in options[key]:
            raise BenchError(f"config key '{key}': {value!r} is not one of "
                             f"{', '.join(options[key])}")
        if key not in options and value != default:
            raise BenchError(f"config key '{key}': {value!r} does not apply to arch {cfg.arch} "
                             f"(only {default!r})")


def _check_data(cfg: RunConfig) -> None:
    """What the data set says of these settings before anything is loaded (its size in memory,
    the batches each limit gives): the registered class's optional `check_config(cfg)`."""
    check = getattr(DATASETS.get(cfg.dataset), "check_config", None)
    if check is not None:
        check(cfg)


def _check_limits(cfg: RunConfig) -> None:
    """Finite floats, ints within their stated maxima, safe names, folders that are folders."""
    for f in fields(RunConfig):
        value = getattr(cfg, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise BenchError(f"config key '{f.name}': {value!r} must be a finite number")
    for key, most in MAXIMA.items():
        if getattr(cfg, key) is not None and getattr(cfg, key) > most:
            raise BenchError(f"config key '{key}': {getattr(cfg, key)} is over the maximum {most}")
    if cfg.seed > MAX_SEED:
        raise BenchError(f"config key 'seed': {cfg.seed} is over the maximum {MAX_SEED} "
                         "(seeds are 32-bit)")
    check_name("config key 'study':", cfg.study)
    check_name("config key 'project':", cfg.project)
    if cfg.run_id:
        check_name("config key 'run_id':", cfg.run_id)
    for key in ("results", "data_root"):
        if Path(getattr(cfg, key)).exists() and not Path(getattr(cfg, key)).is_dir():
            raise BenchError(f"config key '{key}': {getattr(cfg, key)} is a file, not a folder")


def build_config(*layers: Mapping[str, Any]) -> RunConfig:
    """Defaults, then each mapping of overrides in order; plugins loaded, then validated.

    T and N of an ANN architecture are set to None whatever the layers say (they do not apply:
    a sweep may cross ANN and SNN architectures with N)."""
    values = RunConfig().to_dict()
    for layer in layers:
        for key, value in layer.items():
            values[key] = coerce(key, value)
    load_plugins(values["plugins"])  # before validation: they register names the config uses
    values["plugins"] = tuple(values["plugins"])
    if values["arch"] in ARCHITECTURES and not ARCHITECTURES.meta(values["arch"], "spiking"):
        values.update(T=None, N=None)
    elif values["arch"] in ARCHITECTURES:
        for key in ("T", "N"):  # null means "an ANN": said of a spiking arch, it is a mistake
            if values[key] is None:
                raise BenchError(f"config key '{key}': null is for an ANN architecture; "
                                 f"{values['arch']} is spiking (give an integer from 1 to 256)")
    return validate(RunConfig(**values))


def upgrade_limits(saved: Mapping[str, Any]) -> dict[str, Any]:
    """A recorded config with its batch limits in today's meaning. Records written before the
    limits were kept typed hold floats only (every value went through float()) and read a
    float > 1 as a number of batches (rounded down): such a float is that integer now. Their
    1.0 meant the whole set, as 1.0 does now; an integer is always a new record's."""
    out = dict(saved)
    for key in LIMIT_KEYS:
        if isinstance(out.get(key), float) and out[key] > 1:
            out[key] = int(out[key])
    return out


def record_layer(saved: Mapping[str, Any], source: str) -> dict[str, Any]:
    """A recorded config (a run's config.json, a checkpoint's hyper-parameters) as a config
    layer: its config keys, in today's meaning (upgrade_limits), its plugin files only where
    passed again or trusted (bench.plugins.recorded; `source` names the record)."""
    out = upgrade_limits({k: v for k, v in saved.items() if k in keys()})
    if out.get("plugins"):
        out["plugins"] = recorded(coerce("plugins", out["plugins"]), source)
    return out


def plugin_layer(layers: list[Mapping[str, Any]], files: list[str] | None) -> dict[str, Any]:
    """A last config layer adding `files` (--plugin) to the plugins the layers list."""
    if not files:
        return {}
    listed = next((coerce("plugins", layer["plugins"]) for layer in reversed(layers)
                   if "plugins" in layer), ())
    return {"plugins": tuple(dict.fromkeys([*listed, *files]))}


def parse_sets(pairs: list[str] | None) -> dict[str, Any]:
    """['T=4', 'arch=vgg16'] -> {'T': '4', 'arch': 'vgg16'} (coerced later, per key)."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise BenchError(f"--set expects key=value, got {short(pair)}")
        out[key.strip()] = value
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping from a file, with one-line errors for a missing file or bad syntax."""
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"config file not found: {path}")
    if path.stat().st_size > MAX_YAML_BYTES:
        raise BenchError(f"{path}: {path.stat().st_size} bytes is over the {MAX_YAML_BYTES}-byte "
                         "limit of a config or sweep file")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BenchError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = str(getattr(exc, "problem", None) or str(exc).splitlines()[0])[:120]
        raise BenchError(f"{path}: YAML syntax error{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise BenchError(f"{path}: top level must be a mapping of keys, got {type(data).__name__}")
    return data


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicated keys (PyYAML silently keeps the last one) and
    anchors/aliases (a few hundred bytes of aliases expand to gigabytes: "billion laughs")."""

    depth = 0

    def compose_node(self, parent, index):  # type: ignore[override]
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise yaml.composer.ComposerError(
                None, None, "anchors and aliases (&name, *name) are not allowed",
                event.start_mark)
        if self.depth >= MAX_YAML_DEPTH:  # stop before PyYAML's recursion and its slow scan
            raise yaml.composer.ComposerError(
                None, None, f"nested deeper than {MAX_YAML_DEPTH} levels", event.start_mark)
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_mapping(self, node, deep=False):  # type: ignore[override]
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                continue  # unhashable: SafeLoader's own check names it
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicated key {short(key, 40)}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)
