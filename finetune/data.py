"""Datasets: a registry of loaders, per-class sampling, validation carving, decoding to uint8 tensors."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources

import numpy as np
import torch
import torch.nn.functional as F

from finetune.config import DataConfig
from finetune.dataset_registry import (  # noqa: F401  (their home; imported from here by older code)
    DATASETS,
    DatasetSources,
    Decoder,
    Loader,
    Source,
    check_dataset_name,
    register_dataset,
)
from finetune.errors import ConfigError, DataError
from finetune.sampling import per_class_indices


@dataclass(frozen=True)
class Split:
    """Decoded uint8 images (N, 3, s, s) and the int64 labels (n,) of this split's members.

    ``images`` is a tensor or a (memory-mapped) array; ``index`` maps member i to its row in
    it (None: row i), so a sampled subset of a cached split reads the shared array in place.
    """

    images: torch.Tensor | np.ndarray
    labels: torch.Tensor
    index: np.ndarray | None = None
    hwc: bool = False  # images stored (N, s, s, 3): taken as channels-last (n, 3, s, s) views

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def take(self, members: torch.Tensor | np.ndarray | range, out: torch.Tensor | None = None) -> torch.Tensor:
        """uint8 images of the given members, as a tensor (a copy of just those rows).

        ``out``: a contiguous uint8 tensor of :meth:`row_shape` rows (a pinned host buffer) to
        gather into instead of a new tensor; the result is then a view of it."""
        rows = np.asarray(members, dtype=np.int64)
        if self.index is not None:
            rows = self.index[rows]
        if out is not None:
            if isinstance(self.images, torch.Tensor):
                taken = torch.index_select(self.images, 0, torch.from_numpy(rows), out=out)
            else:
                if rows.size and not 0 <= rows.min() <= rows.max() < len(self.images):
                    raise IndexError(f"rows {rows.min()}..{rows.max()} of a split of {len(self.images)} images")
                # mode="clip" (the rows are checked): numpy buffers an ``out`` under the default "raise"
                np.take(self.images, rows, axis=0, out=out.numpy(), mode="clip")
                taken = out
        elif isinstance(self.images, torch.Tensor):
            taken = self.images[torch.from_numpy(rows)]
        else:
            taken = torch.from_numpy(np.ascontiguousarray(self.images[rows]))
        return taken.permute(0, 3, 1, 2) if self.hwc else taken

    def row_shape(self) -> tuple[int, ...]:
        """The shape of one stored image (what :meth:`take` gathers, before any permutation)."""
        return tuple(self.images.shape[1:])

    def all_images(self) -> torch.Tensor:
        return self.take(range(len(self)))


@dataclass(frozen=True)
class Splits:
    train: Split
    val: Split | None  # None with ``selection: last`` (no validation)
    test: Split
    classes: tuple[str, ...]

    @property
    def sizes(self) -> SplitSizes:
        return SplitSizes(len(self.train), 0 if self.val is None else len(self.val), len(self.test))


def resize_uint8(images: torch.Tensor, size: int) -> torch.Tensor:
    """(n, c, h, w) uint8 -> (n, 3, size, size) uint8, antialiased bilinear, grey replicated to RGB."""
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    if images.shape[-2:] != (size, size):
        x = F.interpolate(images.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        images = x.round_().clamp_(0, 255).to(torch.uint8)
    return images.contiguous()


def _embedded_arrays() -> dict[str, np.ndarray]:
    ref = resources.files("finetune") / "assets" / "fashion_mnist_subset.npz"
    with resources.as_file(ref) as path, np.load(path) as npz:
        return {k: npz[k] for k in npz.files}


def array_source(images: np.ndarray, labels: np.ndarray) -> Source:
    def decode(indices: np.ndarray, size: int) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(images[indices]))
        x = x.unsqueeze(1) if x.dim() == 3 else x.permute(0, 3, 1, 2)
        return resize_uint8(x, size)

    return Source(labels.astype(np.int64), decode)


def load_embedded_fashion_mnist(config: DataConfig) -> DatasetSources:
    """The small real image set shipped with the package (see README: provenance, licence)."""
    a = _embedded_arrays()
    return DatasetSources(
        train=array_source(a["train_x"], a["train_y"]),
        val=array_source(a["val_x"], a["val_y"]),
        test=array_source(a["test_x"], a["test_y"]),
        classes=tuple(str(c) for c in a["classes"]),
    )


DATASETS.add(
    "embedded-fashion-mnist", load_embedded_fashion_mnist, "shipped with the package: Fashion-MNIST, 10 classes"
)


def carve_validation(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split positions 0..n-1 per class into (train, val): round(fraction * n_c) to val, at least
    one for classes with two or more images, never the last image of a class."""
    train, val = [], []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        members = members[np.random.default_rng([seed, int(c), 7919]).permutation(members.size)]
        take = min(members.size - 1, max(1 if members.size >= 2 else 0, round(fraction * members.size)))
        val.append(members[:take])
        train.append(members[take:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def make_split(source: Source, members: np.ndarray, size: int) -> Split:
    """The members of a source as a Split: in place in the shared cache when the source has one."""
    labels = torch.from_numpy(source.labels[members])
    if source.storage is not None:
        return Split(source.storage(size), labels, index=members, hwc=True)
    return Split(source.decode(members, size), labels)


@dataclass(frozen=True)
class SplitSizes:
    """How many images each split of a run has (known from the label lists, nothing decoded)."""

    train: int
    val: int
    test: int


def _members(config: DataConfig, sources: DatasetSources, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Training members (positions in the training pool) and, for ``selection: best_val`` without
    a validation split of the dataset's own, the validation members carved from the sampled
    subset. ``selection: last`` trains on the whole sample: exactly ceil(rate x n_c) a class."""
    chosen = per_class_indices(sources.train.labels, config.sampling_rate, seed)
    if sources.val is not None or config.selection == "last":
        return chosen, None
    if config.val_fraction <= 0:
        raise ConfigError(f"data.val_fraction: {config.dataset} has no validation split; set it > 0 (e.g. 0.1)")
    keep, held = carve_validation(sources.train.labels[chosen], config.val_fraction, seed)
    return chosen[keep], chosen[held]


def split_sizes(config: DataConfig, seed: int) -> SplitSizes:
    """The sizes :func:`load_splits` will produce, from the label lists alone."""
    check_dataset_name(config.dataset)
    sources = DATASETS[config.dataset](config)
    train_idx, val_idx = _members(config, sources, seed)
    if config.selection == "last":
        val = 0
    elif val_idx is not None:
        val = len(val_idx)
    else:
        val = len(sources.val.labels) if sources.val is not None else 0
    return SplitSizes(len(train_idx), val, len(sources.test.labels))


def check_batch_fits(config: DataConfig, sizes: SplitSizes) -> None:
    """A training set smaller than one batch gives no batch at all (the last partial one is dropped)."""
    if sizes.train < config.batch_size:
        raise ConfigError(
            f"data.batch_size: {config.batch_size} is more than the {sizes.train} training images of "
            f"{config.dataset} at sampling_rate {config.sampling_rate}; lower data.batch_size to <= {sizes.train} "
            "or raise data.sampling_rate"
        )


def load_splits(config: DataConfig, seed: int) -> Splits:
    """Sample the training pool per class, carve validation if the dataset has none (and the run
    selects on it), decode."""
    check_dataset_name(config.dataset)
    sources = DATASETS[config.dataset](config)
    size = config.resize_size or config.image_size
    train_idx, val_idx = _members(config, sources, seed)
    val: Split | None = None
    if val_idx is not None:
        val = make_split(sources.train, val_idx, size)
    elif config.selection == "best_val":
        assert sources.val is not None
        val = make_split(sources.val, np.arange(len(sources.val.labels)), size)
    train = make_split(sources.train, train_idx, size)
    test = make_split(sources.test, np.arange(len(sources.test.labels)), size)
    for name, split in (("train", train), ("val", val), ("test", test)):
        if split is not None and len(split) == 0:
            raise DataError(f"data.dataset: {config.dataset} has an empty {name} split after sampling")
    return Splits(train, val, test, sources.classes)


class BatchStream:
    """An endless, seeded stream of shuffled training index batches (last partial batch dropped).

    Its position is part of the engine's saved state, so a resumed run sees the same batches.
    """

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        if n < batch_size:
            raise DataError(
                f"data.batch_size: {batch_size} exceeds the {n} sampled training images; "
                "lower data.batch_size or raise data.sampling_rate"
            )
        self.n, self.batch_size = n, batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self.order = torch.randperm(n, generator=self.generator)
        self.position = 0

    def next(self) -> torch.Tensor:
        if self.position + self.batch_size > self.n:
            self.order = torch.randperm(self.n, generator=self.generator)
            self.position = 0
        batch = self.order[self.position : self.position + self.batch_size]
        self.position += self.batch_size
        return batch

    def batches_per_pass(self) -> int:
        return self.n // self.batch_size

    def state_dict(self) -> dict[str, object]:
        return {"rng": self.generator.get_state(), "order": self.order.clone(), "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["rng"])
        self.order = state["order"].clone()
        self.position = int(state["position"])  # states saved with a "passes" count load too


def eval_batches(split: Split, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for start in range(0, len(split), batch_size):
        end = min(len(split), start + batch_size)
        yield split.take(range(start, end)), split.labels[start:end]
