"""Search spaces written in the study YAML, for the common case.

    search_space:
      optim.lr: {type: loguniform, low: 1.0e-3, high: 1.0e-1}
      bss.enabled: {type: categorical, choices: [true, false]}
      bss.k: {type: int, low: 1, high: 8, when: {bss.enabled: true}}

Types: ``loguniform``, ``uniform`` (floats), ``int`` (``log: true`` allowed), ``categorical``.
``when`` makes a parameter conditional on the values of parameters declared before it.

A grid of fixed settings (every combination, once, no early stopping; e.g. seeds):

    search_space:
      grid: {seed: [0, 1, 2], bss.enabled: [true, false]}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import optuna

from finetune.errors import ConfigError
from search_spaces.registry import SearchSpace

KEYS: dict[str, set[str]] = {
    "loguniform": {"low", "high"},
    "uniform": {"low", "high"},
    "int": {"low", "high", "log"},
    "categorical": {"choices"},
}
TYPES = tuple(KEYS)


class SpaceError(ConfigError):
    """A declarative space is malformed; the message names the field (an InputError like every
    bad-input error, so the CLI reports it as one line)."""


def _number(spec: Mapping[str, Any], key: str, where: str) -> float:
    value = spec.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SpaceError(f"{where}.{key}: expected a number, got {value!r}")
    return float(value)


def _check_param(spec: Mapping[str, Any], where: str) -> None:
    kind = spec.get("type")
    if kind not in TYPES:
        raise SpaceError(f"{where}.type: expected one of {', '.join(TYPES)}, got {kind!r}")
    allowed = {"type", "when"} | KEYS[kind]
    unknown = set(spec) - allowed
    if unknown:
        names = ", ".join(sorted(allowed))
        raise SpaceError(f"{where}: unknown key {sorted(unknown)[0]!r} for type {kind}; allowed: {names}")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise SpaceError(f"{where}.choices: expected a non-empty list")
        return
    low, high = _number(spec, "low", where), _number(spec, "high", where)
    if not low < high:
        raise SpaceError(f"{where}: low ({low:g}) must be below high ({high:g})")
    if kind == "loguniform" and low <= 0:
        raise SpaceError(f"{where}.low: must be > 0 for loguniform, got {low:g}")
    if kind == "int" and (low != int(low) or high != int(high)):
        raise SpaceError(f"{where}: int bounds must be whole numbers")


def _suggest(trial: optuna.Trial, name: str, spec: Mapping[str, Any]) -> Any:
    kind = spec["type"]
    if kind == "categorical":
        return trial.suggest_categorical(name, spec["choices"])
    if kind == "int":
        return trial.suggest_int(name, int(spec["low"]), int(spec["high"]), log=bool(spec.get("log", False)))
    return trial.suggest_float(name, float(spec["low"]), float(spec["high"]), log=kind == "loguniform")


class DeclaredSpace:
    """The define-by-run function of a declared space (a plain object, so Tune can pickle it)."""

    def __init__(self, declaration: Mapping[str, Mapping[str, Any]]) -> None:
        self.declaration = {name: dict(spec) for name, spec in declaration.items()}

    def __call__(self, trial: optuna.Trial) -> dict[str, Any] | None:
        values: dict[str, Any] = {}
        for name, spec in self.declaration.items():
            if all(values.get(other) == value for other, value in spec.get("when", {}).items()):
                values[name] = _suggest(trial, name, spec)
        return None


class DeclaredGrid:
    """The define-by-run function of a declared grid: one categorical per parameter (GridSampler
    walks the combinations)."""

    def __init__(self, grid: Mapping[str, list[Any]]) -> None:
        self.grid = {name: list(values) for name, values in grid.items()}

    def __call__(self, trial: optuna.Trial) -> dict[str, Any] | None:
        for name, values in self.grid.items():
            trial.suggest_categorical(name, values)
        return None


def _parse_grid(grid: Any, where: str) -> SearchSpace:
    if not isinstance(grid, Mapping) or not grid:
        raise SpaceError(f"{where}: expected a mapping of parameter -> list of values")
    for name, values in grid.items():
        if not isinstance(values, list) or not values:
            raise SpaceError(f"{where}.{name}: expected a non-empty list of values")
        if len({repr(v) for v in values}) != len(values):
            raise SpaceError(f"{where}.{name}: a value is listed twice; list each once")
    return SearchSpace(
        "declared-grid", f"a grid declared in the spec: {', '.join(grid)}", DeclaredGrid(grid), dict(grid)
    )


def parse_space(declaration: Mapping[str, Any], where: str = "search_space") -> SearchSpace:
    """A :class:`SearchSpace` from its YAML form; every error names the parameter and key."""
    if not declaration:
        raise SpaceError(f"{where}: declare at least one parameter")
    if "grid" in declaration:
        if len(declaration) > 1:
            raise SpaceError(f"{where}: a grid is declared alone (grid: {{param: [values], ...}})")
        return _parse_grid(declaration["grid"], f"{where}.grid")
    declared: list[str] = []
    for name, spec in declaration.items():
        here = f"{where}.{name}"
        if not isinstance(spec, Mapping):
            raise SpaceError(f"{here}: expected a mapping with a type")
        when = spec.get("when", {})
        if not isinstance(when, Mapping):
            raise SpaceError(f"{here}.when: expected a mapping of earlier parameter -> value")
        for other in when:
            if other not in declared:
                raise SpaceError(
                    f"{here}.when: unknown parameter {other!r}; conditions refer to parameters declared above"
                )
        _check_param(spec, here)
        declared.append(name)
    return SearchSpace("declared", f"declared in the spec: {', '.join(declaration)}", DeclaredSpace(declaration))
