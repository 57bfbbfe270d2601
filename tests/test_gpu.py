"""GPU readiness: synthetic data (dataset=fake), the CUDA-only code run on CPU tensors, and the
real CUDA paths (tests marked `gpu`, skipped without CUDA; `pytest -m gpu` runs only those).

The CPU halves of the device-resident loader and its batched augmentation are in test_data.py;
here they run on fake data, against the host (torchvision) path.
"""

from __future__ import annotations

import json

import pytest
import torch

from bench.cli import main
from bench.config import RunConfig, build_config
from bench.data import build_datamodule
from bench.data.fake import FakeCIFARDataModule, FakeDVSDataModule, synthetic_images
from bench.errors import BenchError
from bench.neurons import MultiLevelIF, NeuronSettings, set_backend
from test_data import _stack, assert_resident_eval_splits_match



def gpu(test):
    """Marked `gpu` (pytest -m gpu selects it) and skipped without a CUDA device."""
    needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
    return pytest.mark.gpu(needs_cuda(test))


# ---- dataset=fake ------------------------------------------------------------------------------

def test_synthetic_images_are_seeded_balanced_uint8() -> None:
    x, y = synthetic_images(105, (32, 32, 3), 10, seed=0)
    assert (x.shape, x.dtype, y.dtype) == ((105, 32, 32, 3), torch.uint8, torch.int64)
    assert torch.bincount(y).tolist() == [11] * 5 + [10] * 5  # balanced: 105 = 10 x 10 + 5
    x2, y2 = synthetic_images(105, (32, 32, 3), 10, seed=0)
    assert x.numpy().tobytes() == x2.numpy().tobytes() and torch.equal(y, y2)
    x3, _ = synthetic_images(105, (32, 32, 3), 10, seed=1)
    assert not torch.equal(x, x3)
    assert int(x.max()) <= 254 and 0 < x.float().std() < 128
    # an image is the mean of its class template and noise: same-class images correlate
    flat = x.flatten(1).float()
    flat = flat - flat.mean(1, keepdim=True)
    corr = (flat @ flat.T) / (flat.norm(dim=1)[:, None] * flat.norm(dim=1)[None])
    same = y[:, None] == y[None]
    off_diagonal = ~torch.eye(105, dtype=torch.bool)
    assert corr[same & off_diagonal].mean() > 0.3 > corr[~same].mean().abs()


@pytest.mark.parametrize("like,classes", [("cifar10", 10), ("cifar100", 100)])
def test_fake_cifar_has_cifar_shapes_and_split_sizes(like: str, classes: int) -> None:
    dm = build_datamodule(RunConfig(dataset="fake", fake_like=like, fake_images=200,
                                    batch_size=16, accelerator="cpu"))
    assert isinstance(dm, FakeCIFARDataModule) and dm.device is None  # host path on the CPU
    assert (dm.num_classes, dm.in_channels, dm.image_size) == (classes, 3, 32)
    dm.prepare_data()
    dm.setup()
    sizes = {s: len(getattr(dm, f"{s}_dataloader")().dataset) for s in ("train", "val", "test")}
    assert sizes == {"train": 180, "val": 20, "test": 40}  # as CIFAR's 45,000 / 5,000 / 10,000
    x, y = next(iter(dm.train_dataloader()))
    assert (x.shape, x.dtype, y.dtype) == ((16, 3, 32, 32), torch.float32, torch.int64)
    assert int(y.max()) < classes


def test_fake_cifar_default_size_is_the_real_one() -> None:
    dm = build_datamodule(RunConfig(dataset="fake", accelerator="cpu"))
    assert (dm.n_images, dm.val_size) == (50_000, 5_000)


def test_fake_dvs_has_frame_shapes_and_the_dvs_split() -> None:
    dm = build_datamodule(RunConfig(dataset="fake", fake_like="cifar10dvs", fake_images=100,
                                    T=2, image_size=16, batch_size=8))
    assert isinstance(dm, FakeDVSDataModule)
    assert (dm.num_classes, dm.in_channels, dm.image_size) == (10, 2, 16)
    dm.setup()
    assert len(dm.train_dataloader().dataset) == 90
    val, test = _stack(dm.val_dataloader()), _stack(dm.test_dataloader())
    assert val[0].shape == (10, 2, 2, 16, 16) and torch.equal(val[0], test[0])  # as CIFAR10-DVS
    assert sorted(val[1].tolist()) == list(range(10))  # stratified: one of each class
    assert val[0].dtype == torch.float32 and set(val[0].unique().tolist()) == {0.0, 1.0, 2.0, 3.0}


