"""Seeded per-class sampling: ceil(rate * n_c) images of each class, nested across rates."""

from __future__ import annotations

import math

import numpy as np

from finetune.errors import ConfigError


def per_class_indices(labels: np.ndarray, rate: float, seed: int) -> np.ndarray:
    """Indices of a per-class sample of ``labels``, sorted.

    Each class c contributes ``ceil(rate * n_c)`` images: the first ones of a permutation
    that depends only on ``seed`` and c. A smaller rate therefore always takes a prefix of
    what a larger rate takes (15% within 30% within 50%), so rates differ only in data.
    """
    if not 0.0 < rate <= 1.0:
        raise ConfigError(f"data.sampling_rate: must be in (0, 1], got {rate}")
    labels = np.asarray(labels)
    chosen = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        order = np.random.default_rng([seed, int(c)]).permutation(members.size)
        # round away float noise (0.3 * 10 = 3.0000000000000004) before the ceiling
        take = math.ceil(round(rate * members.size, 9))
        chosen.append(members[order[:take]])
    return np.sort(np.concatenate(chosen)) if chosen else np.empty(0, dtype=np.int64)
