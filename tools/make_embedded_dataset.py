"""Rebuild ``finetune/assets/fashion_mnist_subset.npz`` from Debian's Fashion-MNIST.

Provenance: Debian package ``dataset-fashion-mnist`` (0.0~git20200523.55506a9-1, MIT
licence, Zalando Research), files under ``/usr/share/datasets/fashion-mnist``.

    apt-get download dataset-fashion-mnist && dpkg -x dataset-fashion-mnist_*.deb fm
    python tools/make_embedded_dataset.py fm/usr/share/datasets/fashion-mnist

The subset is class-balanced and drawn with a fixed seed: a training pool of 300 images
per class and 50 validation images per class, disjoint, from the official training file;
100 test images per class from the official test file.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from finetune.datasets import FASHION_CLASSES as CLASSES
from finetune.datasets import read_idx

TRAIN_PER_CLASS, VAL_PER_CLASS, TEST_PER_CLASS = 300, 50, 100
SEED = 20190415


def balanced(labels: np.ndarray, counts: tuple[int, ...], rng: np.random.Generator) -> list[np.ndarray]:
    """Disjoint, class-balanced index sets, one per entry of ``counts``."""
    parts: list[list[np.ndarray]] = [[] for _ in counts]
    for c in range(len(CLASSES)):
        idx = rng.permutation(np.flatnonzero(labels == c))
        start = 0
        for j, n in enumerate(counts):
            parts[j].append(idx[start : start + n])
            start += n
    return [np.sort(np.concatenate(p)) for p in parts]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="folder with the four *-ubyte.gz files")
    parser.add_argument("--out", type=Path, default=Path("finetune/assets/fashion_mnist_subset.npz"))
    args = parser.parse_args()
    rng = np.random.default_rng(SEED)
    tr_x = read_idx(args.source / "train-images-idx3-ubyte.gz")
    tr_y = read_idx(args.source / "train-labels-idx1-ubyte.gz")
    te_x = read_idx(args.source / "t10k-images-idx3-ubyte.gz")
    te_y = read_idx(args.source / "t10k-labels-idx1-ubyte.gz")
    train_idx, val_idx = balanced(tr_y, (TRAIN_PER_CLASS, VAL_PER_CLASS), rng)
    (test_idx,) = balanced(te_y, (TEST_PER_CLASS,), rng)
    np.savez_compressed(
        args.out,
        train_x=tr_x[train_idx],
        train_y=tr_y[train_idx].astype(np.int64),
        val_x=tr_x[val_idx],
        val_y=tr_y[val_idx].astype(np.int64),
        test_x=te_x[test_idx],
        test_y=te_y[test_idx].astype(np.int64),
        classes=np.array(CLASSES),
    )
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
