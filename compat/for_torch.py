"""torch's and torchvision's private names and changed signatures (the fine-tuning core imports
this, and only this, of compat)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from compat import _guard


def foreach_sub(a: Sequence[Any], b: Sequence[Any]) -> list[Any]:
    import torch

    return _guard("torch-foreach", lambda: list(torch._foreach_sub(list(a), list(b))))


def foreach_norm(tensors: Sequence[Any]) -> list[Any]:
    import torch

    return _guard("torch-foreach", lambda: list(torch._foreach_norm(list(tensors))))


def foreach_mul(tensors: Sequence[Any], scalar: Any) -> list[Any]:
    import torch

    return _guard("torch-foreach", lambda: list(torch._foreach_mul(list(tensors), scalar)))


_FILE_LISTS: dict[str, Callable[[Any], list[tuple[Path, int]]]] = {
    "OxfordIIITPet": lambda d: [(Path(p), int(y)) for p, y in zip(d._images, d._labels, strict=True)],
    "FGVCAircraft": lambda d: [(Path(p), int(y)) for p, y in zip(d._image_files, d._labels, strict=True)],
    "StanfordCars": lambda d: [(Path(p), int(y)) for p, y in d._samples],
}


def torchvision_file_list(dataset: Any) -> list[tuple[Path, int]]:
    """(image path, label) of every image of a torchvision dataset instance, in its own order."""
    read = _FILE_LISTS[type(dataset).__name__]
    return _guard("torchvision-file-lists", lambda: read(dataset))
