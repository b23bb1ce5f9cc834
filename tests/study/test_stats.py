"""The report's inference against brute force and scipy, and the claims it can and cannot make."""

from __future__ import annotations

import itertools
import statistics

import numpy as np
import pytest
from scipy import stats as scipy_stats

from study.reporting import stats


def brute_sign_flip(d: list[float]) -> float:
    observed = abs(statistics.fmean(d))
    flips = [
        abs(statistics.fmean([s * x for s, x in zip(signs, d, strict=True)]))
        for signs in itertools.product((1, -1), repeat=len(d))
    ]
    return sum(f >= observed - 1e-12 for f in flips) / len(flips)


@pytest.mark.parametrize("n", range(1, 9))
def test_sign_flip_is_the_exact_permutation_test(n: int) -> None:
    d = list(np.random.default_rng(n).normal(0.3, 1.0, size=n))
    assert stats.sign_flip_p(d) == pytest.approx(brute_sign_flip(d))


def test_equal_differences_have_a_defined_sign_flip_p_and_an_undefined_t_test() -> None:
    assert stats.sign_flip_p([0.01, 0.01, 0.01]) == pytest.approx(0.25)  # 2 of the 8 sign assignments
    assert stats.sign_flip_p([0.0, 0.0, 0.0]) == 1.0
    assert stats.t_test([0.01, 0.01, 0.01]) == stats.TTest(None, "no variance")
    assert stats.t_test([0.01]) == stats.TTest(None, "fewer than 2 pairs")
    assert stats.smallest_sign_flip_p(3) == 0.25 and stats.smallest_sign_flip_p(5) == 0.0625


def test_monte_carlo_beyond_sixteen_pairs_is_seeded_and_close() -> None:
    d = list(np.random.default_rng(0).normal(0.2, 1.0, size=20))
    p = stats.sign_flip_p(d, seed=1)
    assert p == stats.sign_flip_p(d, seed=1)
    assert p == pytest.approx(scipy_stats.ttest_1samp(d, 0.0).pvalue, abs=0.05)  # near normal data: close


def test_intervals() -> None:
    values = [0.61, 0.64, 0.66, 0.70]
    low, high = scipy_stats.t.interval(0.95, 3, loc=statistics.fmean(values), scale=scipy_stats.sem(values))
    assert stats.t_interval(values) == pytest.approx((low, high))
    assert stats.t_interval(values[:2]) is None and stats.bootstrap_interval(values[:2]) is None
    many = [0.61, 0.64, 0.66, 0.70, 0.58, 0.69, 0.63, 0.65, 0.67, 0.62, 0.60, 0.68]
    boot = stats.bootstrap_interval(many, seed=3)
    assert boot == stats.bootstrap_interval(many, seed=3) and boot is not None
    assert min(many) <= boot[0] < statistics.fmean(many) < boot[1] <= max(many)


# the 16 paired t-test p of docs/fig3d-embedded.md before this report (BSS with k in 1, 2, 4, 8 at 4 rates)
PUBLISHED = [0.519, 0.536, 0.673, 0.0845, 0.192, 0.599, 0.224, 0.0775, 0.849, 0.0485, 0.448, 0.0144, 0.0223]
PUBLISHED += [0.0174, 0.0336, 0.0237]


def test_holm_and_bh_on_the_numbers_the_old_docs_called_significant() -> None:
    holm = stats.adjust(PUBLISHED, "holm")
    bh = stats.adjust(PUBLISHED, "bh")
    assert min(p for p in holm if p is not None) == pytest.approx(16 * 0.0144)  # 0.23: nothing survives
    assert min(p for p in bh if p is not None) == pytest.approx(0.0237 * 16 / 4)  # 0.095: nothing survives
    assert bh == pytest.approx(list(scipy_stats.false_discovery_control(PUBLISHED, method="bh")))
    ordered = sorted(PUBLISHED)
    manual = [max(min(1.0, (16 - j) * ordered[j]) for j in range(i + 1)) for i in range(16)]
    assert sorted(p for p in holm if p is not None) == pytest.approx(manual)


def test_adjust_keeps_order_and_skips_undefined() -> None:
    assert stats.adjust([0.04, None, 0.01], "holm") == pytest.approx([0.04, None, 0.02])
    with pytest.raises(ValueError, match="correction"):
        stats.adjust([0.1], "bonferroni")
