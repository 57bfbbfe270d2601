"""`bench perf` on tiny settings, its baselines, and the fused neuron kernels it relies on."""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
from torch import nn

from bench.cli import main
from bench.neurons import MultiLevelIF, fused
from bench.neurons.multilevel import DYNAMICS, _stock_dynamics
from bench.perf import (SJ_NAME, Entry, SpikingJellySEWResNet18, _prepare, _table, target_checks,
                        to_markdown)

TINY = ["perf", "--image-size", "8", "--batch-size", "2", "--warmup", "1", "--steps", "2",
        "--in-channels", "1"]


def _markdown_rows(text: str) -> list[list[str]]:
    lines = [ln for ln in text.splitlines() if ln.startswith("|")]
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in lines[2:]]  # skip header, rule


def test_perf_prints_a_row_per_model_and_baseline(capsys: pytest.CaptureFixture) -> None:
    assert main([*TINY, "--models", "sparse_resnet18,vgg16", "--T", "1", "--N", "2"]) == 0
    captured = capsys.readouterr()
    out = captured.out
    first = next(ln for ln in out.splitlines() if ln.startswith("|"))
    header = [c.strip() for c in first.strip("|").split("|")]
    # no "probes ms/step" column without --probes, no "vs eager" with one variant
    assert header == ["model", "variant", "role", "T", "N", "ms/step", "min ms", "max ms",
                      "vs ANN", "vs sj SEW-ResNet18"]
    assert "nan" not in out
    assert "lower is faster" in out.splitlines()[1]
    # 2 timed steps: one warning line, on stderr
    assert captured.err.count("warning") == 1 and "2 timed steps (< 5)" in captured.err
    rows = {r[0]: dict(zip(header, r)) for r in _markdown_rows(out)}
    assert list(rows) == ["sparse_resnet18", "vgg16", "ann_resnet18", "ann_vgg16", SJ_NAME]
    assert {r["variant"] for r in rows.values()} == {"fused"}
    assert all(0 < float(r["min ms"]) <= float(r["ms/step"]) <= float(r["max ms"])
               for r in rows.values())
    assert [rows[m]["role"] for m in rows] == ["model"] * 2 + ["baseline"] * 3
    # the spikingjelly baseline has the same levels per neuron: T x N timesteps of binary spikes
    assert (rows[SJ_NAME]["T"], rows[SJ_NAME]["N"]) == ("2", "1")
    assert float(rows["ann_vgg16"]["vs ANN"]) == 1.0
    assert float(rows[SJ_NAME]["vs sj SEW-ResNet18"]) == 1.0
    assert float(rows["sparse_resnet18"]["vs ANN"]) > 0 and float(rows["vgg16"]["vs ANN"]) > 0


def test_perf_rejects_unknown_models_and_bad_values(capsys: pytest.CaptureFixture) -> None:
    assert main(["perf", "--models", "resnet9000"]) == 2
    err = capsys.readouterr().err
    assert "unknown architecture 'resnet9000'" in err and "sparse_resnet18" in err
    assert len(err.strip().splitlines()) == 1
    assert main(["perf", "--steps", "0"]) == 2
    assert "--steps" in capsys.readouterr().err
    assert main(["perf", "--variants", "eager,jit"]) == 2
    err = capsys.readouterr().err
    assert "--variants: jit is not" in err and "compiled" in err and len(err.splitlines()) == 1


def test_spikingjelly_baseline_is_sew_resnet18_with_a_cifar_stem() -> None:
    from spikingjelly.activation_based import neuron, surrogate

    net = SpikingJellySEWResNet18(num_classes=5, in_channels=2, T=3)
    conv = net.net.conv1
    assert (conv.in_channels, conv.kernel_size, conv.stride) == (2, (3, 3), (1, 1))
    assert isinstance(net.net.maxpool, nn.Identity)
    ifs = [m for m in net.modules() if isinstance(m, neuron.IFNode)]
    assert len(ifs) == 1 + 8 * 2 + 3  # stem, two per block, three downsampling shortcuts
    sn = ifs[0]
    assert (sn.v_reset, sn.detach_reset, sn.step_mode) == (None, True, "m")
    assert isinstance(sn.surrogate_function, surrogate.Sigmoid)
    assert sn.surrogate_function.alpha == 4.0
    assert net(torch.rand(2, 2, 8, 8)).shape == (2, 5)


def test_table_ratios_are_medians_of_per_round_ratios() -> None:
    # round 3 hit a load spike on the model only: the paired ratio ignores it
    def entry(name, times, arch="resnet18", probe_of=None):
        return Entry(name, "model", 1, 4, arch, nn.Identity(), times=times, probe_of=probe_of)

    table = _table([
        entry("sparse_resnet18", [0.11, 0.22, 0.90]),
        entry("sparse_resnet18", [0.15, 0.30, 0.20], probe_of="sparse_resnet18"),
        entry("ann_resnet18", [0.10, 0.20, 0.10]),
        entry("vgg16", [0.5, 0.5, 0.5], arch="vgg16"),
        entry(SJ_NAME, [0.44, 0.88, 0.40]),
    ]).set_index("model")
    row = table.loc["sparse_resnet18"]
    assert row["ms/step"] == pytest.approx(220.0) and row["probes ms/step"] == pytest.approx(200.0)
    assert row["vs ANN"] == pytest.approx(1.1) and row["vs sj SEW-ResNet18"] == pytest.approx(0.25)
    assert table.loc["ann_resnet18", "vs ANN"] == 1.0
    assert pd.isna(table.loc["vgg16", "vs ANN"])  # no ann_vgg16 timed
    assert list(table.index) == ["sparse_resnet18", "ann_resnet18", "vgg16", SJ_NAME]


