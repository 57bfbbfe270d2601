"""A user's own architecture, estimator and neuron class, in a file of their own, plugged into
`bench run` / `bench eval` from the command line and the config (bench.plugins)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.config import build_config
from bench.errors import BenchError
from bench.plugins import load_file

PLUGIN = '''
import os

import torch
from spikingjelly.activation_based import functional
from torch import nn

from bench.models import register_model
from bench.models.layers import conv_bn, neuron
from bench.neurons import NEURONS, Estimator, MultiLevelIF, register

SEEN = os.environ.get("PLUGIN_SEEN")


def _seen(what):
    if SEEN:
        with open(SEEN, "a") as f:
            f.write(what + "\\n")


@register("triangle")
class Triangle(Estimator):
    """g(s) = max(0, 1 - 2 |s - round(s)|): a triangle at every threshold."""

    def derivative(self, s, levels):
        _seen("triangle")
        return torch.clamp(1.0 - 2.0 * (s - torch.round(s)).abs(), min=0.0)


@NEURONS.register("lif")
class LeakyIF(MultiLevelIF):
    """The potential halves before each charge."""

    def neuronal_charge(self, x):
        _seen("lif")
        self.v = x.float() if isinstance(self.v, float) else 0.5 * self.v + x.float()


class TinyNet(nn.Module):
    def __init__(self, num_classes, in_channels, T, neurons):
        super().__init__()
        self.T, self.N, self.is_spiking = T, neurons.N, True
        self.conv, self.bn = nn.Conv2d(in_channels, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.sn = neuron(neurons)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x):
        functional.reset_net(self)
        return self.fc(self.sn(conv_bn(self.conv, self.bn, x, self.T)).mean((-2, -1))).mean(0)


@register_model(label="Tiny")
def tiny_net(*, num_classes, in_channels, T, neurons):
    return TinyNet(num_classes, in_channels, T, neurons)
'''

TINY = ["--set", "dataset=digits", "--set", "epochs=1", "--set", "limit_train_batches=2",
        "--set", "limit_val_batches=1", "--set", "limit_test_batches=1", "--set", "wandb=disabled",
        "--set", "batch_size=16", "--set", "progress_bar=false"]


def bench(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench.cli", *args], capture_output=True,
                          text=True, timeout=300, env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def plugin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("plugin") / "my_parts.py"
    path.write_text(PLUGIN)
    return path


def test_run_and_eval_with_a_plugin_file(plugin: Path, tmp_path: Path) -> None:
    seen = tmp_path / "seen.txt"
    results = tmp_path / "results"
    out = bench("run", "--plugin", str(plugin), *TINY, "--set", "arch=tiny_net", "--set", "T=2",
                "--set", "N=2", "--set", "estimator=triangle", "--set", "neuron=lif",
                "--set", f"results={results}", "--set", "run_id=mine",
                env={"PLUGIN_SEEN": str(seen)})
    assert out.returncode == 0, out.stdout + out.stderr
    assert set(seen.read_text().split()) == {"triangle", "lif"}  # trained with both
    run = results / "default" / "runs" / "mine"
    config = json.loads((run / "config.json").read_text())
    assert (config["arch"], config["estimator"], config["neuron"]) == ("tiny_net", "triangle", "lif")
    assert config["plugins"] == [str(plugin)]  # recorded: eval and resume load it again
    layers = (run / "layers.csv").read_text()
    assert "sn" in layers  # the plugin's neuron is probed without a probe list of its own
    seen.unlink()
    again = bench("eval", str(run), env={"PLUGIN_SEEN": str(seen)})  # no --plugin: the config's
    assert again.returncode == 0, again.stdout + again.stderr
    assert "lif" in seen.read_text().split()


def test_names_unknown_without_the_plugin_are_one_line_errors(plugin: Path) -> None:
    out = bench("run", *TINY, "--set", "estimator=triangle")
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert "config key 'estimator': 'triangle' is not a registered gradient estimator " \
           "(known: sigmoid, ste, ste_clipped)" in out.stderr
    out = bench("run", "--plugin", str(plugin.parent / "nope.py"), *TINY)
    assert out.returncode == 2 and "plugin file not found:" in out.stderr


def test_a_broken_plugin_names_its_file_and_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("import torch\n\nraise RuntimeError('half written')\n")
    with pytest.raises(BenchError, match=r"broken.py, line 3: RuntimeError: half written"):
        load_file(str(broken))
    syntax = tmp_path / "syntax.py"
    syntax.write_text("def f(:\n")
    with pytest.raises(BenchError, match=r"syntax.py, line 1: SyntaxError"):
        build_config({"plugins": [str(syntax)]})


def test_sweep_workers_see_the_plugin(plugin: Path, tmp_path: Path) -> None:
    import yaml

    sweep = tmp_path / "mine.yaml"
    fixed = {"dataset": "digits", "epochs": 1, "limit_train_batches": 2, "limit_val_batches": 1,
             "limit_test_batches": 1, "batch_size": 16, "wandb": "disabled", "arch": "tiny_net",
             "neuron": "lif", "N": 2}
    sweep.write_text(yaml.safe_dump({
        "name": "mine", "method": "grid", "metric": {"name": "test_acc", "goal": "maximize"},
        "parameters": {"estimator": {"values": ["triangle", "ste"]},
                       **{k: {"value": v} for k, v in fixed.items()}}}))
    seen = tmp_path / "seen.txt"
    out = bench("sweep", str(sweep), "--plugin", str(plugin), "--workers", "2", "--results",
                str(tmp_path / "results"), env={"PLUGIN_SEEN": str(seen)})
    assert out.returncode == 0, out.stdout + out.stderr
    assert "[done 2 | running 0 | failed 0 | left 0]" in out.stdout
    assert set(seen.read_text().split()) == {"triangle", "lif"}  # in the worker processes
    runs = sorted((tmp_path / "results" / "mine" / "runs").iterdir())
    configs = [json.loads((r / "config.json").read_text()) for r in runs]
    assert sorted(c["estimator"] for c in configs) == ["ste", "triangle"]
    assert all(c["plugins"] == [str(plugin)] and c["arch"] == "tiny_net" for c in configs)


def test_a_module_imported_before_the_sweep_reaches_its_workers(plugin: Path,
                                                                tmp_path: Path) -> None:
    # the case: `python -c "import myplugin; ..."` registers in the parent only
    module = tmp_path / "lib" / "my_imported_parts.py"
    module.parent.mkdir()
    module.write_text(plugin.read_text())
    sweep = tmp_path / "imp.yaml"
    sweep.write_text(
        "name: imp\nmethod: grid\nmetric: {name: test_acc, goal: maximize}\nparameters:\n"
        "  seed: {values: [0, 1]}\n  estimator: {value: triangle}\n  arch: {value: tiny_net}\n"
        "  dataset: {value: digits}\n  epochs: {value: 1}\n  limit_train_batches: {value: 2}\n"
        "  limit_val_batches: {value: 1}\n  limit_test_batches: {value: 1}\n"
        "  batch_size: {value: 16}\n  wandb: {value: disabled}\n")
    code = (f"import sys; sys.path.insert(0, {str(module.parent)!r}); import my_imported_parts; "
            f"from bench.sweep import main_sweep; "
            f"sys.exit(main_sweep({str(sweep)!r}, workers=2, results={str(tmp_path / 'r')!r}))")
    seen = tmp_path / "seen.txt"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, env={**os.environ, "PLUGIN_SEEN": str(seen)})
    assert out.returncode == 0, out.stdout + out.stderr
    assert "[done 2 | running 0 | failed 0 | left 0]" in out.stdout
    assert "triangle" in seen.read_text().split()
