"""The decoded-image cache: same pixels as decoding, built once under concurrency, keyed by the files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from finetune.config import DataConfig
from finetune.data import load_splits
from tests.conftest import run_in_processes
from tests.dataset_layouts import LAYOUTS, image


def config(root: Path, cache: Path, **extra: object) -> DataConfig:
    return DataConfig(
        dataset="imagefolder",
        root=str(root),
        sampling_rate=0.5,
        image_size=16,
        val_fraction=0.25,
        cache_dir=str(cache),
        **extra,
    )  # type: ignore[arg-type]


def test_cached_splits_equal_direct_decoding_and_read_in_place(tmp_path: Path) -> None:
    root = LAYOUTS["imagefolder"](tmp_path / "data")
    cached = load_splits(config(root, tmp_path / "cache"), seed=3)
    direct = load_splits(config(root, tmp_path / "cache", decode_cache=False), seed=3)
    for a, b in ((cached.train, direct.train), (cached.val, direct.val), (cached.test, direct.test)):
        assert isinstance(a.images, np.memmap) or isinstance(getattr(a.images, "base", None), np.memmap)
        assert torch.equal(a.all_images(), b.all_images()) and torch.equal(a.labels, b.labels)
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 2  # train pool and test split, once each


def test_changed_file_gets_a_new_entry(tmp_path: Path) -> None:
    root = LAYOUTS["imagefolder"](tmp_path / "data")
    load_splits(config(root, tmp_path / "cache"), seed=0)
    image(root / "train" / "alpha" / "0.jpg", 9)
    os.utime(root / "train" / "alpha" / "0.jpg", ns=(1, 1))
    load_splits(config(root, tmp_path / "cache"), seed=0)
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 3


def _load(root: str, cache: str) -> None:
    load_splits(config(Path(root), Path(cache)), seed=0)


def test_concurrent_trials_build_once(tmp_path: Path) -> None:
    root = LAYOUTS["imagefolder"](tmp_path / "data")
    cache = tmp_path / "cache"
    run_in_processes(_load, (str(root), str(cache)), count=3)
    entries = list(cache.glob("*.npy"))
    assert len(entries) == 2 and not list(cache.glob("*.partial*"))
    stamps = {e.stat().st_mtime_ns for e in entries}
    _load(str(root), str(cache))  # reuse: nothing rebuilt
    assert {e.stat().st_mtime_ns for e in cache.glob("*.npy")} == stamps
