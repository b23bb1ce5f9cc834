"""The decoded-image cache: each split of a file dataset decoded and resized once, shared by trials.

A split at a given size is stored as one uint8 array (n, s, s, 3) in a ``.npy`` file keyed
by the dataset, the split, the size and the exact list of files (path, size, mtime). Every
trial memory-maps it read-only (the pages are shared through the OS page cache) and
gathers its batches from it; augmentation then runs on tensors. The first trial to need a
split builds it under a file lock while the others wait, then all of them reuse it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from finetune.filelock import cache_root, file_lock


def default_image_cache() -> Path:
    return cache_root() / "images"


def split_key(dataset: str, split: str, size: int, paths: Sequence[Path]) -> str:
    files = []
    for p in paths:
        stat = p.stat()
        files.append([str(p.resolve()), stat.st_size, stat.st_mtime_ns])
    payload = json.dumps({"dataset": dataset, "split": split, "size": size, "files": files, "v": 1})
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def cached_split(
    cache_dir: Path, key: str, count: int, size: int, decode_one: Callable[[int], torch.Tensor], chunk: int = 256
) -> tuple[np.ndarray, bool]:
    """The memory-mapped (count, size, size, 3) uint8 array (HWC: channels-last) for ``key``;
    returns (array, built_here). ``decode_one(i)`` gives image i as (3, size, size) uint8."""
    target = cache_dir / f"{key}.npy"
    with file_lock(cache_dir / f"{key}.lock"):
        built = False
        if not target.is_file():
            tmp = cache_dir / f"{key}.{os.getpid()}.partial.npy"
            try:
                array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(count, size, size, 3))
                for start in range(0, count, chunk):
                    for i in range(start, min(count, start + chunk)):
                        array[i] = decode_one(i).permute(1, 2, 0).numpy()
                array.flush()
                del array
                os.replace(tmp, target)
            finally:
                tmp.unlink(missing_ok=True)
            built = True
    return np.load(target, mmap_mode="r"), built
