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

HEADER = '''
import os

import torch
from spikingjelly.activation_based import functional
from torch import nn

from bench.models import ARCHITECTURES, ProbePoint
from bench.models.layers import conv_bn, neuron
from bench.neurons import ESTIMATORS, NEURONS, Estimator, MultiLevelIF

SEEN = os.environ.get("PLUGIN_SEEN")


def _seen(what):
    if SEEN:
        with open(SEEN, "a") as f:
            f.write(what + "\\n")


'''
NEURON_PARTS = '''
@ESTIMATORS.register("triangle")
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


'''
ARCH_PARTS = '''
class TinyNet(nn.Module):
    def __init__(self, num_classes, in_channels, T, neurons):
        super().__init__()
        self.T, self.neurons = T, neurons
        self.conv, self.bn = nn.Conv2d(in_channels, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.sn = neuron(neurons)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x):
        functional.reset_net(self)
        return self.fc(self.sn(conv_bn(self.conv, self.bn, x, self.T)).mean((-2, -1))).mean(0)

    def probe_points(self):
        return {"sn": (self.sn, ProbePoint.of("neuron", self.neurons))}

    def analog_inputs(self):
        return [self.conv]


@ARCHITECTURES.register("tiny_net", spiking=True, label="Tiny")
def tiny_net(*, num_classes, in_channels, T, neurons):
    return TinyNet(num_classes, in_channels, T, neurons)
'''
PLUGIN = HEADER + NEURON_PARTS + ARCH_PARTS

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
    assert "sn" in layers  # the plugin's declared probe point
    seen.unlink()
    # the record names the plugin; it runs only when passed again (a record runs no code)
    refused = bench("eval", str(run), env={"PLUGIN_SEEN": str(seen)})
    assert refused.returncode == 2 and not seen.exists(), refused.stdout + refused.stderr
    assert refused.stderr.count("\n") == 1 and f"records plugin files {plugin}" in refused.stderr
    again = bench("eval", str(run), "--plugin", str(plugin), env={"PLUGIN_SEEN": str(seen)})
    assert again.returncode == 0, again.stdout + again.stderr
    assert "lif" in seen.read_text().split()
    evals = list((run / "evals").glob("*/config.json"))
    assert [json.loads(e.read_text())["plugins"] for e in evals] == [[str(plugin)]]


def test_names_unknown_without_the_plugin_are_one_line_errors(
        plugin: Path, capsys: pytest.CaptureFixture) -> None:
    from bench.cli import main

    assert main(["run", *TINY, "--set", "estimator=triangle"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "config key 'estimator': 'triangle' is not a registered " \
        "gradient estimator (known: sigmoid, ste, ste_clipped)" in err
    assert main(["run", "--plugin", str(plugin.parent / "nope.py"), *TINY]) == 2
    assert "plugin file not found:" in capsys.readouterr().err


def test_a_broken_plugin_names_its_file_and_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("import torch\n\nraise RuntimeError('half written')\n")
    with pytest.raises(BenchError, match=r"broken.py, line 3: RuntimeError: half written"):
        load_file(str(broken))
    syntax = tmp_path / "syntax.py"
    syntax.write_text("def f(:\n")
    with pytest.raises(BenchError, match=r"syntax.py, line 1: SyntaxError"):
        build_config({"plugins": [str(syntax)]})


def test_sweep_workers_see_plugin_files_and_modules_imported_before(tmp_path: Path) -> None:
    # the estimator and neuron come from a plugin file; the architecture from a module the
    # launching process imported (the issue's `python -c "import mine; ..."`): workers see both
    parts = tmp_path / "my_neuron_parts.py"
    parts.write_text(HEADER + NEURON_PARTS)
    module = tmp_path / "lib" / "my_arch_parts.py"
    module.parent.mkdir()
    module.write_text(HEADER + ARCH_PARTS)
    sweep = tmp_path / "mine.yaml"
    sweep.write_text(
        "name: mine\nmethod: grid\nmetric: {name: test_acc, goal: maximize}\nparameters:\n"
        "  estimator: {values: [triangle, ste]}\n  neuron: {value: lif}\n  N: {value: 2}\n"
        "  arch: {value: tiny_net}\n  dataset: {value: digits}\n  epochs: {value: 1}\n"
        "  limit_train_batches: {value: 2}\n  limit_val_batches: {value: 1}\n"
        "  limit_test_batches: {value: 1}\n  batch_size: {value: 16}\n"
        "  wandb: {value: disabled}\n")
    results = tmp_path / "results"
    code = (f"import sys; sys.path.insert(0, {str(module.parent)!r}); import my_arch_parts; "
            f"from bench.sweep import main_sweep; sys.exit(main_sweep({str(sweep)!r}, "
            f"workers=2, results={str(results)!r}, plugins=[{str(parts)!r}]))")
    seen = tmp_path / "seen.txt"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, env={**os.environ, "PLUGIN_SEEN": str(seen)})
    assert out.returncode == 0, out.stdout + out.stderr
    assert "[done 2 | running 0 | failed 0 | left 0]" in out.stdout
    assert set(seen.read_text().split()) == {"triangle", "lif"}  # in the worker processes
    configs = [json.loads((r / "config.json").read_text())
               for r in sorted((results / "mine" / "runs").iterdir())]
    assert sorted(c["estimator"] for c in configs) == ["ste", "triangle"]
    assert all(c["plugins"] == [str(parts)] and c["arch"] == "tiny_net" for c in configs)


def test_a_record_runs_its_plugins_only_when_passed_again_or_trusted(tmp_path: Path) -> None:
    """resume_config (config.json) and a checkpoint's config go through bench.plugins.recorded:
    a file passed again (loaded here, by path or by name) or --trust-plugins; else one line."""
    from bench.checkpoint import resume_config
    from bench.plugins import trust_records

    def plugin_file(name: str) -> Path:
        path = tmp_path / name
        path.write_text(f"open({str(path) + '.ran'!r}, 'w').close()\n")
        return path

    def run_folder(name: str, plugins: list[str]) -> Path:
        folder = tmp_path / "results" / "s" / "runs" / name
        folder.mkdir(parents=True)
        (folder / "config.json").write_text(json.dumps({"plugins": plugins, "epochs": 1}))
        (folder / "last.ckpt").write_bytes(b"")
        return folder

    untrusted, passed, trusted = (plugin_file(n) for n in ("a.py", "b.py", "c.py"))
    with pytest.raises(BenchError, match=f"config.json records plugin files {untrusted}: "):
        resume_config(run_folder("a", [str(untrusted)]))
    assert not Path(str(untrusted) + ".ran").exists()
    load_file(str(passed))  # what `--plugin b.py` does before the command runs
    moved = tmp_path / "elsewhere" / "b.py"  # recorded where it was: matched by its name
    cfg, _ = resume_config(run_folder("b", [str(passed), str(moved)]))
    assert cfg.plugins == (str(passed),)
    trust_records(True)
    try:
        cfg, _ = resume_config(run_folder("c", [str(trusted)]))
    finally:
        trust_records(False)
    assert cfg.plugins == (str(trusted),) and Path(str(trusted) + ".ran").exists()
