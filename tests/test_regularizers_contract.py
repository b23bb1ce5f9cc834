"""One contract suite over every registered regulariser."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from finetune import config_from_dict
from finetune.model import Classifier
from finetune.regularizers import L2SP, REGISTRY, StepState, active_terms, build_regularizers


def small_model() -> Classifier:
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Conv2d(3, 6, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(6, 16))
    return Classifier(backbone, 16, 5)


def config_for(name: str):  # type: ignore[no-untyped-def]
    if REGISTRY[name].base:
        return config_from_dict({"regularizer": {"name": name, "alpha": 0.1, "beta": 0.2}})
    return config_from_dict({"bss": {"enabled": True, "k": 2, "eta": 0.5}, "data": {"batch_size": 8}})


def step(model: Classifier, images: torch.Tensor | None = None) -> StepState:
    images = torch.randn(8, 3, 10, 10) if images is None else images
    logits, features = model(images)
    return StepState(model=model, images=images, features=features, logits=logits)


NAMES = sorted(REGISTRY)


@pytest.fixture(params=NAMES)
def name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def build(name: str, model: Classifier):  # type: ignore[no-untyped-def]
    return REGISTRY[name].from_config(model, config_for(name))


def test_registry_is_not_empty() -> None:
    assert {"l2", "l2sp", "bss"} <= set(NAMES)


def test_scalar_and_non_negative(name: str) -> None:
    model = small_model()
    value = build(name, model)(step(model))
    assert value.dim() == 0 and torch.isfinite(value) and value.item() >= 0


def test_gradients_reach_parameters(name: str) -> None:
    model = small_model()
    build(name, model)(step(model)).backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    if name == "l2sp":
        # zero drift at the start: only the head term pulls (backbone gradient is exactly zero)
        assert grads["head.weight"] is not None and grads["head.weight"].abs().sum() > 0
    else:
        assert any(g is not None and g.abs().sum() > 0 for n, g in grads.items() if n.startswith("backbone."))


def test_follows_to(name: str) -> None:
    model = small_model().double()
    term = build(name, model.float()).double()
    model = model.double()
    value = term(step(model, torch.randn(8, 3, 10, 10, dtype=torch.float64)))
    assert value.dtype == torch.float64
    for buffer in term.buffers():
        assert buffer.dtype == torch.float64


def test_state_dict_round_trip(name: str) -> None:
    model = small_model()
    term = build(name, model)
    buffer = io.BytesIO()
    torch.save(term.state_dict(), buffer)
    buffer.seek(0)
    other = build(name, small_model())
    other.load_state_dict(torch.load(buffer, weights_only=True))
    state = step(model)
    assert other(state).item() == pytest.approx(term(state).item())


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
    assert REGISTRY["l2"].from_config(model, config_from_dict({"regularizer": {"alpha": 0.0}}))(state).item() == 0.0
    bss = REGISTRY["bss"].from_config(model, config_for("bss"))
    rank_one = torch.ones(8, 16)
    assert bss(StepState(model, state.images, rank_one, state.logits)).item() == pytest.approx(0.0, abs=1e-10)


def test_config_alone_composes_terms() -> None:
    for base in ("l2", "l2sp"):
        for enabled in (False, True):
            config = config_from_dict({"regularizer": {"name": base}, "bss": {"enabled": enabled}})
            terms = build_regularizers(small_model(), config)
            assert list(terms) == active_terms(config) == [base] + (["bss"] if enabled else [])
