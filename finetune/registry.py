"""One registry shape for every named choice (backbones, datasets, regularisers, protocols,
transforms, search spaces): a read-only mapping from name to entry, with a description each.

A second registration under a taken name is refused (a plug-in cannot replace a built-in
silently); an unknown name is a :class:`ConfigError` that names the config field and lists the
choices; ``study list`` prints every registry's names and descriptions.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Generic, TypeVar

from finetune.errors import ConfigError

T = TypeVar("T")


class UnknownName(ConfigError, KeyError):
    """A name no entry of a registry has (a KeyError too, for mapping-style callers)."""

    __str__ = BaseException.__str__  # KeyError would print the message in quotes


class Registry(Mapping[str, T], Generic[T]):
    """Named entries of one kind. ``field`` is the config field that chooses among them.

    ``providers`` name the modules whose import registers the built-in entries: they are imported
    the first time the registry is read, not when it is defined, so the registry stays a leaf (no
    import of what fills it) and a module that only names a registry loads none of its entries."""

    def __init__(self, kind: str, field: str, providers: Sequence[str] = ()) -> None:
        self.kind, self.field = kind, field
        self._entries: dict[str, T] = {}
        self._descriptions: dict[str, str] = {}
        self._providers = tuple(providers)

    def _load(self) -> None:
        providers, self._providers = self._providers, ()
        for module in providers:  # each once; an entry they add lands in this registry
            importlib.import_module(module)

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
        self._load()
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownName(f"{self.field}: unknown {self.kind} {name!r}; choose one of {self.choices()}") from None

    def check(self, name: str) -> None:
        self[name]  # raises the one-line error for an unknown name

    def choices(self) -> str:
        self._load()
        return ", ".join(sorted(self._entries))

    def describe(self) -> list[tuple[str, str]]:
        self._load()
        return sorted(self._descriptions.items())

    def __iter__(self) -> Iterator[str]:
        self._load()
        return iter(self._entries)

    def __len__(self) -> int:
        self._load()
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries
