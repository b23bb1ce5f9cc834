from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from finetune.errors import ConfigError
from finetune.sampling import per_class_indices

LABELS = np.repeat(np.arange(5), [10, 7, 33, 1, 20])


@pytest.mark.parametrize("rate", [0.15, 0.3, 0.5, 1.0, 0.01])
def test_counts_are_ceil_rate_times_class_size(rate: float) -> None:
    chosen = per_class_indices(LABELS, rate, seed=0)
    for c, n in zip(*np.unique(LABELS, return_counts=True), strict=True):
        assert (LABELS[chosen] == c).sum() == math.ceil(round(rate * n, 9))
    assert len(set(chosen.tolist())) == len(chosen)


def test_exact_products_do_not_round_up() -> None:
    labels = np.zeros(10, dtype=int)
    assert len(per_class_indices(labels, 0.3, seed=1)) == 3  # 0.3 * 10 is 3.0000000000000004 in floats


def test_seeded_and_seed_dependent() -> None:
    a = per_class_indices(LABELS, 0.3, seed=7)
    assert np.array_equal(a, per_class_indices(LABELS, 0.3, seed=7))
    assert not np.array_equal(a, per_class_indices(LABELS, 0.3, seed=8))


def test_nested_across_rates() -> None:
    subsets = [set(per_class_indices(LABELS, r, seed=3).tolist()) for r in (0.15, 0.3, 0.5, 1.0)]
    for small, large in itertools.pairwise(subsets):
        assert small < large or small == large
    assert subsets[-1] == set(range(len(LABELS)))


@pytest.mark.parametrize("rate", [0.0, -0.1, 1.01])
def test_rate_outside_range(rate: float) -> None:
    with pytest.raises(ConfigError, match=r"data\.sampling_rate"):
        per_class_indices(LABELS, rate, seed=0)
