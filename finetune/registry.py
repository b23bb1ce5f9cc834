"""One registry shape for every named choice (backbones, datasets, regularisers, protocols,
transforms, search spaces): a read-only mapping from name to entry, with a description each.

A second registration under a taken name is refused (a plug-in cannot replace a built-in
silently); an unknown name is a :class:`ConfigError` that names the config field and lists the
choices; ``study list`` prints every registry's names and descriptions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Generic, TypeVar

from finetune.errors import ConfigError

T = TypeVar("T")


class UnknownName(ConfigError, KeyError):
    """A name no entry of a registry has (a KeyError too, for mapping-style callers)."""

    __str__ = BaseException.__str__  # KeyError would print the message in quotes


class Registry(Mapping[str, T], Generic[T]):
    """Named entries of one kind. ``field`` is the config field that chooses among them."""

    def __init__(self, kind: str, field: str) -> None:
        self.kind, self.field = kind, field
        self._entries: dict[str, T] = {}
        self._descriptions: dict[str, str] = {}

    def add(self, name: str, entry: T, description: str = "") -> T:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered already; choose another name")
        self._entries[name] = entry
        self._descriptions[name] = description
        return entry

    def remove(self, name: str) -> None:
        """Take an entry out (a plug-in being unloaded; tests). Unknown names are ignored."""
        self._entries.pop(name, None)
        self._descriptions.pop(name, None)

    def register(self, name: str, description: str = "") -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""
        return lambda entry: self.add(name, entry, description)

    def __getitem__(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownName(f"{self.field}: unknown {self.kind} {name!r}; choose one of {self.choices()}") from None

    def check(self, name: str) -> None:
        self[name]  # raises the one-line error for an unknown name

    def choices(self) -> str:
        return ", ".join(sorted(self._entries))

    def describe(self) -> list[tuple[str, str]]:
        return sorted(self._descriptions.items())

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
