"""The demo space: {L2, L2-SP} x BSS {on, off}, with eta and k only when BSS is on."""

from __future__ import annotations

from typing import Any

import optuna

from search_spaces.registry import register_space


@register_space("demo", "regulariser {l2, l2sp} x BSS {on, off}; eta, k if BSS; head learning rate")
def demo_space(trial: optuna.Trial) -> dict[str, Any] | None:
    trial.suggest_categorical("regularizer.name", ["l2", "l2sp"])
    trial.suggest_float("optim.lr", 1e-3, 1e-1, log=True)
    if trial.suggest_categorical("bss.enabled", [True, False]):
        trial.suggest_float("bss.eta", 1e-4, 1e-1, log=True)
        trial.suggest_int("bss.k", 1, 4)
    return None
