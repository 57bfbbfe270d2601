"""bench: an experiment-tracking benchmark harness for multi-level spiking neural networks.

Pipeline: config -> data + model -> Lightning module + probes -> run record -> sweep -> report.
"""

__version__ = "0.1.0"
