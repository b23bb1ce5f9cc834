"""Batch Spectral Shrinkage (Chen et al., NeurIPS 2019, Eq. 8)."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from finetune.config.schema import Section, TrainConfig, check
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
METHOD_NAMES = tuple(BSS_METHODS)


def check_settings(k: object, eta: float, method: str) -> None:
    """The one home of BSS's own checks (the config section and the module both call it)."""
    check(method in BSS_METHODS, "bss.method", f"must be one of {', '.join(BSS_METHODS)}, got {method!r}")
    check(
        isinstance(k, int) and not isinstance(k, bool) and k >= 1,
        "bss.k",
        f"must be an integer >= 1 (0: BSS off), got {k!r}",
    )
    check(math.isfinite(eta) and eta > 0, "bss.eta", f"must be > 0 (0: BSS off), got {eta}; the paper uses 0.001")


@dataclass(frozen=True)
class BSSConfig(Section):
    """Batch Spectral Shrinkage (Eq. 8): eta * sum of the k smallest squared singular values.

    ``k``: how many singular values (a count, 1 <= k < batch size; paper: 1); ``eta``: the
    trade-off, unitless (paper: 0.001); ``method``: how the spectrum is computed (``svdvals``,
    ``gram_eigvalsh``, ``eigvec``; ``bench/bss_overhead.py``). ``k: 0`` shrinks no singular value,
    which is BSS off: it resolves to ``enabled: false`` (so a grid over k can hold the baseline, e.g.
    k in {0, 1, 2, 4, 8} for Fig. 3(d) with L2 at k = 0); so does ``eta: 0`` (a grid over eta, e.g.
    {0, 0.001, 0.01, 0.1}).
    """

    enabled: bool = False
    k: int = 1
    eta: float = 1e-3
    method: str = "svdvals"

    def __post_init__(self) -> None:
        if self.k == 0 and not isinstance(self.k, bool):
            object.__setattr__(self, "enabled", False)
            object.__setattr__(self, "k", 1)
        if self.eta == 0 and not isinstance(self.eta, bool):
            object.__setattr__(self, "enabled", False)
            object.__setattr__(self, "eta", 1e-3)
        check_settings(self.k, self.eta, self.method)


def _check_with(config: TrainConfig) -> None:
    k, batch = BSSConfig.of(config).k, config.data.batch_size
    check(
        k < batch,
        "bss.k",
        f"must be smaller than data.batch_size ({batch}), got {k}; lower bss.k or raise data.batch_size",
    )


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
        check_settings(k, eta, method)
        self.method = method
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


@register(
    "bss",
    "Batch Spectral Shrinkage on the pooled batch features (Eq. 8)",
    term=BatchSpectralShrinkage,
    base=False,
    title="BSS",
    section=BSSConfig,
    knob="bss.eta",
    check=_check_with,
)
def _bss_from_config(context: BuildContext) -> BatchSpectralShrinkage:
    bss = BSSConfig.of(context.config)
    return BatchSpectralShrinkage(k=bss.k, eta=bss.eta, method=bss.method)
