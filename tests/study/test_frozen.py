"""The names Tune pickles into a study folder resolve where study/frozen.py says, old paths included."""

from __future__ import annotations

import importlib

import pytest

from study.frozen import FROZEN


def resolve(path: str) -> object:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("pickled", sorted(FROZEN))
def test_a_pickled_path_resolves_to_the_name_where_it_lives_now(pickled: str) -> None:
    found, now = resolve(pickled), resolve(FROZEN[pickled])
    assert found is now
    # the listed home is the name's own: a move without a new stand-in and entry fails here
    assert f"{now.__module__}.{now.__qualname__}" == FROZEN[pickled]  # type: ignore[attr-defined]


def test_every_home_is_also_listed_as_pickled() -> None:
    """What is pickled today stays frozen from now on."""
    assert set(FROZEN.values()) <= set(FROZEN)


def test_every_search_space_function_is_frozen() -> None:
    """A search space's function (or its class, for grids and declared spaces) is pickled with the searcher."""
    from search_spaces import SPACES
    from search_spaces.declarative import parse_space

    defines = [SPACES[name].define for name in SPACES]  # the built-ins (a test may register its own)
    defines = [
        d for d in defines if (d if hasattr(d, "__qualname__") else type(d)).__module__.startswith("search_spaces")
    ]
    defines += [
        parse_space({"x": {"type": "uniform", "low": 0, "high": 1}}).define,
        parse_space({"grid": {"x": [1, 2]}}).define,
    ]
    for define in defines:
        named = define if hasattr(define, "__qualname__") else type(define)
        assert f"{named.__module__}.{named.__qualname__}" in FROZEN, named
