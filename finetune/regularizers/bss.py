"""Batch Spectral Shrinkage (Chen et al., NeurIPS 2019, Eq. 8)."""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

from finetune.regularizers.base import BuildContext, Regularizer, StepState, register


def _widen(features: torch.Tensor) -> torch.Tensor:
    return features.float() if features.dtype in (torch.float16, torch.bfloat16) else features


def full_precision(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """Run a spectral computation in float32 or wider under any autocast (CPU or CUDA): autocast
    would run its matmuls in bf16 (0.1-0.3 % off, growing with the condition number), and CUDA
    has no bf16 ``eigh``. The result is float32 (float64 for float64 input)."""

    @functools.wraps(fn)
    def wrapper(features: torch.Tensor, *args: object) -> torch.Tensor:
        with torch.autocast(features.device.type, enabled=False):
            return fn(_widen(features), *args)

    return wrapper


@full_precision
def smallest_singular_values(features: torch.Tensor, k: int) -> torch.Tensor:
    """The k smallest singular values of ``features`` (b, d), ascending, in float32 or wider."""
    return torch.linalg.svdvals(_widen(features)).flip(0)[:k]


def _gram(features: torch.Tensor) -> torch.Tensor:
    """The smaller Gram matrix: F F^T (b x b) when b <= d, else F^T F (d x d); same non-zero spectrum."""
    f = _widen(features)
    return f @ f.T if f.shape[0] <= f.shape[1] else f.T @ f


@full_precision
def sum_smallest_sq_svdvals(features: torch.Tensor, k: int) -> torch.Tensor:
    """sum of the k smallest sigma^2 via ``svdvals`` (only singular values carry gradient)."""
    return smallest_singular_values(features, k).pow(2).sum()


@full_precision
def sum_smallest_sq_gram(features: torch.Tensor, k: int) -> torch.Tensor:
    """The same via ``eigvalsh`` of the Gram matrix (squares the condition number)."""
    return torch.linalg.eigvalsh(_gram(features))[:k].clamp_min(0).sum()


@full_precision
def sum_smallest_sq_eigvec(features: torch.Tensor, k: int) -> torch.Tensor:
    """The same as a plain quadratic form: the k eigenvectors V of the smallest eigenvalues of the
    Gram matrix are found without autograd, then sum_i v_i^T G v_i = ||F^T V||^2 (or ||F V||^2)
    is differentiated; for simple eigenvalues its gradient equals that of the eigenvalues."""
    f = _widen(features)
    with torch.no_grad():
        _, vectors = torch.linalg.eigh(_gram(f))
        v = vectors[:, :k]
    projected = f.T @ v if f.shape[0] <= f.shape[1] else f @ v
    return projected.pow(2).sum()


BSS_METHODS = {
    "svdvals": sum_smallest_sq_svdvals,
    "gram_eigvalsh": sum_smallest_sq_gram,
    "eigvec": sum_smallest_sq_eigvec,
}


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
        method: ``svdvals`` (default), ``gram_eigvalsh`` or ``eigvec`` (see ``bench/bss_overhead.py``).

    Shape:
        features ``(b, d)`` -> scalar.
    """

    def __init__(self, k: int = 1, eta: float = 1e-3, method: str = "svdvals") -> None:
        super().__init__()
        if method not in BSS_METHODS:
            raise ValueError(f"bss.method must be one of {', '.join(BSS_METHODS)}, got {method!r}")
        self.method = method
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
        return self.eta * BSS_METHODS[self.method](features, self.k)

    def forward(self, state: StepState) -> torch.Tensor:
        return self.penalty(state.features)

    def extra_repr(self) -> str:
        return f"k={self.k}, eta={self.eta}, method={self.method}"


@register("bss", "Batch Spectral Shrinkage on the pooled batch features (Eq. 8)", base=False)
def _bss_from_config(context: BuildContext) -> BatchSpectralShrinkage:
    bss = context.config.bss
    return BatchSpectralShrinkage(k=bss.k, eta=bss.eta, method=bss.method)
