"""Multi-level spiking neurons, their settings and their gradient estimators."""

from bench.neurons.estimators import ESTIMATORS, Estimator, build_estimator, register
from bench.neurons.estimators import names as estimator_names
from bench.neurons.multilevel import MultiLevelIF, set_backend
from bench.neurons.settings import BACKENDS, NEURONS, NeuronSettingError, NeuronSettings

__all__ = ["BACKENDS", "ESTIMATORS", "Estimator", "MultiLevelIF", "NEURONS", "NeuronSettingError",
           "NeuronSettings", "build_estimator", "estimator_names", "register", "set_backend"]
