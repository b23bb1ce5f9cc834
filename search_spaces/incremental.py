"""Spaces of the incremental-learning setting (a task sequence, the paper's Table 3)."""

from __future__ import annotations

from search_spaces.registry import register_grid

TABLE3_GRID: dict[str, list[str | bool | float | int]] = {
    "ewc.lam": [0.0, 10.0, 30.0, 100.0],  # 0: EWC off (plain fine-tuning from task A to task B)
    "bss.enabled": [False, True],
    "seed": [0, 1, 2, 3, 4],
}
TABLE3_ETA_GRID: dict[str, list[str | bool | float | int]] = {
    "bss.eta": [0.0, 0.001, 0.01, 0.1],  # 0: BSS off, the partner of each BSS setting
    "ewc.lam": [0.0, 30.0],  # 0: EWC off
    "seed": [0, 1, 2, 3, 4],
}

# the define functions keep module-level names: a study's saved searcher refers to them
table3_small_space = register_grid(
    "table3-small",
    "Table 3 with plain fine-tuning as the baseline: EWC lambda in {0 (off), 10, 30, 100} x BSS {off, on} x "
    "5 seeds (40 trials); eta, k, lr and the tasks from the base config (tasks.count >= 2)",
    TABLE3_GRID,
    {"ewc.enabled": True},
).define
table3_eta_space = register_grid(
    "table3-eta",
    "Table 3's BSS strength: eta in {0 (off), 0.001 (the paper's), 0.01, 0.1} x EWC lambda {0 (off), 30} x 5 seeds "
    "(40 trials); k, lr and the tasks from the base config",
    TABLE3_ETA_GRID,
    {"ewc.enabled": True, "bss.enabled": True},
).define
