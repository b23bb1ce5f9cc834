"""The live state of the studies this driver process runs, in one registry, by study key.

Tune pickles the searcher and the callbacks into the study folder (``tune/``) and unpickles them
on ``study resume``. They hold only the study's key; what they need of the running study comes
from here: its folder and live stores (bound by the driver around Tune's run, :func:`bound`), the
guards of its budget and its disk (:func:`holding`), the Optuna numbers of its trials and the
last reading of Tune's saved state. So the pickles hold no URL and no password, a moved or copied
folder restores onto its own files, and the driver never changes its working directory.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from study.record.stores import Stores

T = TypeVar("T")

_LIVE: dict[str, dict[str, Any]] = {}  # study key -> its live objects by kind ("binding", "budget", "disk")


@dataclass(frozen=True)
class Binding:
    folder: Path
    stores: Stores
    numbers: dict[str, int] = field(default_factory=dict)  # Tune trial id -> Optuna trial number, as suggested
    # Tune's newest saved experiment state, as last read: (its path, its mtime, the trial ids it records as ended)
    tune_state: dict[str, Any] = field(default_factory=dict)


@contextmanager
def holding(key: str, kind: str, value: T) -> Iterator[T]:
    """``value`` is the study ``key``'s live ``kind`` for the block (the one before it after)."""
    slots = _LIVE.setdefault(key, {})
    previous = slots.get(kind)
    slots[kind] = value
    try:
        yield value
    finally:
        if previous is None:
            slots.pop(kind, None)
        else:
            slots[kind] = previous
        if not slots:
            _LIVE.pop(key, None)


def held(key: str | None, kind: str) -> Any | None:
    """The study ``key``'s live ``kind``, None when it has none (or no key: a pickle of an older version)."""
    return _LIVE.get(key, {}).get(kind) if key else None


@contextmanager
def bound(key: str, folder: Path, stores: Stores) -> Iterator[Binding]:
    """``key`` (the study's parent run id) names ``folder`` and ``stores`` for the block."""
    with holding(key, "binding", Binding(folder, stores)) as binding:
        yield binding


def lookup(key: str) -> Binding:
    binding = held(key, "binding")
    if binding is None:
        raise RuntimeError(f"study {key!r} is not bound in this process (the driver binds it around Tune)")
    assert isinstance(binding, Binding)
    return binding


def only() -> Binding:
    """The one bound study: what state pickled by older versions (which held folder-relative
    URLs) resolves against."""
    bindings = [slots["binding"] for slots in _LIVE.values() if "binding" in slots]
    if len(bindings) != 1:
        raise RuntimeError(f"{len(bindings)} studies are bound; cannot tell which one a legacy object belongs to")
    found: Binding = bindings[0]
    return found
