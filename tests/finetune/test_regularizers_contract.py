"""One contract suite over every registered regulariser."""

from __future__ import annotations

import io

import pytest
import torch

from finetune import TrainConfig, config_from_dict
from finetune.backbones import build_classifier
from finetune.config import ModelConfig
from finetune.model import Classifier
from finetune.regularizers import (
    L2SP,
    REGISTRY,
    BuildContext,
    Regularizer,
    StepState,
    TaskEnd,
    active_terms,
    build_regularizers,
)


def small_model() -> Classifier:
    torch.manual_seed(0)
    return build_classifier(ModelConfig("resnet18", None), num_classes=5)


def config_for(name: str) -> TrainConfig:
    if name == "ewc":  # consolidates the tasks of a sequence
        return config_from_dict(
            {
                "tasks": {"count": 2},
                "ewc": {"enabled": True, "lam": 1.0, "fisher_samples": 4, "fisher_batch_size": 2},
                "data": {"selection": "last", "train_transform": "none"},
                "model": {"backbone": "resnet18", "weights": None},
            }
        )
    if REGISTRY[name].base:
        return config_from_dict(
            {
                "regularizer": {"name": name, "alpha": 0.1, "beta": 0.2},
                "model": {"backbone": "resnet18", "weights": None},
                "delta": {"attention": "uniform"},
            }
        )
    return config_from_dict({"bss": {"enabled": True, "k": 2, "eta": 0.5}, "data": {"batch_size": 8}})


def context(model: Classifier, config: TrainConfig) -> BuildContext:
    """No term here asks for the training images (DELTA's attention is uniform in these configs):
    only DELTA's supervised attention may make that float copy of the training set."""

    def no_images() -> torch.Tensor:
        raise AssertionError("a term asked for the training images")

    return BuildContext(model, config, no_images, torch.randint(0, 5, (16,)))


def step(model: Classifier, images: torch.Tensor | None = None) -> StepState:
    images = torch.randn(8, 3, 32, 32) if images is None else images
    logits, features = model(images)
    return StepState(model=model, images=images, features=features, logits=logits)


NAMES = sorted(REGISTRY)


@pytest.fixture(params=NAMES)
def name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def build(name: str, model: Classifier) -> Regularizer:
    """The term as a run has it while it trains (EWC: after a first task has ended)."""
    term = REGISTRY[name].build(context(model, config_for(name)))
    if name == "ewc":
        images, labels = torch.randn(4, 3, 32, 32), torch.randint(0, 5, (4,))
        term.end_task(TaskEnd(model, 1, 4, lambda positions: (images[positions], labels[positions])))
    return term


def test_registry_is_not_empty() -> None:
    assert {"l2", "l2sp", "bss", "delta", "ewc"} <= set(NAMES)


def test_scalar_and_non_negative(name: str) -> None:
    model = small_model()
    value = build(name, model)(step(model))
    assert value.dim() == 0 and torch.isfinite(value) and value.item() >= 0


def test_gradients_reach_the_right_parameters(name: str) -> None:
    model = small_model()
    term = build(name, model)
    if name in ("l2sp", "delta", "ewc"):  # move off the starting point / theta*, else the term is exactly zero
        with torch.no_grad():
            for p in (model if name == "ewc" else model.backbone).parameters():
                p.add_(0.01 * torch.randn_like(p))
    term(step(model)).backward()

    def moved(prefix: str) -> bool:
        return any(
            p.grad is not None and p.grad.abs().sum() > 0 for n, p in model.named_parameters() if n.startswith(prefix)
        )

    expected = {  # (backbone gets gradient, head gets gradient)
        "l2": (True, True),
        "l2sp": (True, True),
        "delta": (True, True),
        "bss": (True, False),  # features only: the head is not in the penalty
        "ewc": (True, True),  # every trainable weight is consolidated
    }[name]
    assert (moved("backbone."), moved("head.")) == expected
    if name == "delta":  # the frozen source copy never receives gradient
        assert all(p.grad is None for p in term.parameters())


def test_follows_to(name: str) -> None:
    model = small_model().double()
    term = build(name, model.float()).double()
    model = model.double()
    value = term(step(model, torch.randn(8, 3, 32, 32, dtype=torch.float64)))
    assert value.dtype == torch.float64
    for buffer in term.buffers():
        if buffer.is_floating_point():  # BatchNorm's step counter stays an integer
            assert buffer.dtype == torch.float64


def test_state_dict_round_trip(name: str) -> None:
    """A term saved after training moved the model is restored into a fresh run's term."""
    model = small_model()
    term = build(name, model)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.1)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "term": term.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    fresh = small_model()
    torch.manual_seed(1)
    with torch.no_grad():
        for p in fresh.parameters():
            p.add_(torch.randn_like(p))  # a different starting point, overwritten by the saved state
    other = build(name, fresh)
    fresh.load_state_dict(saved["model"])
    other.load_state_dict(saved["term"])
    images = torch.randn(8, 3, 32, 32)
    expected = term(step(model, images)).item()
    assert expected > 0 or name == "bss"
    assert other(step(fresh, images)).item() == pytest.approx(expected, rel=1e-6)


