"""L2 (weight decay) on every trainable weight (Eq. 2)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from compat import for_torch
from finetune.regularizers.base import BuildContext, Regularizer, StepState, register


class _SquaredDistance(torch.autograd.Function):
    """sum_i ||p_i - r_i||^2 (or ||p_i||^2 without references) over many tensors in a few
    multi-tensor kernels (``torch._foreach_*``, as the optimisers use) instead of two kernels per
    tensor, with its gradient 2 (p_i - r_i) written the same way. The gradient is given
    explicitly: autograd's gradient of ``_foreach_norm`` divides by the norm, NaN for an all-zero
    tensor such as a new head's bias."""

    @staticmethod
    def forward(ctx: Any, count: int, *tensors: torch.Tensor) -> torch.Tensor:
        params, refs = list(tensors[:count]), list(tensors[count:])
        diffs = for_torch.foreach_sub(params, refs) if refs else params
        ctx.count, ctx.has_refs = count, bool(refs)
        ctx.save_for_backward(*diffs)
        return torch.stack(for_torch.foreach_norm(diffs)).pow(2).sum()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        grads = for_torch.foreach_mul(ctx.saved_tensors, 2 * grad)
        return (None, *grads, *([None] * ctx.count if ctx.has_refs else []))


def squared_norm(params: Sequence[torch.Tensor], refs: Sequence[torch.Tensor] = ()) -> torch.Tensor:
    """sum_i ||p_i||^2, or sum_i ||p_i - r_i||^2 with ``refs`` (no gradient to them)."""
    if refs and len(refs) != len(params):
        raise ValueError(f"{len(params)} tensors but {len(refs)} references")
    if not params:
        return torch.zeros(())
    return _SquaredDistance.apply(len(params), *params, *refs)  # the references get no gradient


class L2(Regularizer):
    r"""Plain weight decay on the whole network.

    .. math:: \Omega(w) = \frac{\alpha}{2} \lVert w \rVert_2^2

    Args:
        alpha: coefficient, ``>= 0``.

    Shape:
        any model -> scalar.
    """

    def __init__(self, alpha: float = 5e-4) -> None:
        super().__init__()
        if alpha < 0:
            raise ValueError(f"regularizer.alpha must be >= 0, got {alpha}")
        self.alpha = alpha

    def forward(self, state: StepState) -> torch.Tensor:
        params = [p for p in state.model.parameters() if p.requires_grad]
        return 0.5 * self.alpha * squared_norm(params)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


@register(
    "l2",
    "weight decay (alpha/2)||w||^2 on all weights",
    term=L2,
    base=True,
    title="L2",
    coefficients=("alpha",),
    reference={"alpha": 5e-4},  # thuml/Batch-Spectral-Shrinkage: SGD weight_decay=5e-4 on all weights
    # both codes' L2 baseline is SGD weight decay 5e-4 on every weight: the gradient of (alpha/2)||w||^2
    protocol_coefficients={"official-code": {"alpha": 5e-4}, "tllib": {"alpha": 5e-4}},
)
def _l2_from_config(context: BuildContext) -> L2:
    return L2(alpha=context.config.regularizer.coefficient("alpha"))
