"""One home each: the model-to-probe contract (the README's plugin architecture run through the
spike probe and energy counting; undeclared modules named), the one registration idiom and its
retried provider import, and no stray default of T, N or alpha outside their home."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from spikingjelly.activation_based.neuron import SimpleBaseNode
from torch import nn

from bench.energy import estimate
from bench.models import (ARCHITECTURES, ContractError, ProbePoint, build_model, contract_of,
                          declare)
from bench.models.layers import neuron
from bench.neurons import MultiLevelIF, NeuronSettings
from bench.probes import SpikeProbe
from bench.registry import ProviderError, Registry

ROOT = Path(__file__).resolve().parents[1]


def plugins_block() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Plugins\n"):text.index("\n## ", text.index("## Plugins\n"))]
    blocks = re.findall(r"^```python\n(.*?)^```", section, flags=re.S | re.M)
    assert len(blocks) == 1
    return blocks[0]


@pytest.fixture
def own_architectures(monkeypatch: pytest.MonkeyPatch) -> None:
    """Registrations in a test go to a copy: the rest of the session sees the built-in set."""
    monkeypatch.setattr(ARCHITECTURES, "_items", dict(ARCHITECTURES._items))
    monkeypatch.setattr(ARCHITECTURES, "_meta", dict(ARCHITECTURES._meta))


def _spike_probe(net: nn.Module, x: torch.Tensor) -> dict:
    """SpikeProbe's test table of one batch, with stand-ins for the trainer and module."""
    host = SimpleNamespace(model=net, log=lambda *a, **k: None)
    trainer = SimpleNamespace(sanity_checking=False)
    probe = SpikeProbe()
    probe.setup(trainer, host, "test")
    probe.on_test_epoch_start(trainer, host)
    with torch.no_grad():
        net(x)
    probe.on_test_batch_end(trainer, host, None, (x, torch.zeros(len(x))), 0)
    probe.on_test_epoch_end(trainer, host)
    probe.teardown(trainer, host, "test")
    return probe.last["test"]


def test_readme_plugin_architecture_runs_through_the_spike_probe_and_energy(
        own_architectures, capsys) -> None:
    space: dict = {}
    exec(compile(plugins_block(), "README.md", "exec"), space)  # as test_readme.py runs it
    assert capsys.readouterr().out.startswith("['sn'] ")
    torch.manual_seed(0)
    net = build_model("tiny_net", num_classes=3, in_channels=1, T=2,
                      neurons=NeuronSettings(N=4)).eval()
    x = torch.rand(5, 1, 8, 8) * 4
    seen = []
    net.sn.register_forward_hook(lambda m, a, out: seen.append(out.detach()))
    row = _spike_probe(net, x)["sn"]
    z = torch.round(4 * seen[0])  # [T=2, B=5, 8, 8, 8] spike counts, by hand
    assert seen[0].shape == (2, 5, 8, 8, 8)
    assert (row["kind"], row["index"], row["levels"], row["neurons"]) == ("neuron", 0, 4, 512)
    assert row["spikes_per_image"] == pytest.approx(z.sum().item() / 5) and z.sum() > 0
    assert row["max_spike"] == z.max().item()
    assert row["rate"] == pytest.approx(z.sum().item() / 5 / (512 * 2))
    report = estimate(net, x, counting="value")
    assert report.counts["conv"]["input"] == "analog"  # its declared analog input
    assert report.counts["sn"]["output_spike_values"] == pytest.approx(
        seen[1].mul(4).round().sum().item() / 5)  # the same spikes (estimate's own pass)


class _Undeclared(nn.Module):
    def __init__(self, T, neurons, declare_both=True, with_method=True):
        super().__init__()
        self.neurons = neurons
        self.conv = nn.Conv2d(1, 2, 3)
        self.sn1, self.sn2 = neuron(neurons), neuron(neurons)
        self.declare_both = declare_both
        if not with_method:
            self.probe_points = None

    def probe_points(self):
        point = ProbePoint.of("neuron", self.neurons)
        return {"a": (self.sn1, point), **({"b": (self.sn2, point)} if self.declare_both else {})}

    def analog_inputs(self):
        return [self.conv]


