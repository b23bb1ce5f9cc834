"""The one interface every regulariser implements, and the registry that builds them from a config."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from finetune.config.methods import METHODS, Method, active_methods, add_method, base_names, check_base_name

if TYPE_CHECKING:
    from finetune.config import Section, TrainConfig
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

REGISTRY = METHODS  # every term, base and add-on: ``finetune.config.methods``


def register(
    name: str,
    description: str,
    *,
    term: type[Regularizer],
    base: bool,
    title: str = "",
    section: type[Section] | None = None,
    coefficients: tuple[str, ...] = (),
    reference: Mapping[str, float] | None = None,
    knob: str = "",
    applies: Callable[[TrainConfig], bool] | None = None,
    check: Callable[[TrainConfig], None] | None = None,
    protocol_coefficients: Mapping[str, Mapping[str, float]] | None = None,
) -> Callable[[Factory], Factory]:
    """Decorator of a term's factory ``(BuildContext) -> Regularizer``: registers its :class:`Method`
    (every field described there) under ``name``."""

    def decorator(factory: Factory) -> Factory:
        optional: dict[str, Any] = {"applies": applies, "check": check}
        add_method(
            Method(
                name,
                title or name,
                description,
                factory,
                term,
                base,
                section,
                coefficients,
                dict(reference or {}),
                knob,
                **{k: v for k, v in optional.items() if v is not None},
                protocol_coefficients={p: dict(c) for p, c in (protocol_coefficients or {}).items()},
            )
        )
        return factory

    return decorator


def base_regularizer_names() -> list[str]:
    return base_names()


def check_regularizer_name(name: str) -> None:
    check_base_name(name)


def active_terms(config: TrainConfig) -> list[str]:
    """Names of the penalty terms a config asks for (the base regulariser, then add-ons)."""
    check_regularizer_name(config.regularizer.name)
    return [method.name for method in active_methods(config)]


def build_regularizers(context: BuildContext) -> nn.ModuleDict:
    """One module per active term, keyed by name; ``.to()`` and ``state_dict`` see them all."""
    return nn.ModuleDict({name: REGISTRY[name].build(context) for name in active_terms(context.config)})
