"""Batch Spectral Shrinkage (Chen et al., NeurIPS 2019, Eq. 8)."""

from __future__ import annotations

import torch

from finetune.regularizers.base import BuildContext, Regularizer, StepState, register


def smallest_singular_values(features: torch.Tensor, k: int) -> torch.Tensor:
    """The k smallest singular values of ``features`` (b, d), ascending, in float32 or wider."""
    if features.dtype in (torch.float16, torch.bfloat16):
        features = features.float()
    return torch.linalg.svdvals(features).flip(0)[:k]


class BatchSpectralShrinkage(Regularizer):
    r"""Penalise the smallest singular values of the batch feature matrix.

    .. math::
        L_{bss}(F) = \eta \sum_{i=1}^{k} \sigma_{-i}^2

    where :math:`F` (shape ``(b, d)``) holds the pooled penultimate features of the batch
    and :math:`\sigma_{-i}` is the i-th smallest of its ``min(b, d)`` singular values. No
    centring, no normalisation, no division by ``b``. Only singular values carry gradient
    (``svdvals``), avoiding the unstable :math:`1/(\sigma_i - \sigma_j)` terms of a full SVD.

    Args:
        k: how many of the smallest singular values to penalise; ``1 <= k < min(b, d)``.
        eta: the trade-off coefficient, ``> 0`` (paper: 0.001).

    Shape:
        features ``(b, d)`` -> scalar.
    """

    def __init__(self, k: int = 1, eta: float = 1e-3) -> None:
        super().__init__()
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ValueError(f"bss.k must be an integer >= 1, got {k!r}")
        if not eta > 0:
            raise ValueError(f"bss.eta must be > 0, got {eta!r}")
        self.k = k
        self.eta = eta

    def penalty(self, features: torch.Tensor) -> torch.Tensor:
        if features.dim() != 2:
            raise ValueError(f"BSS expects pooled features of shape (b, d), got {tuple(features.shape)}")
        b, d = features.shape
        if self.k >= min(b, d):
            raise ValueError(
                f"bss.k = {self.k} must be < min(batch, feature dim) = {min(b, d)}; lower k or raise the batch size"
            )
        sigma = smallest_singular_values(features, self.k)
        return self.eta * sigma.pow(2).sum()

    def forward(self, state: StepState) -> torch.Tensor:
        return self.penalty(state.features)

    def extra_repr(self) -> str:
        return f"k={self.k}, eta={self.eta}"


@register("bss", "Batch Spectral Shrinkage on the pooled batch features (Eq. 8)", base=False)
def _bss_from_config(context: BuildContext) -> BatchSpectralShrinkage:
    return BatchSpectralShrinkage(k=context.config.bss.k, eta=context.config.bss.eta)
