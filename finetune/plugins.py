"""Plug-ins: modules outside the project that register terms, datasets, backbones or protocols.

A config names them in ``plugins`` (``[my_lab.terms]`` or ``[my_lab.terms:register]``); every
config is resolved after its plug-ins are loaded, in whichever process resolves it (the driver,
each trial's worker, ``study report`` later), so a registered name means the same everywhere.
``module`` is imported (registering at import); ``module:function`` is imported and the function
called, once per process.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable

from finetune.errors import ConfigError

_LOADED: dict[str, object] = {}


def load_plugins(names: Iterable[object]) -> None:
    """Load each named plug-in once; a name that does not load is one line naming ``plugins``."""
    if isinstance(names, str):
        raise ConfigError(f"plugins: expected a list of module names, got the string {names!r}; write [{names}]")
    for name in names:
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"plugins: each entry is a module name (module or module:function), got {name!r}")
        if name in _LOADED:
            continue
        module_name, _, attr = name.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigError(
                f"plugins: cannot import {module_name!r} ({exc}); install the package that provides it or fix the name"
            ) from None
        result: object = module
        if attr:
            function = getattr(module, attr, None)
            if not callable(function):
                raise ConfigError(f"plugins: {module_name!r} has no function {attr!r}; name one it defines")
            result = _call(function)
        _LOADED[name] = result


def _call(function: Callable[[], object]) -> object:
    return function()


def forget(name: str) -> None:
    """Let ``name`` load again in this process (after its registrations were removed; tests)."""
    _LOADED.pop(name, None)
