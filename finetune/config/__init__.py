"""The typed, frozen configuration tree of one fine-tuning run, one job a module:

- ``schema``: the sections every run has and the root :class:`TrainConfig`;
- ``methods``: the registry of penalty terms, each declaring its own section and rules;
- ``convert``: the typed converter from mappings to dataclasses (one-line errors naming the field);
- ``io``: nested dicts, YAML and Tune / Optuna's flat dotted keys (:func:`resolve_config`);
- ``params``: which settings act on a run (:func:`applicable_params`).

A term's section class (``BSSConfig``, ...) lives with its term and is also reachable here by name.
"""

from __future__ import annotations

from typing import Any

from finetune.config.convert import build_dataclass
from finetune.config.io import (
    config_from_dict,
    config_from_yaml,
    config_to_dict,
    config_to_yaml,
    flatten,
    load_config,
    resolve_config,
    unflatten,
)
from finetune.config.methods import Method, method_registry
from finetune.config.params import applicable_params
from finetune.config.schema import (
    CUDA_GRAPH_MODES,
    DEVICE_PATTERN,
    PRECISIONS,
    SELECTION_METRICS,
    DataConfig,
    ModelConfig,
    OptimConfig,
    RegularizerConfig,
    Section,
    TasksConfig,
    TrainConfig,
)

__all__ = [
    "CUDA_GRAPH_MODES",
    "DEVICE_PATTERN",
    "PRECISIONS",
    "SELECTION_METRICS",
    "DataConfig",
    "Method",
    "ModelConfig",
    "OptimConfig",
    "RegularizerConfig",
    "Section",
    "TasksConfig",
    "TrainConfig",
    "applicable_params",
    "build_dataclass",
    "config_from_dict",
    "config_from_yaml",
    "config_to_dict",
    "config_to_yaml",
    "flatten",
    "load_config",
    "method_registry",
    "resolve_config",
    "unflatten",
]


def __getattr__(name: str) -> Any:
    """A registered term's section class by its class name (``from finetune.config import
    BSSConfig``), and ``REFERENCE_COEFFICIENTS``: each base term's reference coefficients."""
    registry = method_registry()
    if name == "REFERENCE_COEFFICIENTS":
        return {n: dict(m.reference) for n, m in registry.items() if m.base}
    for method in registry.values():
        if method.section is not None and method.section.__name__ == name:
            return method.section
    raise AttributeError(f"module 'finetune.config' has no attribute {name!r}")