def test_fake_cifar_resident_path_on_cpu_matches_the_host_path() -> None:
    host = FakeCIFARDataModule("cifar10", 100, batch_size=8)
    resident = FakeCIFARDataModule("cifar10", 100, batch_size=8, device="cpu")
    assert_resident_eval_splits_match(host, resident)
    x, y = _stack(resident.train_dataloader())
    assert x.shape == (90, 3, 32, 32) and sorted(y.tolist()) == sorted(
        host.train_dataloader().dataset.dataset.targets[i]
        for i in host.train_dataloader().dataset.indices)


@pytest.mark.parametrize("sets,message", [
    ({"fake_images": 50}, "config key 'fake_images': 50 must be 0 or >= 100"),
    ({"fake_images": -1}, "config key 'fake_images': -1 must be >= 0"),
    ({"fake_like": "mnist"}, "config key 'fake_like': 'mnist' is not one of cifar10, cifar100"),
])
def test_bad_fake_keys_are_one_line_errors(sets: dict, message: str) -> None:
    with pytest.raises(BenchError, match=message):
        build_config({"dataset": "fake"}, sets)


def _fake_run_args(tmp_path, *extra: str) -> list[str]:
    sets = ["dataset=fake", "fake_like=cifar10", "fake_images=100", "arch=sparse_resnet18",
            # 2 training batches of 2, one val batch (a fifth of 10 images), one test batch
            "epochs=1", "batch_size=2", "limit_train_batches=2", "limit_val_batches=0.2",
            "limit_test_batches=0.1", "wandb=disabled", "progress_bar=false", "run_id=fake",
            *extra]
    return ["run", "--results", str(tmp_path), *(a for s in sets for a in ("--set", s))]


def test_one_epoch_fake_run_writes_a_completed_record(tmp_path, capsys) -> None:
    assert main(_fake_run_args(tmp_path, "accelerator=cpu")) == 0
    (summary_path,) = tmp_path.glob("**/fake/summary.json")
    summary = json.loads(summary_path.read_text())
    assert summary["status"] == "completed" and summary["epochs_completed"] == 1
    assert (summary["config"]["dataset"], summary["config"]["fake_like"]) == ("fake", "cifar10")
    assert 0 <= summary["test_acc"] <= 1 and summary["spikes_total_per_image"] > 0


# ---- worker GPU pinning, given a device list ---------------------------------------------------