def test_zero_where_it_must_be() -> None:
    model = small_model()
    state = step(model)
    # L2-SP with alpha = 0 is exactly zero at the starting point, and positive after a move
    sp = L2SP(model.backbone, alpha=0.0, beta=1.0)
    assert sp(state).item() == 0.0
    with torch.no_grad():
        next(model.backbone.parameters()).add_(0.1)
    assert sp(step(model)).item() > 0
    # L2 with alpha = 0, BSS on rank-deficient features
    l2 = REGISTRY["l2"].build(context(model, config_from_dict({"regularizer": {"alpha": 0.0}})))
    assert l2(state).item() == 0.0
    bss = REGISTRY["bss"].build(context(model, config_for("bss")))
    rank_one = torch.ones(8, 16)
    assert bss(StepState(model, state.images, rank_one, state.logits)).item() == pytest.approx(0.0, abs=1e-10)


def test_delta_is_zero_at_start_in_both_modes_and_moves_after() -> None:
    model = small_model()
    term = build("delta", model)
    term.alpha = 0.0
    for training in (True, False):
        model.train(training)
        assert term(step(model)).item() == 0.0
    model.train()
    with torch.no_grad():
        model.backbone.layer1[0].conv1.weight.mul_(1.5)
    assert term(step(model)).item() > 0


def test_delta_batch_reduction_mean_is_batch_size_free_and_sum_is_tllibs_scale() -> None:
    model = small_model()
    term = build("delta", model)
    term.alpha = 0.0
    with torch.no_grad():
        model.backbone.layer1[0].conv1.weight.mul_(1.5)
    model.eval()
    images = torch.randn(4, 3, 32, 32)
    assert term.batch_reduction == "sum"  # the default: tllib's beta = 0.01 means the same here
    summed = term(step(model, images)).item()
    assert term(step(model, images.repeat(4, 1, 1, 1))).item() == pytest.approx(4 * summed, rel=1e-5)
    term.batch_reduction = "mean"
    small = term(step(model, images)).item()
    large = term(step(model, images.repeat(4, 1, 1, 1))).item()
    assert large == pytest.approx(small, rel=1e-5) and summed == pytest.approx(4 * small, rel=1e-5)


def test_config_alone_composes_terms() -> None:
    for base in ("l2", "l2sp", "delta"):
        for enabled in (False, True):
            config = config_from_dict(
                {
                    "regularizer": {"name": base},
                    "bss": {"enabled": enabled},
                    "delta": {"attention": "uniform"},
                    "model": {"backbone": "resnet18", "weights": None},
                }
            )
            model = small_model()
            terms = build_regularizers(context(model, config))
            assert list(terms) == active_terms(config) == [base] + (["bss"] if enabled else [])


def test_the_squared_norms_are_multi_tensor_kernels_with_the_exact_gradient() -> None:
    """L2 / L2-SP / the heads' L2: sum ||p - r||^2 in a fixed number of kernels however many
    tensors (no Python loop over parameters), with the plain sum's value and gradient, also for
    an all-zero tensor (a new head's bias), where autograd of a norm would give NaN."""
    from torch.autograd.profiler import profile

    from finetune.regularizers.l2 import squared_norm

    def tensors(count: int) -> list[torch.Tensor]:
        generator = torch.Generator().manual_seed(count)
        made = [torch.randn(7, 5, generator=generator, dtype=torch.float64) for _ in range(count - 1)]
        return [t.requires_grad_() for t in [*made, torch.zeros(3, dtype=torch.float64)]]

    for refs_too in (False, True):
        params = tensors(6)
        refs = [torch.randn_like(p) for p in params] if refs_too else []
        value = squared_norm(params, refs)
        plain = sum((p - (r if refs_too else 0)).pow(2).sum() for p, r in zip(params, refs or params, strict=True))
        assert float(value) == pytest.approx(float(plain), rel=1e-12)
        for got, want in zip(torch.autograd.grad(value, params), torch.autograd.grad(plain, params), strict=True):
            assert torch.isfinite(got).all() and torch.allclose(got, want, rtol=0, atol=1e-12)
        fixed = [r.detach() for r in refs]
        assert torch.autograd.gradcheck(lambda *ps, fixed=fixed: squared_norm(ps, fixed), tuple(params))

    def calls(count: int) -> list[str]:
        """The operators called from Python and autograd (a CPU runs a multi-tensor op tensor by
        tensor inside it; a GPU launches fused kernels), but the accumulation of each tensor's
        gradient into its ``.grad``, which every loss term shares."""
        params = tensors(count)
        with profile() as prof:
            squared_norm(params).backward()
        shallow = [e for e in prof.function_events if e.cpu_parent is None or e.cpu_parent.cpu_parent is None]
        return sorted(e.name for e in shallow if "AccumulateGrad" not in e.name)

    assert calls(3) == calls(40)
    assert "aten::_foreach_norm" in calls(3), calls(3)
