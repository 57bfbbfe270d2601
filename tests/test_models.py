"""The architecture zoo: registry, shapes, probe points, layer groups, avalanche and barrier.

Inputs are tiny (batch 2-4, 8x8 or 16x16): the module runs in well under a minute on 2 CPU cores.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bench.models import (ARCHITECTURES, ResidualSum, build_model, contract_of, is_spiking,
                          layer_groups, names, probe_points)
from bench.neurons import MultiLevelIF, NeuronSettings

ALL = ["ann_resnet18", "ann_vgg16", "sew_resnet18", "sew_resnet34", "sparse_resnet18",
       "sparse_resnet34", "spiking_resnet18", "vgg16"]
RESNET18_DOWN = (2, 4, 6)  # blocks whose shortcut downsamples (first block of stages 2-4)


def _build(name: str, **kw) -> nn.Module:
    """A model from run-config-like keys: neuron settings and T are dropped for an ANN."""
    sizes = {"num_classes": kw.pop("num_classes", 10), "in_channels": kw.pop("in_channels", 1)}
    T = kw.pop("T", 1)
    options = {k: kw.pop(k) for k in ("stem", "shortcut") if k in kw}
    if not is_spiking(name):
        return build_model(name, **sizes, T=None, **options)
    return build_model(name, **sizes, T=T, neurons=NeuronSettings(**{"N": 4, **kw}), **options)


def _images(batch: int = 2, channels: int = 1, size: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, channels, size, size, generator=torch.Generator().manual_seed(seed))


def _probe_outputs(model: nn.Module, x: torch.Tensor) -> dict[str, tuple[tuple, torch.Tensor]]:
    """probe name -> (forward inputs, output) of one forward pass, in firing order."""
    seen: dict[str, tuple[tuple, torch.Tensor]] = {}
    hooks = [m.register_forward_hook(lambda m, a, o, n=n: seen.__setitem__(n, (a, o)))
             for n, (m, _) in probe_points(model).items()]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return seen


# ---------------------------------------------------------------------------------------------
# registry and factory


def test_registered_names_and_unknown_name() -> None:
    assert names() == ALL
    with pytest.raises(ValueError, match="'resnet9000'.*known: ann_resnet18, ann_vgg16"):
        build_model("resnet9000", num_classes=10)


def test_a_duplicate_name_warns_and_replaces(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ARCHITECTURES, "_items", dict(ARCHITECTURES._items))
    monkeypatch.setattr(ARCHITECTURES, "_meta", dict(ARCHITECTURES._meta))

    def sew_resnet18(**kw):  # same name as a registered builder
        return nn.Identity()

    with pytest.warns(UserWarning, match="'sew_resnet18' registered twice"):
        ARCHITECTURES.register(spiking=False)(sew_resnet18)
    assert isinstance(build_model("sew_resnet18", num_classes=3), nn.Identity)
    monkeypatch.undo()
    assert build_model("sew_resnet18", num_classes=3).arch == "sew_resnet18"


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("T", [1, 4])
def test_output_shape_and_attributes(name: str, T: int) -> None:
    torch.manual_seed(0)
    model = _build(name, T=T, N=3, num_classes=7)
    ann = name.startswith("ann_")
    assert (model.arch, model.num_classes, model.is_spiking) == (name, 7, not ann)
    assert (model.T, model.N) == ((None, None) if ann else (T, 3))  # an ANN: no time, no levels
    logits = model(_images(batch=2, size=8))
    assert logits.shape == (2, 7) and torch.isfinite(logits).all()


@pytest.mark.parametrize("name", ["sparse_resnet18", "vgg16", "ann_resnet18"])
def test_frames_input_and_larger_maps(name: str) -> None:
    torch.manual_seed(0)
    model = _build(name, T=3, in_channels=2)
    frames = torch.rand(3, 2, 2, 16, 16)  # [T, B, C, H, W], e.g. DVS event frames
    assert model(frames).shape == (2, 10)
    assert model(frames[:2]).shape == (2, 10)  # the frames' own T, whatever the model's


@pytest.mark.parametrize("name", ["sew_resnet18", "vgg16"])
def test_static_image_equals_its_frames_repeated_over_t(name: str) -> None:
    # the first conv+BN runs once on [B, ...] and is expanded over T: same as T real frames
    torch.manual_seed(0)
    model = _build(name, T=4, N=2).eval()
    x = _images(batch=2, size=8)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x.expand(4, *x.shape)))


# ---------------------------------------------------------------------------------------------
# probe points and layer groups


def _expected_resnet18_probes(kind: str) -> list[str]:
    out = ["stem.sn"]
    for i in range(8):
        out.append(f"block{i}.sn1")
        if kind != "spiking":  # spiking-ResNet's second neuron is the one on the sum
            out.append(f"block{i}.sn2")
        if kind != "spiking" and i in RESNET18_DOWN:
            out.append(f"block{i}.down.sn")
        out.append(f"sum{i}")
    return out


@pytest.mark.parametrize("name,kind,sum_kind", [("sew_resnet18", "sew", "sum"),
                                                 ("sparse_resnet18", "sparse", "barrier"),
                                                 ("spiking_resnet18", "spiking", "neuron")])
def test_resnet18_probe_names_kinds_and_firing_order(name: str, kind: str, sum_kind: str) -> None:
    model = _build(name, N=5)
    points = probe_points(model)
    assert list(points) == _expected_resnet18_probes(kind)
    assert len({id(m) for m, _ in points.values()}) == len(points)  # no module under two names
    for pname, (_, point) in points.items():
        want = sum_kind if pname.startswith("sum") else "neuron"
        assert (point.kind, point.N, point.spike_scale) == (want, 5, 5.0), pname
    assert isinstance(points["sum3"][0], ResidualSum if kind == "sew" else MultiLevelIF)
    assert points["sum3"][0] is model.block3.exit_module()
    # depth order: the order in which the probed modules fire in a forward pass
    assert list(_probe_outputs(model, _images())) == list(points)


def test_resnet34_vgg16_and_ann_probe_points() -> None:
    for name, kind in (("sew_resnet34", "sum"), ("sparse_resnet34", "barrier")):
        points = probe_points(_build(name))
        sums = [n for n in points if n.startswith("sum")]
        assert sums == [f"sum{i}" for i in range(16)]
        assert {points[n][1].kind for n in sums} == {kind}
        assert "block15.sn2" in points and "block3.down.sn" in points  # stages 3, 4, 6, 3
    vgg = probe_points(_build("vgg16"))
    widths = (2, 2, 3, 3, 3)
    assert list(vgg) == [f"stage{i}.sn{j}" for i, d in enumerate(widths) for j in range(d)] + \
        ["fc1.sn", "fc2.sn"]
    assert {p.kind for _, p in vgg.values()} == {"neuron"}
    assert probe_points(_build("ann_resnet18")) == {} and probe_points(_build("ann_vgg16")) == {}


@pytest.mark.parametrize("name,groups", [
    ("sparse_resnet18", ["stem", *[f"block{i}" for i in range(8)], "head"]),
    ("ann_resnet18", ["stem", *[f"block{i}" for i in range(8)], "head"]),
    ("sew_resnet34", ["stem", *[f"block{i}" for i in range(16)], "head"]),
    ("vgg16", [*[f"stage{i}" for i in range(5)], "classifier"]),
])
def test_layer_groups_cover_every_parameter_exactly_once(name: str, groups: list[str]) -> None:
    model = _build(name, learnable_threshold=True)  # thresholds are parameters too
    found = layer_groups(model)
    assert list(found) == groups
    grouped = [id(p) for g in found.values() for p in g.parameters()]
    assert len(grouped) == len(set(grouped))
    assert set(grouped) == {id(p) for p in model.parameters()}


def test_only_the_first_conv_is_declared_analog_and_an_ann_is_not_spiking() -> None:
    for name, first in (("sew_resnet18", "stem.conv"), ("vgg16", "stage0.conv0")):
        model = _build(name)
        contract = contract_of(model)
        analog = [n for n, m in model.named_modules() if contract.is_analog(m)]
        assert analog == [first]
        assert (contract.spiking, contract.T, contract.N, contract.spike_scale) == (True, 1, 4, 4.0)
    ann = contract_of(_build("ann_resnet18"))
    assert (ann.spiking, ann.T, ann.N, ann.points) == (False, None, None, {})


# ---------------------------------------------------------------------------------------------
# the avalanche, the barrier, and gradient flow through it


@pytest.fixture(scope="module")
def sew_and_sparse() -> tuple[nn.Module, nn.Module]:
    """SEW- and Sparse-ResNet18 (N=4) on the same weights: Sparse only adds the barriers."""
    torch.manual_seed(0)
    sew = _build("sew_resnet18", N=4)
    sparse = _build("sparse_resnet18", N=4)
    sparse.load_state_dict(sew.state_dict())
    return sew, sparse


def test_sew_sums_grow_past_one_while_barriers_requantize(sew_and_sparse) -> None:
    sew, sparse = sew_and_sparse
    x = _images(batch=4, size=16, seed=1)
    sew_out, sparse_out = _probe_outputs(sew, x), _probe_outputs(sparse, x)
    sums = [sew_out[f"sum{i}"][1] for i in range(8)]
    assert max(s.max().item() for s in sums) > 1.0  # above one neuron's full-scale value
    assert all(torch.equal(4 * s, torch.round(4 * s)) for s in sums)  # integer spike counts
    for i in range(8):
        (pre,), y = sparse_out[f"sum{i}"]  # the barrier's input is its block's residual sum
        assert 0.0 <= y.min().item() and y.max().item() <= 1.0
        # min(z1 + z2, N) / N: the count the sum carries, capped at N
        assert torch.equal(torch.round(4 * y), torch.clamp(torch.round(4 * pre), max=4))
    # same weights and input up to the first sum: the barrier sees exactly SEW's sum0
    assert torch.equal(sparse_out["sum0"][0][0], sew_out["sum0"][1])
    assert sparse_out["sum0"][0][0].max() > 1.0


def _block0_grad_norm(source: nn.Module, barrier_estimator: str) -> float:
    model = _build("sparse_resnet18", N=4, barrier_estimator=barrier_estimator)
    model.load_state_dict(source.state_dict())
    x, y = _images(batch=4, size=16, seed=2), torch.tensor([0, 3, 5, 9])
    F.cross_entropy(model(x), y).backward()
    norms = torch.stack([p.grad.norm() for p in model.block0.parameters()])
    return torch.linalg.vector_norm(norms).item()


def test_ste_barrier_passes_more_gradient_to_the_first_block(sew_and_sparse) -> None:
    # a sigmoid surrogate far from its thresholds (sums of 0, or above N) passes almost nothing
    _, sparse = sew_and_sparse
    ste, sigmoid = _block0_grad_norm(sparse, "ste"), _block0_grad_norm(sparse, "sigmoid")
    assert sigmoid > 0
    assert ste > 1.5 * sigmoid


def test_binary_sew_resnet18_trains_one_step() -> None:
    torch.manual_seed(0)
    model = _build("sew_resnet18", N=1, T=2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = _images(batch=2, size=8), torch.tensor([1, 2])
    before = model.stem.conv.weight.detach().clone()
    F.cross_entropy(model(x), y).backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.stem.conv.weight.grad.abs().sum() > 0
    opt.step()
    assert not torch.equal(model.stem.conv.weight, before)
    assert {p.N for _, p in probe_points(model).values()} == {1}


@pytest.mark.parametrize("levels", [3, 5, 6])
def test_barrier_requantizes_every_sum_of_two_spike_values_exactly(levels: int) -> None:
    block = _build("sparse_resnet18", N=levels).block0
    # y = z/N as an ordinary neuron of the model emits it (its own float rounding of z/N)
    z = torch.arange(levels + 1, dtype=torch.float32)
    with torch.no_grad():
        emitted = block.sn1(((z + 0.5) / levels)[None])[0]  # [N+1]
    assert torch.equal(torch.round(levels * emitted), z)
    z1, z2 = torch.meshgrid(z.long(), z.long(), indexing="ij")  # all integer combinations
    want = torch.clamp(z1 + z2, max=levels)
    with torch.no_grad():
        y = block.barrier(block.sum(emitted[z1], emitted[z2])[None])[0]
    assert torch.equal(y, emitted[want])  # exactly the value min(z1 + z2, N) / N is emitted as
    assert torch.equal(torch.round(levels * y).long(), want)


def test_imagenet_stem_quarters_the_map_and_conv_pool_shortcut_pools_after_bn() -> None:
    torch.manual_seed(0)
    model = _build("sew_resnet18", in_channels=3, stem="imagenet", shortcut="conv_pool").eval()
    seen = {}
    model.stem.register_forward_hook(lambda m, a, o: seen.__setitem__("stem", o.shape))
    model(torch.randn(2, 3, 32, 32))
    assert seen["stem"] == (1, 2, 64, 8, 8)  # 7x7 stride 2 (16x16), then max-pool (8x8)
    down = model.block2.down
    assert down.conv.stride == (1, 1) and down.pool is not None
    x = torch.rand(1, 2, 64, 8, 8)
    down.sn = None  # the shortcut's analog output, before its neuron
    with torch.no_grad():
        want = torch.nn.functional.max_pool2d(down.bn(down.conv(x[0])), 2)  # conv, BN, pool
        assert torch.equal(down(x)[0], want)
    default = _build("sew_resnet18").block2.down
    assert default.conv.stride == (2, 2) and default.pool is None


def test_ann_architectures_take_no_time_or_neurons() -> None:
    with pytest.raises(ValueError, match="ann_resnet18 is an ANN"):
        build_model("ann_resnet18", num_classes=10, T=4)
    with pytest.raises(ValueError, match="ann_vgg16 is an ANN"):
        build_model("ann_vgg16", num_classes=10, T=None, neurons=NeuronSettings())
    with pytest.raises(ValueError, match="takes no stem='imagenet'"):
        build_model("vgg16", num_classes=10, stem="imagenet")
