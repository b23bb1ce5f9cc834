"""The demo space: {L2, L2-SP} x BSS {on, off}, with eta and k only when BSS is on."""

from __future__ import annotations

from typing import Any

import optuna

from search_spaces.registry import register_grid, register_space


@register_space("demo", "regulariser {l2, l2sp} x BSS {on, off}; eta, k if BSS; head learning rate")
def demo_space(trial: optuna.Trial) -> dict[str, Any] | None:
    trial.suggest_categorical("regularizer.name", ["l2", "l2sp"])
    trial.suggest_float("optim.lr", 1e-3, 1e-1, log=True)
    if trial.suggest_categorical("bss.enabled", [True, False]):
        trial.suggest_float("bss.eta", 1e-4, 1e-1, log=True)
        trial.suggest_int("bss.k", 1, 4)
    return None


@register_space(
    "methods",
    "TPE over the six methods with each one's own coefficients: alpha always; beta for l2sp (distance to the "
    "pretrained weights) and delta (feature-map distance); eta and k only with BSS; head lr (no optimiser "
    "weight decay: the regulariser applies the penalty)",
)
def methods_space(trial: optuna.Trial) -> dict[str, Any] | None:
    method = trial.suggest_categorical("regularizer.name", ["l2", "l2sp", "delta"])
    trial.suggest_float("regularizer.alpha", 1e-4, 1e-1, log=True)
    if method in ("l2sp", "delta"):
        trial.suggest_float("regularizer.beta", 1e-4, 1.0, log=True)
    if trial.suggest_categorical("bss.enabled", [True, False]):
        trial.suggest_float("bss.eta", 1e-4, 1e-1, log=True)
        trial.suggest_int("bss.k", 1, 8)
    trial.suggest_float("optim.lr", 1e-3, 1e-1, log=True)
    return None


METHODS_GRID: dict[str, list[str | bool]] = {"regularizer.name": ["l2", "l2sp", "delta"], "bss.enabled": [False, True]}


# each grid's define function keeps its module-level name: a study's saved searcher refers to it
methods_grid_space = register_grid(
    "methods-grid", "every one of the six methods once (a grid); all else from the base config", METHODS_GRID
).define


BSS_ON = {"bss.enabled": True}  # a grid over k: BSS on unless k is 0
PAPER_RATES = [0.15, 0.3, 0.5, 1.0]
PAPER_SEEDS = [0, 1, 2, 3, 4]
TABLE2_GRID: dict[str, list[str | bool | float | int]] = {
    "data.sampling_rate": list(PAPER_RATES),
    "regularizer.name": ["l2", "l2sp", "delta"],
    "bss.enabled": [False, True],
    "seed": list(PAPER_SEEDS),
}
FIG3D_GRID: dict[str, list[str | bool | float | int]] = {
    "bss.k": [1, 2, 4, 8, 16],
    "data.sampling_rate": list(PAPER_RATES),
    "seed": list(PAPER_SEEDS),
}


table2_space = register_grid(
    "paper-table2", "Table 2: rates 15/30/50/100% x six methods x 5 seeds (120 trials per dataset)", TABLE2_GRID
).define
fig3d_space = register_grid(
    "fig3d", "Fig. 3(d): BSS k in {1, 2, 4, 8, 16} x rates x 5 seeds (100 trials), BSS on", FIG3D_GRID, BSS_ON
).define


EMBEDDED_FIG3D_GRID: dict[str, list[str | bool | float | int]] = {
    "bss.k": [0, 1, 2, 4, 8],  # k = 0: BSS off (the regulariser alone, the baseline of each rate)
    "data.sampling_rate": list(PAPER_RATES),
    "seed": [0, 1, 2],
}


fig3d_small_space = register_grid(
    "fig3d-small",
    "Fig. 3(d) with its baseline at a laptop's size: BSS k in {0 (off), 1, 2, 4, 8} x rates 15/30/50/100% x "
    "3 seeds (60 trials)",
    EMBEDDED_FIG3D_GRID,
    BSS_ON,
).define
