"""The datasets' registry, a leaf: the loaders register here as their modules load (the embedded
set in :mod:`finetune.data`, the paper's file-based datasets in :mod:`finetune.datasets`; loaded the
first time the registry is read), and what a loader returns: each split's labels and decoder."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from finetune.config import DataConfig
from finetune.registry import Registry

Decoder = Callable[[np.ndarray, int], torch.Tensor]  # (indices, size) -> uint8 (n, 3, size, size)


@dataclass(frozen=True)
class Source:
    """One split before decoding: its labels, and how to decode any subset of its images.

    ``storage``, when present, returns the whole split decoded at a size as a (memory-mapped)
    uint8 (n, s, s, 3) array from the shared decoded-image cache; trials gather batches from it.
    """

    labels: np.ndarray
    decode: Decoder
    storage: Callable[[int], np.ndarray] | None = None


@dataclass(frozen=True)
class DatasetSources:
    train: Source
    val: Source | None  # None: carved from the sampled training subset
    test: Source
    classes: tuple[str, ...]


Loader = Callable[[DataConfig], DatasetSources]
DATASETS: Registry[Loader] = Registry("dataset", "data.dataset", providers=("finetune.data", "finetune.datasets"))


def register_dataset(name: str, description: str = "") -> Callable[[Loader], Loader]:
    return DATASETS.register(name, description)


def check_dataset_name(name: str) -> None:
    DATASETS.check(name)
