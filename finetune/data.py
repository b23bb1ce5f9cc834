"""Datasets as decoded tensors, the registry that finds them, and tensor augmentation."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources

import numpy as np
import torch
import torch.nn.functional as F

from finetune.config import DataConfig
from finetune.errors import ConfigError, DataError
from finetune.sampling import per_class_indices

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Split:
    """Decoded images as uint8 (n, h, w) or (n, h, w, 3), and int64 labels (n,)."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, indices: np.ndarray) -> Split:
        return Split(self.images[indices], self.labels[indices])


@dataclass(frozen=True)
class Splits:
    train: Split
    val: Split
    test: Split
    classes: tuple[str, ...]


def load_embedded_fashion_mnist(config: DataConfig) -> Splits:
    """The small real image set shipped with the package (see README: provenance, licence)."""
    ref = resources.files("finetune") / "assets" / "fashion_mnist_subset.npz"
    with resources.as_file(ref) as path, np.load(path) as npz:
        return Splits(
            train=Split(npz["train_x"], npz["train_y"]),
            val=Split(npz["val_x"], npz["val_y"]),
            test=Split(npz["test_x"], npz["test_y"]),
            classes=tuple(str(c) for c in npz["classes"]),
        )


DATASETS: dict[str, Callable[[DataConfig], Splits]] = {
    "embedded-fashion-mnist": load_embedded_fashion_mnist,
}


def check_dataset_name(name: str) -> None:
    if name not in DATASETS:
        raise ConfigError(f"data.dataset: unknown dataset {name!r}; choose one of {', '.join(sorted(DATASETS))}")


def load_splits(config: DataConfig, seed: int) -> Splits:
    """Load a dataset and apply the per-class sampling rate to its training pool."""
    check_dataset_name(config.dataset)
    splits = DATASETS[config.dataset](config)
    for name, split in (("train", splits.train), ("val", splits.val), ("test", splits.test)):
        if len(split) == 0:
            raise DataError(f"data.dataset: {config.dataset} has an empty {name} split")
    train = splits.train.subset(per_class_indices(splits.train.labels, config.sampling_rate, seed))
    return Splits(train, splits.val, splits.test, splits.classes)


def to_model_input(images: np.ndarray, size: int) -> torch.Tensor:
    """uint8 images -> float (n, 3, size, size), resized once and normalised with ImageNet statistics."""
    x = torch.from_numpy(np.ascontiguousarray(images))
    x = x.unsqueeze(1) if x.dim() == 3 else x.permute(0, 3, 1, 2)
    x = x.float().div_(255.0)
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous()


def augment(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and random translation (reflect-padded crop), on tensors."""
    n, _, h, w = batch.shape
    flip = torch.rand(n, generator=generator) < 0.5
    batch = torch.where(flip.view(n, 1, 1, 1).to(batch.device), batch.flip(-1), batch)
    pad = max(1, h // 8)
    padded = F.pad(batch, (pad, pad, pad, pad), mode="reflect")
    dy, dx = torch.randint(0, 2 * pad + 1, (2,), generator=generator).tolist()
    return padded[:, :, dy : dy + h, dx : dx + w]


def train_batches(
    inputs: torch.Tensor, labels: torch.Tensor, batch_size: int, generator: torch.Generator
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One shuffled pass, last incomplete batch dropped (BSS needs b > k), augmented."""
    order = torch.randperm(len(labels), generator=generator)
    for start in range(0, len(order) - batch_size + 1, batch_size):
        idx = order[start : start + batch_size]
        yield augment(inputs[idx], generator), labels[idx]


def eval_batches(
    inputs: torch.Tensor, labels: torch.Tensor, batch_size: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for start in range(0, len(labels), batch_size):
        yield inputs[start : start + batch_size], labels[start : start + batch_size]
