"""Search spaces written in the study YAML, for the common case.

    search_space:
      optim.lr: {type: loguniform, low: 1.0e-3, high: 1.0e-1}
      bss.enabled: {type: categorical, choices: [true, false]}
      bss.k: {type: int, low: 1, high: 8, when: {bss.enabled: true}}

Types: ``loguniform``, ``uniform`` (floats), ``int`` (``log: true`` allowed), ``categorical``.
``when`` makes a parameter conditional on the values of parameters declared before it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import optuna

from search_spaces.registry import SearchSpace

TYPES = ("loguniform", "uniform", "int", "categorical")
Suggest = Callable[[optuna.Trial], Any]


class SpaceError(ValueError):
    """A declarative space is malformed; the message names the field."""


def _number(spec: Mapping[str, Any], key: str, where: str) -> float:
    value = spec.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SpaceError(f"{where}.{key}: expected a number, got {value!r}")
    return float(value)


def _suggester(name: str, spec: Mapping[str, Any], where: str) -> Suggest:
    kind = spec.get("type")
    if kind not in TYPES:
        raise SpaceError(f"{where}.type: expected one of {', '.join(TYPES)}, got {kind!r}")
    allowed = {"type", "when"} | (
        {"choices"} if kind == "categorical" else {"low", "high"} | ({"log"} if kind == "int" else set())
    )
    unknown = set(spec) - allowed
    if unknown:
        raise SpaceError(
            f"{where}: unknown key {sorted(unknown)[0]!r} for type {kind}; allowed: {', '.join(sorted(allowed))}"
        )
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise SpaceError(f"{where}.choices: expected a non-empty list")
        return lambda trial: trial.suggest_categorical(name, choices)
    low, high = _number(spec, "low", where), _number(spec, "high", where)
    if not low < high:
        raise SpaceError(f"{where}: low ({low:g}) must be below high ({high:g})")
    if kind == "loguniform":
        if low <= 0:
            raise SpaceError(f"{where}.low: must be > 0 for loguniform, got {low:g}")
        return lambda trial: trial.suggest_float(name, low, high, log=True)
    if kind == "uniform":
        return lambda trial: trial.suggest_float(name, low, high)
    if low != int(low) or high != int(high):
        raise SpaceError(f"{where}: int bounds must be whole numbers")
    log = bool(spec.get("log", False))
    return lambda trial: trial.suggest_int(name, int(low), int(high), log=log)


def parse_space(declaration: Mapping[str, Any], where: str = "search_space") -> SearchSpace:
    """A :class:`SearchSpace` from its YAML form; every error names the parameter and key."""
    if not declaration:
        raise SpaceError(f"{where}: declare at least one parameter")
    steps: list[tuple[str, Suggest, dict[str, Any]]] = []
    for name, spec in declaration.items():
        here = f"{where}.{name}"
        if not isinstance(spec, Mapping):
            raise SpaceError(f"{here}: expected a mapping with a type")
        when = spec.get("when", {})
        if not isinstance(when, Mapping):
            raise SpaceError(f"{here}.when: expected a mapping of earlier parameter -> value")
        for other in when:
            if other not in {n for n, _, _ in steps}:
                raise SpaceError(
                    f"{here}.when: unknown parameter {other!r}; conditions refer to parameters declared above"
                )
        steps.append((name, _suggester(name, spec, here), dict(when)))

    def define(trial: optuna.Trial) -> dict[str, Any] | None:
        values: dict[str, Any] = {}
        for name, suggest, when in steps:
            if all(values.get(other) == value for other, value in when.items()):
                values[name] = suggest(trial)
        return None

    return SearchSpace("declared", f"declared in the spec: {', '.join(declaration)}", define)
