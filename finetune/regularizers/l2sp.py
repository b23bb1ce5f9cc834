"""L2-SP: pull the shared backbone towards its pretrained starting point (Eq. 3)."""

from __future__ import annotations

import torch
from torch import nn

from finetune.regularizers.base import BuildContext, Regularizer, StepState, register
from finetune.regularizers.l2 import squared_norm


def _buffer_name(param_name: str) -> str:
    return "ref__" + param_name.replace(".", "__")


class L2SP(Regularizer):
    r"""Starting-point regularisation of the backbone plus weight decay on the new head.

    .. math::
        \Omega(w) = \frac{\beta}{2} \lVert w_S - w_S^0 \rVert_2^2
                  + \frac{\alpha}{2} \lVert w_{\bar S} \rVert_2^2

    :math:`w_S^0` (the backbone's weights when this module is built) is held in buffers,
    so it follows ``.to()`` and is saved in ``state_dict``.

    Args:
        backbone: the shared, pretrained part (its current weights become :math:`w_S^0`).
        alpha: coefficient on the new head's weights, ``>= 0``.
        beta: coefficient on the distance to the starting point, ``>= 0``.

    Shape:
        any model -> scalar.
    """

    def __init__(self, backbone: nn.Module, alpha: float = 0.01, beta: float = 0.01) -> None:
        super().__init__()
        if alpha < 0 or beta < 0:
            raise ValueError(f"regularizer.alpha and regularizer.beta must be >= 0, got {alpha}, {beta}")
        self.alpha = alpha
        self.beta = beta
        self.param_names = [name for name, p in backbone.named_parameters() if p.requires_grad]
        params = dict(backbone.named_parameters())
        for name in self.param_names:
            self.register_buffer(_buffer_name(name), params[name].detach().clone())

    def forward(self, state: StepState) -> torch.Tensor:
        params = dict(state.model.backbone.named_parameters())
        names = self.param_names
        drift = squared_norm([params[n] for n in names], [getattr(self, _buffer_name(n)) for n in names])
        head = squared_norm([p for p in state.model.head.parameters() if p.requires_grad])
        return 0.5 * self.beta * drift + 0.5 * self.alpha * head

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, beta={self.beta}, tensors={len(self.param_names)}"


@register(
    "l2sp",
    "L2-SP: (beta/2)||w_S - w_S^0||^2 on the backbone + (alpha/2)||w_head||^2",
    term=L2SP,
    base=True,
    title="L2-SP",
    coefficients=("alpha", "beta"),
    reference={"alpha": 0.01, "beta": 0.01},  # tllib's L2-SP defaults
    # tllib (delta.py, l2_sp): trade_off_head 0.01 on 0.5||w_head||^2, trade_off_backbone 0.01 on
    # 0.5||w_S - w_S^0||^2, optimiser weight decay 0; the official BSS code has no L2-SP (its weight
    # decay 5e-4 is L2's, not a coefficient of this term): it takes the reference above
    protocol_coefficients={"tllib": {"alpha": 0.01, "beta": 0.01}},
)
def _l2sp_from_config(context: BuildContext) -> L2SP:
    r = context.config.regularizer
    return L2SP(context.model.backbone, alpha=r.coefficient("alpha"), beta=r.coefficient("beta"))
