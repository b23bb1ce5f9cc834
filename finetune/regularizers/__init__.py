"""Regularisers: one module each, one call shape, one registry."""

from finetune.regularizers import bss as _bss  # noqa: F401  (registers)
from finetune.regularizers import delta as _delta  # noqa: F401
from finetune.regularizers import ewc as _ewc  # noqa: F401
from finetune.regularizers import l2 as _l2  # noqa: F401
from finetune.regularizers import l2sp as _l2sp  # noqa: F401
from finetune.regularizers.base import (
    REGISTRY,
    BuildContext,
    Regularizer,
    StepState,
    TaskEnd,
    active_terms,
    base_regularizer_names,
    build_regularizers,
    check_regularizer_name,
)
from finetune.regularizers.bss import BatchSpectralShrinkage, smallest_singular_values
from finetune.regularizers.delta import DELTA
from finetune.regularizers.ewc import EWC, diagonal_fisher
from finetune.regularizers.l2 import L2
from finetune.regularizers.l2sp import L2SP

__all__ = [
    "DELTA",
    "EWC",
    "REGISTRY",
    "BuildContext",
    "L2",
    "L2SP",
    "BatchSpectralShrinkage",
    "Regularizer",
    "StepState",
    "TaskEnd",
    "active_terms",
    "base_regularizer_names",
    "build_regularizers",
    "check_regularizer_name",
    "diagonal_fisher",
    "smallest_singular_values",
]
