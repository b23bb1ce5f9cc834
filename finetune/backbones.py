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
    """``build(config, image_size)`` returns the model whose weights ``model.weights`` loads (a
    torchvision model); ``to_features`` turns it into a pooled extractor of ``feature_dim(config)``
    features. ``weights``: its torchvision weights names (None: files only)."""

    name: str
    build: Callable[[ModelConfig, int], nn.Module]
    weights: type[WeightsEnum] | None
    feature_dim: Callable[[ModelConfig], int]
    to_features: Callable[[nn.Module], nn.Module]
    stage_layers: Callable[[nn.Module], list[str]]  # last conv of each stage, named inside the extractor
    description: str = ""

    def weight_names(self) -> list[str]:
        return list(self.weights.__members__) if self.weights is not None else []


def _torchvision(build: Callable[[], nn.Module]) -> Callable[[ModelConfig, int], nn.Module]:
    return lambda config, image_size: build()


def _fixed(dim: int) -> Callable[[ModelConfig], int]:
    return lambda config: dim


class PixelMLP(nn.Module):
    """Kirkpatrick et al.'s permuted-MNIST network without its output layer (the classifier's head):
    the image's pixels (the mean over its channels: a greyscale image's own values), then fully
    connected ReLU layers of ``hidden`` units; the features are the last hidden layer."""

    def __init__(self, image_size: int, hidden: tuple[int, ...]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = image_size * image_size
        for units in hidden:
            layers += [nn.Linear(width, units), nn.ReLU()]
            width = units
        self.layers = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.layers(images.mean(1).flatten(1))


def _no_stages(extractor: nn.Module) -> list[str]:
    raise ConfigError(
        "model.backbone: mlp has no convolutional stages, and the regulariser reads their feature maps; "
        "choose a convolutional backbone or another regulariser"
    )


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
    description = spec.description or f"torchvision {spec.name}, {spec.feature_dim(ModelConfig())}-d pooled features"
    return BACKBONES.add(spec.name, spec, description)


register_backbone(
    BackboneSpec(
        "mobilenet_v2",
        _torchvision(models.mobilenet_v2),
        models.MobileNet_V2_Weights,
        _fixed(1280),
        _mobilenet_features,
        _mobilenet_stages,
    )
)
for _name, _build, _weights, _dim in (
    ("resnet18", models.resnet18, models.ResNet18_Weights, 512),
    ("resnet34", models.resnet34, models.ResNet34_Weights, 512),
    ("resnet50", models.resnet50, models.ResNet50_Weights, 2048),
    ("resnet101", models.resnet101, models.ResNet101_Weights, 2048),
):
    register_backbone(
        BackboneSpec(_name, _torchvision(_build), _weights, _fixed(_dim), _resnet_features, _resnet_stages)
    )
register_backbone(
    BackboneSpec(
        "mlp",
        lambda config, image_size: PixelMLP(image_size, config.mlp_hidden),
        None,
        lambda config: config.mlp_hidden[-1],
        lambda model: model,
        _no_stages,
        "fully connected ReLU layers on the pixels (model.mlp_hidden; default 400, 400: Kirkpatrick et al.'s "
        "permuted-MNIST network), trained from scratch (model.weights: null) or from a file",
    )
)


def backbone_spec(name: str) -> BackboneSpec:
    return BACKBONES[name]


def check_weights_name(config: ModelConfig) -> None:
    """Fail fast on a weights value that is neither a known torchvision name nor an existing file."""
    spec = backbone_spec(config.backbone)
    if config.weights is None or config.weights in spec.weight_names():
        return
    if not Path(config.weights).is_file():
        names = ", ".join(spec.weight_names()) or "it has none"
        raise ConfigError(
            f"model.weights: {config.weights!r} is neither a {config.backbone} weights name ({names}) "
            "nor an existing file"
        )


def _pretrained_state(config: ModelConfig, spec: BackboneSpec) -> Mapping[str, torch.Tensor] | None:
    if config.weights is None:
        return None
    if spec.weights is not None and config.weights in spec.weight_names():
        return torchvision_state_dict(spec.weights[config.weights])
    return file_state_dict(config.weights)


def build_classifier(config: ModelConfig, num_classes: int, image_size: int = 224) -> Classifier:
    """A :class:`Classifier` with the configured backbone, pretrained weights loaded, and a new head
    (``image_size``: the input size, which only a pixel MLP's first layer depends on)."""
    spec = backbone_spec(config.backbone)
    check_weights_name(config)
    model = spec.build(config, image_size)
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
    return Classifier(
        spec.to_features(model), spec.feature_dim(config), num_classes, tsvd_r=config.tsvd_r, head_init=config.head_init
    )
