"""The one interface every regulariser implements, and the registry that builds them from a config."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import nn

from finetune.errors import ConfigError
from finetune.registry import Registry

if TYPE_CHECKING:
    from finetune.config import TrainConfig
    from finetune.model import Classifier


@dataclass(frozen=True)
class StepState:
    """What a regulariser may look at in one training step."""

    model: Classifier
    images: torch.Tensor
    features: torch.Tensor
    logits: torch.Tensor


@dataclass(frozen=True)
class TaskEnd:
    """The end of one task of a sequence (``tasks.count`` >= 2): the model at the task's final
    weights and the task's training set, ``n`` images; ``take(positions)`` returns those images
    (normalised, non-augmented, the task's own pixel order, on the model's device) and labels."""

    model: Classifier
    task: int  # 1-based
    n: int
    take: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
    # per trainable weight (by name), the largest curvature the optimiser's steps stay stable on
    # (gradient descent on a quadratic of curvature h diverges once lr x h passes 2, heavy-ball
    # momentum m: 2 (1 + m)); empty if unknown
    curvature_limits: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class BuildContext:
    """What a regulariser may use when it is built: the model at its pretrained starting
    point, the run's config, and the (non-augmented) training images for data-dependent
    set-up such as DELTA's channel attention. ``train_images()`` makes them (normalised floats:
    4.7 GB for CUB's 6,000 images at 256 px) only when a term asks, so no other run holds them."""

    model: Classifier
    config: TrainConfig
    train_images: Callable[[], torch.Tensor]
    train_labels: torch.Tensor
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))


class Regularizer(nn.Module):
    """A penalty term: ``forward(state) -> scalar tensor``, added to the task loss.

    ``graph_unsafe``: why the backbone's training pass cannot run as a CUDA graph with this term
    ('' : it can; see ``finetune.cuda_graph``)."""

    graph_unsafe: str = ""

    def forward(self, state: StepState) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def end_task(self, task: TaskEnd) -> None:
        """Called after each task of a sequence but the last (EWC consolidates there); most terms ignore it."""

    def diagnostics(self) -> dict[str, float]:
        """Figures the term reports of itself after every epoch (metrics of the run); none by default."""
        return {}


Factory = Callable[[BuildContext], Regularizer]


@dataclass(frozen=True)
class RegularizerEntry:
    name: str
    description: str
    from_config: Factory
    base: bool  # True: chosen by ``regularizer.name``; False: an add-on enabled by its own section


REGISTRY: Registry[RegularizerEntry] = Registry("regulariser", "regularizer.name")


def register(name: str, description: str, *, base: bool) -> Callable[[Factory], Factory]:
    def decorator(factory: Factory) -> Factory:
        REGISTRY.add(name, RegularizerEntry(name, description, factory, base), description)
        return factory

    return decorator


def base_regularizer_names() -> list[str]:
    return sorted(name for name, entry in REGISTRY.items() if entry.base)


def check_regularizer_name(name: str) -> None:
    if name not in REGISTRY or not REGISTRY[name].base:
        raise ConfigError(
            f"regularizer.name: unknown regulariser {name!r}; choose one of {', '.join(base_regularizer_names())}"
        )


def active_terms(config: TrainConfig) -> list[str]:
    """Names of the penalty terms a config asks for (the base regulariser, then add-ons)."""
    check_regularizer_name(config.regularizer.name)
    return [config.regularizer.name] + (["ewc"] if config.ewc.enabled else []) + (["bss"] if config.bss.enabled else [])


def build_regularizers(context: BuildContext) -> nn.ModuleDict:
    """One module per active term, keyed by name; ``.to()`` and ``state_dict`` see them all."""
    return nn.ModuleDict({name: REGISTRY[name].from_config(context) for name in active_terms(context.config)})
