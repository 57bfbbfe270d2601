"""Multi-level spiking neurons and their gradient estimators."""

from bench.neurons.estimators import Estimator, build_estimator, names as estimator_names, register
from bench.neurons.fused import BACKENDS
from bench.neurons.multilevel import MultiLevelIF, set_backend

__all__ = ["MultiLevelIF", "Estimator", "build_estimator", "estimator_names", "register",
           "BACKENDS", "set_backend"]
