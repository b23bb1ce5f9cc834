"""Each protocol's reference numbers land on the coefficient that carries them in that reference,
per regulariser: on a fixed tiny model, the penalty equals the reference's formula with its numbers."""

from __future__ import annotations

import copy

import pytest
import torch

from finetune import config_from_dict
from finetune.backbones import backbone_spec, build_classifier
from finetune.config import ModelConfig
from finetune.model import Classifier
from finetune.regularizers import BuildContext, StepState, build_regularizers


def tiny() -> Classifier:
    torch.manual_seed(0)
    return build_classifier(ModelConfig("resnet18", None), num_classes=5)


def sq(tensors: list[torch.Tensor]) -> float:
    return sum(float(t.detach().pow(2).sum()) for t in tensors)


def penalty(protocol: str, name: str, model: Classifier, images: torch.Tensor) -> float:
    config = config_from_dict(
        {
            "protocol": protocol,
            "regularizer": {"name": name},
            "model": {"backbone": "resnet18", "weights": None},
            "delta": {"attention": "uniform"},
        }
    )
    terms = build_regularizers(BuildContext(model, config, lambda: torch.empty(0), torch.zeros(4)))
    moved(model)
    logits, features = model(images)
    return float(terms[name](StepState(model=model, images=images, features=features, logits=logits)).detach())


def moved(model: Classifier) -> None:
    """Off the starting point, so the terms that measure a distance to it are not zero."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))


def weight_decay(wd: float, model: Classifier) -> float:
    """SGD's weight_decay=wd adds wd * w to every gradient: the gradient of (wd/2)||w||^2."""
    return 0.5 * wd * sq([p for p in model.parameters() if p.requires_grad])


@pytest.mark.parametrize("protocol", ["official-code", "tllib"])
def test_l2_is_both_codes_weight_decay_5e_4(protocol: str) -> None:
    model, images = tiny(), torch.randn(4, 3, 32, 32)
    assert penalty(protocol, "l2", model, images) == pytest.approx(
        weight_decay(5e-4, model), rel=2e-4
    )  # float32 sums over 11 M weights


def test_l2sp_is_tllibs_sp_and_head_terms_at_0_01_each() -> None:
    model, images = tiny(), torch.randn(4, 3, 32, 32)
    start = copy.deepcopy(model)
    value = penalty("tllib", "l2sp", model, images)
    drift = sq([p - p0 for p, p0 in zip(model.backbone.parameters(), start.backbone.parameters(), strict=True)])
    head = sq(list(model.head.parameters()))
    # tllib: trade_off_backbone x SPRegularization (0.5||w - w0||^2) + trade_off_head x L2Regularization (0.5||w||^2)
    assert value == pytest.approx(0.01 * 0.5 * drift + 0.01 * 0.5 * head, rel=2e-4)  # float32 sums over 11 M weights


def test_delta_is_tllibs_feature_map_and_head_terms_at_0_01_each_summed_over_the_batch() -> None:
    model, images = tiny(), torch.randn(4, 3, 32, 32)
    source = copy.deepcopy(model.backbone).train()
    value = penalty("tllib", "delta", model, images)
    layers = backbone_spec("resnet18").stage_layers(model.backbone)
    seen: dict[str, list[torch.Tensor]] = {"t": [], "s": []}
    for net, key in ((model.backbone, "t"), (source, "s")):
        for name in layers:
            net.get_submodule(name).register_forward_hook(lambda _m, _i, out, key=key: seen[key].append(out.detach()))
    with torch.no_grad():
        model.backbone(images), source(images)
    feature_map = 0.0
    for target, src in zip(seen["t"], seen["s"], strict=True):
        c, h, w = target.shape[1:]
        attention = 1.0 / c  # uniform
        # tllib's AttentionBehavioralRegularization: 0.5 * sum over batch and channels of c * a_j / (h w) * ||dF||^2
        feature_map += 0.5 * float(((target - src).pow(2).sum(dim=(2, 3)) * (c * attention / (h * w))).sum())
    head = sq(list(model.head.parameters()))
    assert value == pytest.approx(0.01 * feature_map + 0.01 * 0.5 * head, rel=1e-4)


@pytest.mark.parametrize("name", ["l2sp", "delta"])
def test_the_official_codes_weight_decay_is_not_a_coefficient_of_l2sp_or_delta(name: str) -> None:
    """The official BSS code has no L2-SP or DELTA; its weight decay is L2's. These terms keep
    their own reference (tllib's 0.01), not 5e-4 on the head."""
    r = config_from_dict({"protocol": "official-code", "regularizer": {"name": name}}).regularizer
    assert (r.alpha, r.beta) == (0.01, 0.01)
    explicit = config_from_dict({"protocol": "official-code", "regularizer": {"name": name, "alpha": 0.3}})
    assert explicit.regularizer.alpha == 0.3  # a value given still wins
