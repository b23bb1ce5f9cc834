"""Regularisers: one module each, one call shape, one registry."""

# isort: off
# each module registers its term on import; this order is the order of the terms' sections in a
# config and of the add-on terms in the loss (the base term, then EWC, then BSS)
from finetune.regularizers import l2 as _l2  # noqa: F401
from finetune.regularizers import l2sp as _l2sp  # noqa: F401
from finetune.regularizers import delta as _delta  # noqa: F401
from finetune.regularizers import ewc as _ewc  # noqa: F401
from finetune.regularizers import bss as _bss  # noqa: F401

# isort: on
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
from finetune.regularizers.bss import BatchSpectralShrinkage, BSSConfig, smallest_singular_values
from finetune.regularizers.delta import DELTA, DeltaConfig
from finetune.regularizers.ewc import EWC, EWCConfig, diagonal_fisher
from finetune.regularizers.l2 import L2
from finetune.regularizers.l2sp import L2SP

__all__ = [
    "DELTA",
    "EWC",
    "REGISTRY",
    "BSSConfig",
    "BuildContext",
    "DeltaConfig",
    "EWCConfig",
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
