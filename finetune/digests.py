"""Which images a run saw, as digests two runs can be compared by.

A split's digest hashes its labels and the uint8 pixels of every member image as the run stores
them (decoded, resized), in order: two runs on the same digest saw the same images, and a
different sampled subset, another copy of a dataset or another resize gives another digest.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from finetune.config import TrainConfig
from finetune.data import Split, Splits

CHUNK = 512  # images hashed at a time (bounded memory for large splits)


def split_digest(split: Split) -> str:
    digest = hashlib.blake2b(digest_size=16)
    digest.update(np.asarray(split.labels, dtype=np.int64).tobytes())
    for start in range(0, len(split), CHUNK):
        digest.update(split.take(range(start, min(len(split), start + CHUNK))).numpy().tobytes())
    return digest.hexdigest()


def data_inputs(config: TrainConfig, splits: Splits) -> dict[str, dict[str, Any]]:
    """Per split (``training``, ``validation``, ``test``): a name, its source, its digest and rows."""
    data = config.data
    source = data.root or data.dataset
    found = {}
    for context, split in (("training", splits.train), ("validation", splits.val), ("test", splits.test)):
        if split is None:
            continue
        rate = f", {100 * data.sampling_rate:g}% a class" if context == "training" else ""
        found[context] = {
            "name": f"{data.dataset} {context}{rate}",
            "source": str(source),
            "digest": split_digest(split),
            "rows": len(split),
        }
    return found
