"""`bench perf`'s settings: every option declared, defaulted and described once, here.

Apart from bench.perf (which imports torch) so that `bench --help` stays instant: the command
line builds its `perf` options from these fields, and a notebook calls
`bench.perf.run_perf(PerfSettings(models="vgg16", steps=20))`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


def _opt(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class PerfSettings:
    models: str = _opt("sparse_resnet18", "comma-separated architectures to time")
    # T and N: None means the run config's defaults (bench.neurons.settings), filled by bench.perf
    T: int | None = _opt(None, "timesteps of the spiking models (default: the run config's T)")
    N: int | None = _opt(None, "spike levels per timestep of the spiking models (default: the "
                         "run config's N)")
    batch_size: int = _opt(32, "images per timed training step (at least 2: BatchNorm trains "
                           "on batch statistics)")
    image_size: int = _opt(32, "height = width of the random input images")
    in_channels: int = _opt(3, "channels of the random input images")
    warmup: int = _opt(3, "untimed steps of each model first")
    steps: int = _opt(10, "timed steps of each model (median reported)")
    device: str = _opt("auto", "cpu, cuda or auto")
    channels_last: bool = _opt(False, "channels-last memory format for models and inputs")
    bf16: bool = _opt(False, "bf16 autocast (CUDA)")
    variants: str | None = _opt(None, "comma-separated, timed side by side: eager (no fused "
                                "kernels), fused (MultiLevelIF's fused kernels, as runs use "
                                "them; the default), compiled (torch.compile of the eager model)")
    compile: bool = _opt(False, "same as --variants compiled")
    probes: bool = _opt(False, "also time the models with all run probes attached (overhead)")
    no_baselines: bool = _opt(False, "skip the ANN and spikingjelly SEW-ResNet18 baselines")

    @staticmethod
    def options() -> list[tuple[str, str, Any, str]]:
        """(field, --option, argparse type or "flag", help with its default) per field."""
        out = []
        for f in fields(PerfSettings):
            kind = "flag" if f.type == "bool" else int if f.type.split(" |")[0] == "int" else str
            shown = "" if kind == "flag" or f.default is None else f" (default {f.default})"
            out.append((f.name, "--" + f.name.replace("_", "-"), kind, f.metadata["help"] + shown))
        return out
