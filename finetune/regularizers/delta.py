"""DELTA: feature-map regularisation with supervised channel attention (Li et al., ICLR 2019)."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from finetune.config.schema import Section, TrainConfig, check
from finetune.regularizers.base import BuildContext, Regularizer, StepState, register
from finetune.regularizers.l2 import squared_norm

BATCH_REDUCTIONS = ("sum", "mean")


def check_reduction(batch_reduction: str) -> None:
    reductions = "sum (tllib's scale) or mean (divided by the batch size)"
    check(
        batch_reduction in BATCH_REDUCTIONS,
        "delta.batch_reduction",
        f"must be {reductions}, got {batch_reduction!r}",
    )


DELTA_ATTENTION_MODES = ("supervised", "uniform")


@dataclass(frozen=True)
class DeltaConfig(Section):
    """DELTA's channel attention (used when ``regularizer.name`` is ``delta``; its coefficients are
    ``regularizer.alpha`` on the head's squared weights and ``regularizer.beta`` on the feature-map
    distance, tllib's 0.01 each by default).

    ``supervised``: train a head on the frozen pretrained backbone (``attention_epochs``),
    then measure how much zeroing each channel of each hooked layer raises the loss over
    ``attention_batches`` non-augmented batches; per layer, softmax of the z-scored
    increases / 5 (``vectorised``: many channels per forward pass, up to ``ablation_rows``
    images; else one channel at a time, the reference method). ``uniform``: equal weights
    (a plain feature-map distance). The result is cached in ``cache_dir`` (default
    ``~/.cache/bss-study/delta``), keyed by everything it depends on, and shared by all trials.
    ``batch_reduction``: the feature-map term summed over the batch (``sum``, tllib's scale:
    beta = 0.01 is tllib's default) or averaged (``mean``: its scale does not depend on the batch
    size b; the same penalty as ``sum`` needs beta x b, e.g. 0.48 at b = 48).
    """

    attention: str = "supervised"
    attention_epochs: int = 10
    attention_batches: int = 10
    attention_batch_size: int = 32
    attention_lr: float = 0.01
    cache_dir: str | None = None
    vectorised: bool = True
    ablation_rows: int = 1024
    batch_reduction: str = "sum"

    def __post_init__(self) -> None:
        check(
            self.attention in DELTA_ATTENTION_MODES,
            "delta.attention",
            f"must be one of {', '.join(DELTA_ATTENTION_MODES)}, got {self.attention!r}",
        )
        check(self.attention_epochs >= 0, "delta.attention_epochs", "must be >= 0")
        check(self.attention_batches >= 1, "delta.attention_batches", "must be >= 1")
        check(self.attention_batch_size >= 1, "delta.attention_batch_size", "must be >= 1")
        check(self.attention_lr > 0, "delta.attention_lr", "must be > 0")
        check(self.ablation_rows >= 1, "delta.ablation_rows", "must be >= 1")
        check_reduction(self.batch_reduction)


def _check_with(config: TrainConfig) -> None:
    check(
        config.model.backbone != "mlp",
        "regularizer.name",
        "delta needs a convolutional backbone's feature maps (model.backbone is mlp); use l2 or l2sp",
    )


class DELTA(Regularizer):
    r"""Behavioural regulariser against a frozen copy of the pretrained backbone.

    .. math::
        \Omega = \beta \sum_{l} \rho \sum_{n=1}^{b} \frac{1}{2} \sum_{j=1}^{c_l}
                 \frac{c_l\, a_{l,j}}{h_l w_l} \lVert F^{t}_{l,j}(x_n) - F^{s}_{l,j}(x_n) \rVert_2^2
                 + \frac{\alpha}{2} \lVert w_{head} \rVert_2^2

    :math:`F^t_{l,j}` / :math:`F^s_{l,j}`: channel j of hooked layer l of the target / the
    frozen source, on the same input; :math:`a_{l,\cdot}` sums to 1 per layer. The source
    runs in the target's mode, so the penalty is exactly zero while the weights are equal.
    :math:`\rho` is 1 for ``batch_reduction="sum"`` (tllib's scale: its beta = 0.01 means the
    same here) and 1/b for ``"mean"`` (a scale independent of the batch size; the same penalty
    as ``sum`` needs beta x b).

    Args:
        backbone: the target's backbone at its pretrained weights (copied, frozen, as source).
        layers: dotted names of the hooked modules inside ``backbone``.
        attention: one weight vector ``(c_l,)`` per layer.
        alpha: coefficient on the head's weights; beta: on the feature-map distance.
        batch_reduction: ``sum`` or ``mean`` over the batch of the feature-map distance.

    Shape:
        feature maps ``(b, c_l, h_l, w_l)`` per layer -> scalar.
    """

    # a CUDA graph replay runs no Python hooks (see finetune.cuda_graph)
    graph_unsafe = "reads the backbone's feature maps through forward hooks, which a CUDA graph does not run"

    def __init__(
        self,
        backbone: nn.Module,
        layers: Sequence[str],
        attention: Sequence[torch.Tensor],
        alpha: float = 0.01,
        beta: float = 0.01,
        batch_reduction: str = "sum",
    ) -> None:
        super().__init__()
        check_reduction(batch_reduction)
        self.batch_reduction = batch_reduction
        if len(layers) != len(attention):
            raise ValueError(f"DELTA needs one attention vector per layer, got {len(attention)} for {len(layers)}")
        self.layers = list(layers)
        self.alpha, self.beta = alpha, beta
        self.source = copy.deepcopy(backbone)
        for p in self.source.parameters():
            p.requires_grad_(False)
        for i, a in enumerate(attention):
            self.register_buffer(f"attention_{i}", a.detach().clone().float())
        self._target: dict[str, torch.Tensor] = {}
        self._source: dict[str, torch.Tensor] = {}
        # the hooks live as long as the model they watch: one DELTA term per model, never detached
        self._hook(backbone, self._target)
        self._hook(self.source, self._source)

    def _hook(self, module: nn.Module, store: dict[str, torch.Tensor]) -> None:
        def save(name: str):  # type: ignore[no-untyped-def]
            def hook(_m: nn.Module, _inputs: object, output: torch.Tensor) -> None:
                store[name] = output

            return hook

        for name in self.layers:
            module.get_submodule(name).register_forward_hook(save(name))

    def forward(self, state: StepState) -> torch.Tensor:
        if not all(name in self._target for name in self.layers):
            raise RuntimeError("DELTA: run the model on the batch before the penalty (its hooks saw no feature maps)")
        self.source.train(state.model.training)
        with torch.no_grad():
            self.source(state.images)
        total = torch.zeros((), device=state.images.device)
        for i, name in enumerate(self.layers):
            target, source = self._target[name].float(), self._source[name].float()
            c, h, w = target.shape[1:]
            weight = getattr(self, f"attention_{i}").to(target.dtype) * (c / (h * w))
            distance = (target - source).pow(2).sum(dim=(2, 3))  # (b, c)
            per_image = 0.5 * (distance * weight).sum(dim=1)
            total = total + (per_image.sum() if self.batch_reduction == "sum" else per_image.mean())
        self._target.clear()
        self._source.clear()
        head = squared_norm([p for p in state.model.head.parameters() if p.requires_grad])
        return self.beta * total + 0.5 * self.alpha * head

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, beta={self.beta}, batch_reduction={self.batch_reduction}, layers={self.layers}"


@register(
    "delta",
    "DELTA: attention-weighted feature-map distance to the pretrained network + head L2",
    term=DELTA,
    base=True,
    title="DELTA",
    section=DeltaConfig,
    coefficients=("alpha", "beta"),
    reference={"alpha": 0.01, "beta": 0.01},  # tllib's DELTA defaults (feature-map term summed over the batch)
    # tllib (delta.py): trade_off_head 0.01, trade_off_backbone 0.01, weight decay 0; the official BSS
    # code has no DELTA: it takes the reference above
    protocol_coefficients={"tllib": {"alpha": 0.01, "beta": 0.01}},
    check=_check_with,
)
def _delta_from_config(context: BuildContext) -> DELTA:
    from finetune.backbones import backbone_spec
    from finetune.delta_attention import (
        attention_key,
        cached_attention,
        default_cache_dir,
        supervised_attention,
        uniform_attention,
    )

    config, model = context.config, context.model
    settings = DeltaConfig.of(config)
    layers = backbone_spec(config.model.backbone).stage_layers(model.backbone)
    if settings.attention == "uniform":
        attention = uniform_attention(model, layers)
    else:
        cache = default_cache_dir() if settings.cache_dir is None else Path(settings.cache_dir)
        attention, _ = cached_attention(
            cache,
            attention_key(config, layers),
            lambda: supervised_attention(
                model, layers, context.train_images(), context.train_labels, config, settings, context.device
            ),
        )
    r = config.regularizer
    return DELTA(
        model.backbone,
        layers,
        attention,
        alpha=r.coefficient("alpha"),
        beta=r.coefficient("beta"),
        batch_reduction=settings.batch_reduction,
    )