def test_sweep_workers_share_out_a_given_device_list(monkeypatch) -> None:
    from bench.sweep import workers as study

    assert study.gpu_env(5, ["0", "1", "2"]) == [
        {"CUDA_VISIBLE_DEVICES": g} for g in ("0", "1", "2", "0", "1")]
    assert study.gpu_env(2, ["GPU-a1", "GPU-b2"])[1] == {"CUDA_VISIBLE_DEVICES": "GPU-b2"}
    assert study.gpu_env(3, ["0"]) == [{}, {}, {}]  # one GPU: every worker shares it
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert study.visible_gpus() == ["0", "1", "2", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2, 5")
    assert study.visible_gpus() == ["2", "5"]
    assert study.gpu_env(2) == [{"CUDA_VISIBLE_DEVICES": "2"}, {"CUDA_VISIBLE_DEVICES": "5"}]


# ---- the real CUDA paths (pytest -m gpu) -------------------------------------------------------

def _neuron_step(sn: torch.nn.Module, x: torch.Tensor, grad: torch.Tensor) -> tuple:
    x = x.detach().clone().requires_grad_()
    y = sn(x)
    y.backward(grad)
    return y.detach(), sn.v.detach(), x.grad


@gpu
@pytest.mark.parametrize("backend", ["torch", "inductor"], ids=["eager", "fused"])
@pytest.mark.parametrize("T", [1, 4])
def test_cuda_n1_equals_spikingjelly_ifnode(T: int, backend: str) -> None:
    from spikingjelly.activation_based import neuron, surrogate

    gen = torch.Generator().manual_seed(T)
    x = (1.2 * torch.randn(T, 8, 64, 32, generator=gen)).cuda()
    grad = torch.randn(T, 8, 64, 32, generator=gen).cuda()
    ref = neuron.IFNode(v_threshold=1.0, v_reset=None, detach_reset=True,
                        surrogate_function=surrogate.Sigmoid(alpha=4.0), step_mode="m")
    ours = _neuron_step(MultiLevelIF(N=1, alpha=4.0, backend=backend), x, grad)
    theirs = _neuron_step(ref, x, grad)
    assert torch.equal(ours[0], theirs[0]) and torch.equal(ours[1], theirs[1])
    if backend == "torch":
        assert torch.equal(ours[2], theirs[2])
    else:  # Triton's exp in the sigmoid surrogate: the stated tolerance
        torch.testing.assert_close(ours[2], theirs[2], rtol=1e-5, atol=1e-7)


@gpu
@pytest.mark.parametrize("kw,exact_grad", [
    (dict(N=3, threshold=0.7, estimator="sigmoid", alpha=5.0, rounding="round"), False),
    (dict(N=5, estimator="ste", grid_tolerance=1e-3), True),  # a barrier neuron
    (dict(N=4, estimator="ste_clipped"), True),
], ids=["sigmoid-N3", "barrier-N5", "clipped-N4"])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_cuda_fused_kernels_match_the_eager_neuron(kw: dict, exact_grad: bool,
                                                   channels_last: bool) -> None:
    gen = torch.Generator().manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = (1.5 * torch.randn(3 * 16, 64, 16, 16, generator=gen)).cuda().contiguous(
        memory_format=fmt).unflatten(0, (3, 16))
    grad = torch.randn(3, 16, 64, 16, 16, generator=gen).cuda()
    out = {}
    for backend in ("torch", "inductor"):
        sn = MultiLevelIF(backend=backend, **kw)
        out[backend] = _neuron_step(sn, x, grad)
        assert ("FusedStep" in sn.v.grad_fn.name()) == (backend == "inductor")
    (y0, v0, g0), (y1, v1, g1) = out["torch"], out["inductor"]
    assert 0 < y0.count_nonzero() < y0.numel()
    assert torch.equal(y1, y0) and torch.equal(v1, v0)  # forward: bit-identical
    if exact_grad:
        assert torch.equal(g1, g0)
    else:
        torch.testing.assert_close(g1, g0, rtol=1e-5, atol=1e-7)


@gpu
@pytest.mark.parametrize("backend", ["torch", "inductor"], ids=["eager", "fused"])
@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16"])
def test_cuda_barrier_counts_are_exact(bf16: bool, backend: str) -> None:
    """Every barrier of a Sparse-ResNet18 forward on CUDA re-quantizes its input, a float32 sum
    of two spike values, to exactly the summed count (clamped to N), also under bf16 autocast."""
    from bench.models import build_model, probe_points

    levels = 5
    model = build_model("sparse_resnet18", num_classes=10, T=1, neurons=NeuronSettings(N=levels)).cuda()
    seen = []

    def hook(module, inputs, output):
        seen.append((inputs[0].detach(), output.detach()))

    barriers = [m for m, point in probe_points(model).values() if point.kind == "barrier"]
    for b in barriers:
        b.register_forward_hook(hook)
    x = torch.randn(32, 3, 32, 32, generator=torch.Generator().manual_seed(1)).cuda()
    set_backend(model, backend)
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
        model(x)
    assert len(seen) == len(barriers) == 8
    for inp, out in seen:
        assert inp.dtype == out.dtype == torch.float32
        summed = torch.round(levels * inp)
        assert (levels * inp - summed).abs().max() < 1e-3  # the input is a sum of two levels
        want = summed.clamp(0, levels)
        assert torch.equal(torch.round(levels * out), want)
    assert sum(int(out.count_nonzero()) for _, out in seen) > 0


@gpu
def test_cuda_resident_loader_matches_the_host_path() -> None:
    host = FakeCIFARDataModule("cifar10", 1000, batch_size=128)
    resident = build_datamodule(RunConfig(dataset="fake", fake_images=1000, batch_size=128,
                                          accelerator="gpu"))
    assert resident.device == torch.device("cuda")
    assert resident.val_dataloader().device.type == "cuda"
    assert_resident_eval_splits_match(host, resident)
    x, y = next(iter(resident.train_dataloader()))
    assert x.is_cuda and x.shape == (128, 3, 32, 32) and y.is_cuda


@gpu
@pytest.mark.parametrize("extra", [(), ("precision=bf16-mixed", "channels_last=true")],
                         ids=["fp32", "bf16-channels_last"])
def test_cuda_one_epoch_fake_run(tmp_path, extra: tuple) -> None:
    args = _fake_run_args(tmp_path, "accelerator=gpu", "fake_images=2000", "batch_size=128",
                          "limit_train_batches=1.0", "limit_val_batches=1.0",
                          "limit_test_batches=1.0", *extra)
    assert main(args) == 0
    (summary_path,) = tmp_path.glob("**/fake/summary.json")
    summary = json.loads(summary_path.read_text())
    assert summary["status"] == "completed" and summary["epochs_completed"] == 1
    assert summary["spikes_total_per_image"] > 0


@gpu
def test_cuda_bench_perf(capsys) -> None:
    args = ["perf", "--device", "cuda", "--batch-size", "16", "--warmup", "2", "--steps", "5",
            "--variants", "eager,fused", "--bf16", "--channels-last", "--probes"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("bench perf: cuda") and "nan" not in out
    rows = [ln for ln in out.splitlines() if ln.startswith("| sparse_resnet18")]
    assert len(rows) == 2  # eager and fused
