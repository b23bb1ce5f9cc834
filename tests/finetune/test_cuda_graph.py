"""CUDA graphs of the backbone and the batch prefetcher: the plan, the checks and the fallback on
any machine; the graphed and pinned paths themselves where a CUDA device is (marked ``gpu``)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from finetune import ConfigError, config_from_dict
from finetune.cuda_graph import capture_backbone, mismatch, plan_graph
from finetune.data import Split
from finetune.engine import Trainer
from finetune.prefetch import BatchPrefetcher
from tests.conftest import REPO, tiny_base

CUDA = torch.device("cuda")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


class Hooked(nn.Module):
    graph_unsafe = "reads feature maps through hooks"


def test_the_plan_graphs_only_a_cuda_run_whose_terms_allow_it() -> None:
    assert plan_graph("auto", CUDA, [("l2", nn.Module()), ("bss", nn.Module())]).use
    assert plan_graph("on", CUDA, []).use
    off = plan_graph("off", CUDA, [])
    assert not off.use and off.reason == "cuda_graph: off"
    cpu = plan_graph("auto", torch.device("cpu"), [])
    assert not cpu.use and "the device is cpu" in cpu.reason
    delta = plan_graph("auto", CUDA, [("delta", Hooked())])
    assert not delta.use and delta.reason == "delta reads feature maps through hooks"
    with pytest.raises(ConfigError, match=r"^cuda_graph: on, but the device is cpu.*set cuda_graph: auto"):
        plan_graph("on", torch.device("cpu"), [])


def test_config_refuses_an_unknown_mode_and_on_with_delta() -> None:
    with pytest.raises(ConfigError, match="cuda_graph: must be one of auto, on, off, got 'yes'"):
        config_from_dict(tiny_base(cuda_graph="yes"))
    with pytest.raises(ConfigError, match="cuda_graph: on, but DELTA reads the backbone's feature maps"):
        config_from_dict(tiny_base(cuda_graph="on", regularizer={"name": "delta"}, delta={"attention": "uniform"}))
    assert (
        config_from_dict(tiny_base(regularizer={"name": "delta"}, delta={"attention": "uniform"})).cuda_graph == "auto"
    )


def test_the_delta_term_says_why_it_cannot_be_graphed() -> None:
    trainer = Trainer(config_from_dict(tiny_base(regularizer={"name": "delta"}, delta={"attention": "uniform"})))
    assert "forward hooks" in trainer.terms["delta"].graph_unsafe
    assert "delta reads the backbone's feature maps" in plan_graph("auto", CUDA, trainer.terms.items()).reason
    bss = Trainer(config_from_dict(tiny_base(regularizer={"name": "l2sp"}, bss={"enabled": True, "k": 1})))
    assert [term.graph_unsafe for term in bss.terms.values()] == ["", ""]


def test_a_cpu_run_stays_eager_and_says_why() -> None:
    trainer = Trainer(config_from_dict(tiny_base(optim={"epochs": 1})))
    assert not trainer.graph_plan.use and "the device is cpu" in trainer.graph_plan.reason
    trainer.train_epoch()
    assert not trainer.graphed and "forward" not in trainer.model.backbone.__dict__


def _batchnorm_net() -> nn.Module:
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return net.train()


def _no_autocast() -> torch.autocast:
    return torch.autocast("cpu", enabled=False, cache_enabled=False)


def _capture_with(monkeypatch: pytest.MonkeyPatch, graph: object) -> tuple[str, nn.Module, dict]:
    """capture_backbone with ``graph`` standing in for torch.cuda.make_graphed_callables (which
    needs a CUDA device): (why, the module, its state before)."""
    monkeypatch.setattr(torch.cuda, "make_graphed_callables", graph)
    backbone = _batchnorm_net()
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    return capture_backbone(backbone, torch.randn(4, 3, 8, 8), _no_autocast, torch.float32), backbone, before


def _assert_eager_as_before(backbone: nn.Module, before: dict) -> None:
    assert "forward" not in backbone.__dict__  # the module's own forward again
    for k, v in backbone.state_dict().items():  # BatchNorm's statistics, moved by the check passes, restored
        assert torch.equal(v, before[k]), k


def test_a_capture_that_raises_leaves_the_backbone_eager_and_its_buffers_as_they_were(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def fails(module: nn.Module, sample_args: tuple) -> nn.Module:
        module.forward = lambda x: x  # half-done, as a capture that raises midway may leave it
        raise RuntimeError("operation not permitted when stream is capturing\nsecond line")

    why, backbone, before = _capture_with(monkeypatch, fails)
    assert why == "the capture failed: RuntimeError: operation not permitted when stream is capturing"
    _assert_eager_as_before(backbone, before)


def test_a_capture_that_disagrees_with_the_eager_pass_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    def wrong(module: nn.Module, sample_args: tuple) -> nn.Module:
        own = type(module).forward
        module.forward = lambda x: own(module, x) * 1.01  # off by 1%: beyond fp32's tolerance
        return module

    why, backbone, before = _capture_with(monkeypatch, wrong)
    assert why.startswith("features differs from the eager pass by ")
    _assert_eager_as_before(backbone, before)


def test_a_capture_that_agrees_is_kept_and_leaves_the_buffers_as_they_were(monkeypatch: pytest.MonkeyPatch) -> None:
    def faithful(module: nn.Module, sample_args: tuple) -> nn.Module:
        own = type(module).forward
        for _ in range(3):  # the real one warms up in training mode: BatchNorm's statistics move
            own(module, *sample_args)
        module.forward = lambda x: own(module, x)
        return module

    why, backbone, before = _capture_with(monkeypatch, faithful)
    assert why == "" and "forward" in backbone.__dict__
    for k, v in backbone.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_mismatch_names_the_first_tensor_off_by_more_than_the_tolerance() -> None:
    a = [torch.tensor([1.0, -2.0]), torch.tensor([0.5, 0.25])]
    assert mismatch(a, [t.clone() for t in a], 1e-3, ["features", "grad of w"]) == ""
    near = [a[0] + 1e-4, a[1]]
    assert mismatch(a, near, 1e-3, ["features", "grad of w"]) == ""
    off = [a[0], a[1] + torch.tensor([0.0, 0.01])]
    assert mismatch(a, off, 1e-3, ["features", "grad of w"]).startswith("grad of w differs from the eager pass by 0.01")
    nan = [a[0] * float("nan"), a[1]]
    assert mismatch(a, nan, 1e-3, ["features", "grad of w"]).startswith("features differs")


@pytest.mark.parametrize("hwc", [False, True])
def test_take_into_a_buffer_gathers_the_same_images(hwc: bool) -> None:
    rng = np.random.default_rng(0)
    stored = rng.integers(0, 256, size=(10, 6, 6, 3) if hwc else (10, 3, 6, 6), dtype=np.uint8)
    index = np.array([9, 7, 5, 3, 1, 0])
    for images in (stored, torch.from_numpy(stored)):
        split = Split(images, torch.arange(6), index=index, hwc=hwc)
        members = torch.tensor([4, 0, 2])
        out = torch.empty((3, *split.row_shape()), dtype=torch.uint8)
        assert torch.equal(split.take(members, out=out), split.take(members))
    whole = Split(stored, torch.arange(10), hwc=hwc)
    with pytest.raises(IndexError, match=r"rows 3\.\.10 of a split of 10 images"):
        whole.take(torch.tensor([3, 10, 4]), out=torch.empty((3, *whole.row_shape()), dtype=torch.uint8))


def test_the_prefetcher_hands_out_the_requested_batches_in_order() -> None:
    stored = torch.arange(8 * 3 * 2 * 2, dtype=torch.int64).reshape(8, 3, 2, 2).to(torch.uint8)
    split = Split(stored, torch.arange(8) * 10)
    fetch = BatchPrefetcher(split, 2, torch.device("cpu"))
    for idx in (torch.tensor([3, 1]), torch.tensor([0, 7])):
        fetch.request(idx)
        images, labels = fetch.get()
        assert torch.equal(images, stored[idx]) and torch.equal(labels, idx * 10)
    with pytest.raises(AssertionError, match="request a batch"):
        fetch.get()


@pytest.mark.gpu
@needs_cuda
def test_the_gpu_checks_pass() -> None:
    """bench/gpu_checks.py (runnable where pytest is not): a graphed run trains like the eager one
    (its capture passing its own check), and the pinned prefetcher hands out the host's batches."""
    done = subprocess.run([sys.executable, "bench/gpu_checks.py"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "graph      ok" in done.stdout and "prefetch   ok" in done.stdout
