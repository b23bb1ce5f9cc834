"""Registry of torchvision backbones: how to build each, its pooled feature size, its weights."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torchvision import models
from torchvision.models import WeightsEnum

from finetune.config import ModelConfig
from finetune.errors import ConfigError, WeightsError
from finetune.model import Classifier
from finetune.registry import Registry
from finetune.weights import file_state_dict, torchvision_state_dict


@dataclass(frozen=True)
class BackboneSpec:
    """``build`` returns a torchvision model; ``to_features`` turns it into a pooled extractor."""

    name: str
    build: Callable[[], nn.Module]
    weights: type[WeightsEnum]
    feature_dim: int
    to_features: Callable[[nn.Module], nn.Module]
    stage_layers: Callable[[nn.Module], list[str]]  # last conv of each stage, named inside the extractor


def last_conv(module: nn.Module, prefix: str) -> str:
    """Dotted name (with ``prefix``) of the last ``nn.Conv2d`` inside ``module``."""
    names = [name for name, m in module.named_modules() if isinstance(m, nn.Conv2d)]
    if not names:
        raise ValueError(f"no convolution under {prefix}")
    return f"{prefix}.{names[-1]}" if names[-1] else prefix


def _mobilenet_features(model: nn.Module) -> nn.Module:
    assert isinstance(model, models.MobileNetV2)
    return nn.Sequential(model.features, nn.AdaptiveAvgPool2d(1), nn.Flatten(1))


def _mobilenet_stages(extractor: nn.Module) -> list[str]:
    """Projection convs of the blocks that end each resolution (24, 32, 96, 320 channels)."""
    features = extractor[0]  # type: ignore[index]
    return [last_conv(features[i], f"0.{i}") for i in (3, 6, 13, 17)]


def _resnet_stages(extractor: nn.Module) -> list[str]:
    """conv3 (Bottleneck) or conv2 (BasicBlock) of the last block of layer1..layer4, for any depth."""
    names = []
    for stage in ("layer1", "layer2", "layer3", "layer4"):
        blocks = getattr(extractor, stage)
        names.append(last_conv(blocks[-1], f"{stage}.{len(blocks) - 1}"))
    return names


def _resnet_features(model: nn.Module) -> nn.Module:
    assert isinstance(model, models.ResNet)
    model.fc = nn.Identity()  # type: ignore[assignment,unused-ignore]
    return model


BACKBONES: Registry[BackboneSpec] = Registry("backbone", "model.backbone")


def register_backbone(spec: BackboneSpec) -> BackboneSpec:
    return BACKBONES.add(spec.name, spec, f"torchvision {spec.name}, {spec.feature_dim}-d pooled features")


register_backbone(
    BackboneSpec(
        "mobilenet_v2", models.mobilenet_v2, models.MobileNet_V2_Weights, 1280, _mobilenet_features, _mobilenet_stages
    )
)
for _name, _build, _weights, _dim in (
    ("resnet18", models.resnet18, models.ResNet18_Weights, 512),
    ("resnet34", models.resnet34, models.ResNet34_Weights, 512),
    ("resnet50", models.resnet50, models.ResNet50_Weights, 2048),
    ("resnet101", models.resnet101, models.ResNet101_Weights, 2048),
):
    register_backbone(BackboneSpec(_name, _build, _weights, _dim, _resnet_features, _resnet_stages))


def backbone_spec(name: str) -> BackboneSpec:
    return BACKBONES[name]


def check_weights_name(config: ModelConfig) -> None:
    """Fail fast on a weights value that is neither a known torchvision name nor an existing file."""
    spec = backbone_spec(config.backbone)
    if config.weights is None or config.weights in spec.weights.__members__:
        return
    if not Path(config.weights).is_file():
        names = ", ".join(spec.weights.__members__)
        raise ConfigError(
            f"model.weights: {config.weights!r} is neither a {config.backbone} weights name ({names}) "
            "nor an existing file"
        )


def _pretrained_state(config: ModelConfig, spec: BackboneSpec) -> Mapping[str, torch.Tensor] | None:
    if config.weights is None:
        return None
    if config.weights in spec.weights.__members__:
        return torchvision_state_dict(spec.weights[config.weights])
    return file_state_dict(config.weights)


def build_classifier(config: ModelConfig, num_classes: int) -> Classifier:
    """A :class:`Classifier` with the configured backbone, pretrained weights loaded, and a new head."""
    spec = backbone_spec(config.backbone)
    check_weights_name(config)
    model = spec.build()
    state = _pretrained_state(config, spec)
    if state is not None:
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            first = str(exc).splitlines()[0]
            raise WeightsError(
                f"model.weights: {config.weights} does not fit {config.backbone} ({first}); "
                "use weights saved from the same architecture"
            ) from None
    return Classifier(spec.to_features(model), spec.feature_dim, num_classes, tsvd_r=config.tsvd_r)