def test_table_puts_variants_side_by_side() -> None:
    def entry(name, variant, times, **kw):
        return Entry(name, kw.pop("role", "model"), 1, 4, kw.pop("arch", "resnet18"),
                     nn.Identity(), times=times, variant=variant, **kw)

    entries = [
        entry("sparse_resnet18", "eager", [0.30, 0.40, 0.20]),
        entry("ann_resnet18", "eager", [0.10, 0.20, 0.10], role="baseline"),
        entry("sparse_resnet18", "fused", [0.15, 0.10, 0.30]),
        entry("ann_resnet18", "fused", [0.10, 0.10, 0.20], role="baseline"),
        entry("sparse_resnet18", "compiled", [], error="BackendCompilerFailed: no compiler"),
        entry("vgg16", "fused", [0.5, 0.7, 0.6], arch="vgg16"),  # no ann_vgg16: a blank ratio, not "nan"
    ]
    table = _table(entries)
    assert list(table.columns) == ["model", "variant", "role", "T", "N", "ms/step", "min ms",
                                   "max ms", "vs ANN", "vs eager"]  # all-NaN columns dropped
    rows = table.set_index(["model", "variant"])
    assert ("sparse_resnet18", "compiled") not in rows.index  # failed in warm-up: not timed
    fused = rows.loc[("sparse_resnet18", "fused")]
    assert (fused["ms/step"], fused["min ms"], fused["max ms"]) == pytest.approx((150, 100, 300))
    assert fused["vs ANN"] == pytest.approx(1.5)  # paired with the fused ANN: 1.5, 1.0, 1.5
    assert fused["vs eager"] == pytest.approx(0.5)  # paired with its eager twin: 0.5, 0.25, 1.5
    assert rows.loc[("sparse_resnet18", "eager"), "vs ANN"] == pytest.approx(2.0)
    text = to_markdown(table)
    assert "nan" not in text
    vgg = next(ln for ln in text.splitlines() if ln.startswith("| vgg16"))
    assert [c.strip() for c in vgg.strip("|").split("|")][-2:] == ["", ""]


def test_each_variant_sets_its_models_neuron_backend() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 4), MultiLevelIF(N=2, backend="inductor"))
    base = Entry("tiny", "model", 1, 2, "resnet18", model)
    args = SimpleNamespace(variants="eager,fused,compiled", compile=False, channels_last=False,
                           bf16=False, probes=False, batch_size=2, in_channels=1, image_size=2)
    prepared = _prepare([base], args, torch.device("cpu"))
    backends = {e.variant: [m.backend for m in e.model.modules() if isinstance(m, MultiLevelIF)]
                for e in prepared}
    # compiled: torch.compile of the eager model (its neurons are the same modules)
    assert backends == {"eager": ["torch"], "fused": ["auto"], "compiled": ["torch"]}
    assert model[2].backend == "inductor"  # the variants set their own copies


def test_target_checks_read_the_table() -> None:
    table = pd.DataFrame([
        {"model": "sparse_resnet18", "T": 1, "N": 4, "vs ANN": 1.10, "vs sj SEW-ResNet18": 0.25},
        {"model": "sparse_resnet18", "T": 4, "N": 1, "vs ANN": 3.0, "vs sj SEW-ResNet18": 0.9},
    ])
    assert target_checks(table) == [
        "target sparse_resnet18 [T=1,N=4] <= 1.15x ann_resnet18: 1.10x (met)",
        "target sparse_resnet18 [T=1,N=4] >= 3.5x faster than spikingjelly SEW-ResNet18 "
        "[T=4,N=1]: 4.00x (met)",
    ]
    table.loc[0, ["vs ANN", "vs sj SEW-ResNet18"]] = [1.2, 0.5]
    assert [ln.endswith("(missed)") for ln in target_checks(table)] == [True, True]


# ---------------------------------------------------------------------------------------------
# fused neuron kernels: same bits as the eager neuron (they only change the speed)


def _run_neuron(backend: str, x: torch.Tensor, grad: torch.Tensor, neuron=MultiLevelIF,
                **kw) -> tuple:
    sn = neuron(backend=backend, **kw)
    x = x.detach().requires_grad_()
    y = sn(x)
    y.backward(grad)
    return y.detach(), sn.v.detach(), x.grad, _fused(sn)


def _fused(sn: MultiLevelIF) -> bool:
    return sn.v.grad_fn is not None and "FusedStep" in sn.v.grad_fn.name()


