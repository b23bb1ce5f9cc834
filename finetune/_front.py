"""Front doors that import nothing until asked: a package's ``__init__`` lists its public names and the
module each lives in, and a name is imported from there on first use. ``study status`` then loads
only what status needs, and `import finetune.config` loads no torch."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def front_door(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """The module-level ``__getattr__`` of ``package``: ``exports`` maps each public name to the
    module (in ``package``) it lives in."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{module}"), name)

    return __getattr__
