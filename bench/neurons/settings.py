"""NeuronSettings: every setting of a model's spiking neurons, declared, defaulted and checked here
once. The run config embeds these fields as flat keys (`--set N=8`), the model factory takes the
object, and each neuron is built from it.

T, the timesteps every neuron of a spiking model runs, has its home here too (DEFAULT_T,
check_T): the run config, `build_model`, the data sets and `bench perf` read it from here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from bench.errors import SettingError
# the registries of neuron classes (MultiLevelIF is "if": charge/fire/reset) and of gradient
# estimators; a look-up loads their provider, bench.neurons
from bench.registry import ESTIMATORS, NEURONS

ROUNDINGS = ("floor", "round")  # floor(N v / theta), or round-to-nearest
# what a spike of z levels outputs: z/N (bench), or z theta / N (the authors' lab code)
OUTPUT_SCALES = ("unit", "threshold")
# how a neuron's timestep runs: eager torch ops, one compiled inductor kernel per direction, or
# inductor for image-sized layers only (bench.neurons.fused explains the trade-off)
BACKENDS = ("auto", "torch", "inductor")
MAX_N = 256  # spike levels; z fits a uint8 and the estimator's sum over N thresholds stays cheap
DEFAULT_T = 1  # timesteps of a spiking model (an ANN has none: T is None)
MAX_T = 256  # timesteps


def check_T(T: object) -> int:
    """T of a spiking model: an integer from 1 to MAX_T (ValueError saying so, without the key:
    each caller names it as its user knows it, config key or option)."""
    if isinstance(T, bool) or not isinstance(T, int) or not 1 <= T <= MAX_T:
        raise ValueError(f"{T!r} must be an integer from 1 to {MAX_T}")
    return T


class NeuronSettingError(SettingError):
    """A bad neuron setting: `key` is the field (and config key), `detail` says why."""

    template = "neuron setting '{key}': {detail}"


@dataclass(frozen=True)
class NeuronSettings:
    N: int = 4  # spike levels per timestep (1 = binary)
    threshold: float = 1.0  # theta, the firing threshold
    estimator: str = "sigmoid"  # ordinary neurons' gradient estimator
    barrier_estimator: str = "ste"  # barrier neurons' gradient estimator (Sparse-ResNet)
    alpha: float = 4.0  # sigmoid surrogate sharpness (the authors' lab code defaults to 1.0)
    learnable_threshold: bool = False  # theta a trained parameter per layer
    rounding: str = "floor"
    neuron: str = "if"  # a registered neuron class
    output_scale: str = "unit"
    backend: str = "auto"

    def __post_init__(self) -> None:
        n = self.N
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_N:
            raise NeuronSettingError("N", f"{n!r} must be an integer from 1 to {MAX_N}")
        for key in ("threshold", "alpha"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value) or not value > 0:
                raise NeuronSettingError(key, f"{value!r} must be a finite number > 0")
        named = {"neuron": NEURONS, "estimator": ESTIMATORS, "barrier_estimator": ESTIMATORS}
        for key, registry in named.items():
            if getattr(self, key) not in registry:
                raise NeuronSettingError(key, f"{getattr(self, key)!r} is not a registered "
                                         f"{registry.kind} (known: {', '.join(registry)})")
        for key, options in (("rounding", ROUNDINGS), ("output_scale", OUTPUT_SCALES),
                             ("backend", BACKENDS)):
            if getattr(self, key) not in options:
                raise NeuronSettingError(key, f"{getattr(self, key)!r} is not one of "
                                         f"{', '.join(options)}")
        if not isinstance(self.learnable_threshold, bool):
            raise NeuronSettingError("learnable_threshold",
                                     f"{self.learnable_threshold!r} must be true or false")
        if self.output_scale == "threshold" and self.learnable_threshold:
            # probes, barriers and energy counting read spikes on one grid of theta / N
            raise NeuronSettingError("output_scale", "'threshold' needs a fixed threshold "
                                     "(learnable_threshold: false)")

    @property
    def spike_scale(self) -> float:
        """Spike count per unit of a neuron's output: z = y * spike_scale."""
        return self.N if self.output_scale == "unit" else self.N / self.threshold

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> "NeuronSettings":
        """The settings among `values` (a run config's dict); other keys are ignored."""
        return cls(**{k: values[k] for k in cls.keys() if k in values})

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.keys()}