@pytest.mark.parametrize("T,kw", [
    (3, dict(N=3, threshold=0.7, estimator="sigmoid", alpha=5.0, rounding="round")),
    (1, dict(N=5, estimator="ste", grid_tolerance=1e-3)),  # a barrier neuron
], ids=["sigmoid-N3-T3", "barrier-N5-T1"])
def test_fused_kernels_are_bit_identical_to_the_eager_neuron(T: int, kw: dict) -> None:
    gen = torch.Generator().manual_seed(T)
    # [T, B, C, H, W], each timestep a channels-last [B, C, H, W] view, as conv+BN leave it
    x = (1.5 * torch.randn(T * 2, 64, 4, 4, generator=gen)).contiguous(
        memory_format=torch.channels_last).unflatten(0, (T, 2))
    x[0, 0, :4, 0, 0] = torch.tensor([0.0, 0.7 / 3, 0.7, 0.35])  # on and near thresholds
    grad = torch.randn(T, 2, 64, 4, 4, generator=gen)
    y0, v0, g0, fused0 = _run_neuron("torch", x, grad, **kw)
    y1, v1, g1, fused1 = _run_neuron("inductor", x, grad, **kw)
    _, _, _, fused_auto = _run_neuron("auto", x, grad, **kw)  # 2048 values: not image-sized
    assert (fused0, fused1, fused_auto) == (False, True, False)
    assert 0 < y0.count_nonzero() < y0.numel()
    assert torch.equal(y1, y0) and torch.equal(v1, v0) and torch.equal(g1, g0)
    # a gradient that arrives expanded (e.g. from a mean) takes the same path
    _, _, g2, _ = _run_neuron("inductor", x, torch.ones(()).expand_as(grad), **kw)
    _, _, g3, _ = _run_neuron("torch", x, torch.ones(()).expand_as(grad), **kw)
    assert torch.equal(g2, g3)


class _LeakyIF(MultiLevelIF):
    """An LIF-like subclass: the potential halves before each charge."""

    def neuronal_charge(self, x: torch.Tensor) -> None:
        self.v = x.float() if isinstance(self.v, float) else 0.5 * self.v + x.float()


def test_a_subclass_with_its_own_dynamics_never_takes_the_fused_kernels() -> None:
    x = torch.full((2, 2, 64), 0.6)  # two timesteps of 0.6, theta 1, N 1
    grad = torch.ones_like(x)
    y, v, _, fused_path = _run_neuron("inductor", x, grad, neuron=_LeakyIF, N=1)
    assert not fused_path
    # LIF: v = 0.6 (no spike), then 0.3 + 0.6 = 0.9 (no spike); IF would spike at 1.2
    assert torch.equal(y, torch.zeros_like(x)) and torch.allclose(v, torch.full_like(v, 0.9))
    assert _stock_dynamics(type("Plain", (MultiLevelIF,), {}))
    for name in DYNAMICS:  # any one of the timestep's methods overridden
        def same(self, *args, stock=getattr(MultiLevelIF, name)):  # the same code, its own method
            return stock(self, *args)

        cls = type("Own", (MultiLevelIF,), {name: same})
        assert not _stock_dynamics(cls), name


def test_a_kernel_that_fails_turns_only_its_neuron_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    compiled = []
    real_compile = fused._compile

    def flaky_compile(fn, device):
        compiled.append(fn.__name__.rsplit("_", 1)[0])
        if len(compiled) in (1, 3):  # neuron a's forward kernel, neuron b's backward kernel
            def kernel(*args):
                raise RuntimeError("no C++ compiler")
            return kernel
        return real_compile(fn, device)

    monkeypatch.setattr(fused, "_kernels", {})
    monkeypatch.setattr(fused, "_compile", flaky_compile)
    kw = dict(N=5, estimator="ste", grid_tolerance=1e-3)  # as above: kernels cached on disk
    x = 3 * torch.randn(1, 2, 64, generator=torch.Generator().manual_seed(0))
    grad = torch.randn(1, 2, 64, generator=torch.Generator().manual_seed(1))
    y0, v0, g0, _ = _run_neuron("torch", x, grad, **kw)

    a = MultiLevelIF(backend="inductor", **kw)
    with pytest.warns(UserWarning, match=r"N=5.*fused kernel failed on a \[2, 64\] input "
                                         r"\(RuntimeError: no C\+\+ compiler\)"):
        y = a(x)
    assert a.backend == "torch" and torch.equal(y, y0) and torch.equal(a.v, v0)

    b = MultiLevelIF(backend="inductor", **kw)
    xb = x.clone().requires_grad_()
    y = b(xb)
    assert _fused(b) and torch.equal(y, y0)  # a's failure left b's backend alone
    with pytest.warns(UserWarning, match="fused kernel failed"):
        y.backward(grad)
    assert b.backend == "torch" and torch.equal(xb.grad, g0)

    c = MultiLevelIF(backend="inductor", **kw)  # b's forward kernel, from the cache
    assert torch.equal(c(x.clone().requires_grad_()), y0) and _fused(c)
    a.reset()
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        assert torch.equal(a(x), y0)  # eager, without compiling or warning again
    assert said == [] and compiled == ["_fire_reset", "_fire_reset", "_potential_grad"]
