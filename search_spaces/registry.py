"""Named Optuna define-by-run search spaces.

A space is a function ``space(trial) -> dict | None`` that calls ``trial.suggest_*`` with
dotted config names (``"bss.k"``); Ray's OptunaSearch records every suggestion as a flat
Tune parameter, and :func:`finetune.resolve_config` maps them onto the base config.
Conditional parameters are simply suggested inside an ``if``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import optuna

from finetune.registry import Registry

SpaceFn = Callable[[optuna.Trial], dict[str, Any] | None]


@dataclass(frozen=True)
class SearchSpace:
    """A define-by-run space; with ``grid`` set, trials walk that grid (Optuna's GridSampler)
    instead of TPE, and ``define`` must suggest exactly the grid's parameters."""

    name: str
    description: str
    define: SpaceFn
    grid: Mapping[str, Sequence[Any]] | None = None

    def sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        if self.grid is not None:
            return optuna.samplers.GridSampler({k: list(v) for k, v in self.grid.items()}, seed=seed)
        return optuna.samplers.TPESampler(seed=seed)

    @property
    def grid_size(self) -> int | None:
        return None if self.grid is None else math.prod(len(v) for v in self.grid.values())


SPACES: Registry[SearchSpace] = Registry("search space", "search_space")


def register_space(
    name: str, description: str, grid: Mapping[str, Sequence[Any]] | None = None
) -> Callable[[SpaceFn], SpaceFn]:
    def decorator(fn: SpaceFn) -> SpaceFn:
        SPACES.add(name, SearchSpace(name, description, fn, grid), description)
        return fn

    return decorator


class GridDefine:
    """The define-by-run function of a grid space: suggests every parameter of the grid (Optuna's
    GridSampler picks the values) and returns the constants set for every trial (a plain object,
    so Tune can pickle it)."""

    def __init__(self, grid: Mapping[str, Sequence[Any]], constants: Mapping[str, Any] | None = None) -> None:
        self.grid = {name: list(values) for name, values in grid.items()}
        self.constants = dict(constants or {})

    def __call__(self, trial: optuna.Trial) -> dict[str, Any] | None:
        suggest_grid(trial, self.grid)
        return dict(self.constants) or None


def register_grid(
    name: str, description: str, grid: Mapping[str, Sequence[Any]], constants: Mapping[str, Any] | None = None
) -> SearchSpace:
    """A named grid space: every combination of ``grid`` once, with ``constants`` for every trial."""
    return SPACES.add(name, SearchSpace(name, description, GridDefine(grid, constants), grid), description)


def get_space(name: str) -> SearchSpace:
    return SPACES[name]


def suggest_grid(trial: optuna.Trial, grid: Mapping[str, Sequence[Any]]) -> None:
    """Suggest every parameter of a grid space (GridSampler picks the values)."""
    for name, choices in grid.items():
        trial.suggest_categorical(name, list(choices))


def sample_params(space: SearchSpace, seed: int = 0) -> dict[str, Any]:
    """One draw from ``space`` in a throwaway in-memory study (for validation before launch)."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    trial = study.ask()
    constants = space.define(trial) or {}
    return {**trial.params, **constants}