def test_a_missing_declaration_is_an_error_naming_the_module(own_architectures) -> None:
    for name, kw in (("half", dict(declare_both=False)), ("none", dict(with_method=False))):
        ARCHITECTURES.register(name, spiking=True)(
            lambda *, num_classes, in_channels, T, neurons, kw=kw: _Undeclared(T, neurons, **kw))
    with pytest.raises(ContractError, match=r"neuron 'sn2' \(MultiLevelIF\) is not a declared "
                                            r"probe point"):
        build_model("half", num_classes=2, in_channels=1)
    with pytest.raises(ContractError, match=r"architecture none: its model _Undeclared has no "
                                            r"probe_points\(\) method"):
        build_model("none", num_classes=2, in_channels=1)
    with pytest.raises(TypeError, match="register\\(\\) needs the metadata spiking"):
        ARCHITECTURES.register("no_spiking_said")  # no silent default: spiking or not


class _OddNeuron(SimpleBaseNode):  # a neuron class of unknown levels
    def neuronal_charge(self, x):
        self.v = self.v + x


def test_an_undeclared_network_speaks_through_its_neuron_types_or_is_named() -> None:
    net = nn.Sequential(nn.Linear(4, 4), MultiLevelIF(N=3, step_mode="s"))
    contract = contract_of(net)
    assert (contract.spiking, contract.N, contract.spike_scale) == (True, 3, 3.0)
    assert [(n, p.N) for n, (_, p) in contract.points.items()] == [("1", 3)]
    odd = nn.Sequential(nn.Linear(4, 4), _OddNeuron())
    with pytest.raises(ContractError, match=r"neuron '1' \(_OddNeuron\) declares no spike levels"):
        estimate(odd, torch.rand(2, 4))
    declare(net, N=3, analog_inputs=[net[0]])  # a hand-built network says what it is
    assert contract_of(net).is_analog(net[0])
    with pytest.raises(ContractError, match="declared analog input Linear is not a module"):
        declare(net, N=3, analog_inputs=[nn.Linear(1, 1)])
    with pytest.raises(ContractError, match="kind 'spike' is not one of neuron, barrier, sum"):
        ProbePoint("spike", 4, 4.0)


