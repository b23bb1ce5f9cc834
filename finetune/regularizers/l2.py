"""L2 (weight decay) on every trainable weight (Eq. 2)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from finetune.regularizers.base import BuildContext, Regularizer, StepState, register


def squared_norm(params: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.stack([p.pow(2).sum() for p in params]).sum()


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


@register("l2", "weight decay (alpha/2)||w||^2 on all weights", base=True)
def _l2_from_config(context: BuildContext) -> L2:
    return L2(alpha=context.config.regularizer.coefficient("alpha"))
