"""Which of a run's settings act on it: what a tracker records, so a run with BSS off shows no k."""

from __future__ import annotations

from typing import Any

from finetune.config.io import config_to_dict, flatten
from finetune.config.methods import COEFFICIENTS, method_registry
from finetune.config.schema import TrainConfig


def applicable_params(config: TrainConfig) -> dict[str, Any]:
    """The run's flat config without the settings that do not act on it: a term's section while the
    term is off (an add-on's ``enabled`` kept), or all of it where it cannot act (``Method.applies``:
    EWC without a task sequence); the coefficients the base term does not read (L2's
    ``regularizer.beta``); ``tasks.*`` without a task sequence; ``model.mlp_hidden`` but for the
    ``mlp`` backbone; ``plugins`` when there are none."""
    flat = flatten(config_to_dict(config))
    unused: list[str] = [] if config.plugins else ["plugins"]
    kept: list[str] = []
    if config.tasks.count == 1:
        unused.append("tasks.")
    if config.model.backbone != "mlp":
        unused.append("model.mlp_hidden")
    if config.model.tsvd_r == 0:
        unused.append("model.tsvd_eval")
    registry = method_registry()
    base = registry.get(config.regularizer.name)
    if base is not None:
        unused += [f"regularizer.{c}" for c in COEFFICIENTS if c not in base.coefficients]
    for method in registry.values():
        if method.section is None:
            continue
        prefix = f"{method.name}."
        if not method.applies(config):
            unused.append(prefix)
        elif not method.is_on(config):
            unused.append(prefix)
            if not method.base:
                kept.append(f"{prefix}enabled")
    return {k: v for k, v in flat.items() if k in kept or not k.startswith(tuple(unused))}