def test_a_failed_provider_import_is_reported_and_retried(tmp_path, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    provider = tmp_path / "house_provider_parts.py"
    provider.write_text("raise RuntimeError('half written\\nsecond line')\n")
    things: Registry = Registry("thing", key="thing", provider="house_provider_parts")
    monkeypatch.setitem(sys.modules, "house_test_registry", SimpleNamespace(THINGS=things))
    for _ in range(2):  # each look-up tries again, and says why it failed, in one line
        with pytest.raises(ProviderError) as err:
            things.names()
        assert str(err.value) == ("thing registry: importing its provider house_provider_parts "
                                  "failed: RuntimeError: half written")
    provider.write_text("import house_test_registry\n"
                        "house_test_registry.THINGS.register('one', label='One')(len)\n")
    assert things.names() == ["one"] and things.meta("one", "label") == "One"
    assert things.get("one") is len  # the call form registers an object made elsewhere
    sys.modules.pop("house_provider_parts", None)


def test_the_deprecated_estimator_spelling_warns_and_registers(monkeypatch) -> None:
    from bench.neurons import ESTIMATORS, Estimator, register

    monkeypatch.setattr(ESTIMATORS, "_items", dict(ESTIMATORS._items))
    monkeypatch.setattr(ESTIMATORS, "_meta", dict(ESTIMATORS._meta))
    with pytest.warns(DeprecationWarning, match="ESTIMATORS.register"):
        cls = register("old_style")(type("Old", (Estimator,), {}))
    assert ESTIMATORS.get("old_style") is cls and cls.name == "old_style"


# ----------------------------------------------------------- T, N and alpha: one home each

HOMES = {"T": "DEFAULT_T", "N": "NeuronSettings.N", "alpha": "NeuronSettings.alpha"}
HOME_FILE = Path("bench/neurons/settings.py")  # NeuronSettings' fields and DEFAULT_T


def _number(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) \
        and not isinstance(node.value, bool)


def stray_defaults(tree: ast.AST, path: Path) -> list[str]:
    """Where code gives T, N or alpha a number of its own: a parameter or field default, an
    argparse default of --T/--N/--alpha, `T or 1`, a call's `alpha=4.0`, or reads one off a
    module with getattr (the stamped-attribute protocol the contract replaced)."""
    found = []
    for node in ast.walk(tree):
        where = f"{path}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            a = node.args
            pairs = list(zip(a.args[len(a.args) - len(a.defaults):], a.defaults))
            pairs += [(arg, d) for arg, d in zip(a.kwonlyargs, a.kw_defaults) if d is not None]
            found += [f"{where}: parameter {arg.arg}={d.value}" for arg, d in pairs
                      if arg.arg in HOMES and _number(d)]
        elif isinstance(node, (ast.Assign, ast.AnnAssign)) and _number(node.value) \
                and path != HOME_FILE:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            found += [f"{where}: {t.id} = {node.value.value}" for t in targets
                      if isinstance(t, ast.Name) and t.id in HOMES]
        elif isinstance(node, ast.Call):
            flags = [a.value for a in node.args if isinstance(a, ast.Constant)]
            if any(f in ("--T", "--N", "--alpha") for f in flags):
                found += [f"{where}: {flags[0]} default" for k in node.keywords
                          if k.arg == "default" and not (isinstance(k.value, ast.Constant)
                                                         and k.value.value is None)]
            found += [f"{where}: call alpha={k.value.value}" for k in node.keywords
                      if k.arg == "alpha" and _number(k.value)]
            if isinstance(node.func, ast.Name) and node.func.id == "getattr" and \
                    any(isinstance(a, ast.Constant) and a.value in HOMES for a in node.args):
                found.append(f"{where}: getattr fallback of T, N or alpha (read the contract)")
        elif isinstance(node, ast.BoolOp) and isinstance(node.op, ast.Or) and any(
                isinstance(v, (ast.Name, ast.Attribute))
                and getattr(v, "id", getattr(v, "attr", None)) in HOMES for v in node.values) \
                and any(_number(v) for v in node.values):
            found.append(f"{where}: `... or <number>` fallback of T, N or alpha")
    return found


def test_no_default_of_t_n_or_alpha_outside_its_home() -> None:
    found = []
    for file in sorted((ROOT / "bench").rglob("*.py")):
        path = file.relative_to(ROOT)
        found += stray_defaults(ast.parse(file.read_text(encoding="utf-8")), path)
    assert found == []


@pytest.mark.parametrize("code", [
    "def conv_bn(x, T: int = 1): ...",
    "def f(*, alpha=4.0): ...",
    "class Config:\n    T: int | None = 1\n",
    "N = 4",
    "p.add_argument('--N', type=int, default=4)",
    "steps = model.T or 1",
    "sg = surrogate.Sigmoid(alpha=4.0)",
    "levels = int(getattr(module, 'N', 1))",
])
def test_the_stray_default_check_catches_each_spelling(code: str) -> None:
    assert len(stray_defaults(ast.parse(code), Path("bench/x.py"))) == 1


def test_t_has_one_home() -> None:
    from bench.config import RunConfig
    from bench.neurons.settings import DEFAULT_T

    assert RunConfig.T == DEFAULT_T and RunConfig.N == NeuronSettings.N
    assert build_model("vgg16", num_classes=2, in_channels=1).T == DEFAULT_T
    assert build_model("ann_vgg16", num_classes=2, in_channels=1).T is None
