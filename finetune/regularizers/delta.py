"""DELTA: feature-map regularisation with supervised channel attention (Li et al., ICLR 2019)."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from finetune.regularizers.base import BuildContext, Regularizer, StepState, register
from finetune.regularizers.l2 import squared_norm


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
        if batch_reduction not in ("sum", "mean"):
            raise ValueError(f"delta.batch_reduction must be sum or mean, got {batch_reduction!r}")
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


@register("delta", "DELTA: attention-weighted feature-map distance to the pretrained network + head L2", base=True)
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
    layers = backbone_spec(config.model.backbone).stage_layers(model.backbone)
    if config.delta.attention == "uniform":
        attention = uniform_attention(model, layers)
    else:
        cache = default_cache_dir() if config.delta.cache_dir is None else Path(config.delta.cache_dir)
        attention, _ = cached_attention(
            cache,
            attention_key(config, layers),
            lambda: supervised_attention(
                model, layers, context.train_images(), context.train_labels, config, context.device
            ),
        )
    r = config.regularizer
    return DELTA(
        model.backbone,
        layers,
        attention,
        alpha=r.coefficient("alpha"),
        beta=r.coefficient("beta"),
        batch_reduction=config.delta.batch_reduction,
    )
