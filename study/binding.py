"""The studies this driver process is running, by key: their folder and their live stores.

Tune pickles the searcher and the callbacks into the study folder (``tune/``) and unpickles them
on ``study resume``. They hold only the study's key; their folder and store URLs come from here,
bound by the driver around Tune's run (:func:`bound`). So the pickles hold no URL and no
password, a moved or copied folder restores onto its own files, and the driver never changes its
working directory.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from study.stores import Stores

_BOUND: dict[str, Binding] = {}


@dataclass(frozen=True)
class Binding:
    folder: Path
    stores: Stores
    numbers: dict[str, int] = field(default_factory=dict)  # Tune trial id -> Optuna trial number, as suggested


@contextmanager
def bound(key: str, folder: Path, stores: Stores) -> Iterator[Binding]:
    """``key`` (the study's parent run id) names ``folder`` and ``stores`` for the block."""
    binding = Binding(folder, stores)
    previous = _BOUND.get(key)
    _BOUND[key] = binding
    try:
        yield binding
    finally:
        if previous is None:
            _BOUND.pop(key, None)
        else:
            _BOUND[key] = previous


def lookup(key: str) -> Binding:
    try:
        return _BOUND[key]
    except KeyError:
        raise RuntimeError(f"study {key!r} is not bound in this process (the driver binds it around Tune)") from None


def only() -> Binding:
    """The one bound study: what state pickled by older versions (which held folder-relative
    URLs) resolves against."""
    if len(_BOUND) != 1:
        raise RuntimeError(f"{len(_BOUND)} studies are bound; cannot tell which one a legacy object belongs to")
    return next(iter(_BOUND.values()))
