"""Multi-level spiking neurons, their settings and their gradient estimators."""

from bench.neurons.estimators import (ESTIMATORS, Estimator, build_estimator, names as estimator_names,
                                      register)
from bench.neurons.multilevel import MultiLevelIF, set_backend
from bench.neurons.settings import BACKENDS, NEURONS, NeuronSettingError, NeuronSettings

__all__ = ["BACKENDS", "ESTIMATORS", "Estimator", "MultiLevelIF", "NEURONS", "NeuronSettingError",
           "NeuronSettings", "build_estimator", "estimator_names", "register", "set_backend"]
