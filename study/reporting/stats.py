"""The report's inference, each piece defined where the data allow it and named where they do not.

- :func:`sign_flip`: the sign-flip permutation test of paired differences (two-sided). Up to
  ``EXACT_UP_TO`` pairs every one of the 2^n sign assignments is counted (meet in the middle: the
  signed sums of each half, combined), so p is exact; beyond, a seeded Monte-Carlo estimate whose
  draws and standard error the report prints. It needs no normality and is defined for any n >= 1,
  zero variance included; with n pairs its smallest possible p is 2 / 2^n (0.25 at n = 3).
- :func:`t_test`: the paired t-test, or why it is undefined (fewer than 2 pairs, no variance).
- :func:`interval`: a 95 % interval of a mean, or why there is none (fewer than 3 values; no
  variance, where no interval is supported by the data; the bootstrap below ``MIN_BOOTSTRAP_N``).
- :func:`adjust`: Holm (family-wise error) or Benjamini-Hochberg (false discovery rate) over a
  family of p-values; each table or figure of the report is one family.

Ties. Accuracies are counts over a test split divided by its size, so two differences that are equal
as counts can differ in the last bit as floats. Every comparison here treats values closer than
``tie`` as equal: half of one image of the test split where its size is known (``tie_of``), else
``DEFAULT_TIE`` (1e-9; distinct counts over a split of fewer than 10^8 images differ by more).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

EXACT_UP_TO = 20  # pairs: 2^20 = 1,048,576 sign assignments, counted exactly
MONTE_CARLO = 200_000  # sign assignments drawn beyond that
MIN_INTERVAL_N = 3  # a 95 % interval from fewer values is too wide to read (t: 12.7 x the standard error at n = 2)
# the percentile bootstrap of a mean covers far less than its level at small n: at n = 3 its 95 % interval is
# [min, max] of the values (75 % coverage at best); at 10 values it is within a few points of 95 % for
# near-normal data. Below this the report shows no bootstrap interval, and says why.
MIN_BOOTSTRAP_N = 10
BOOTSTRAP_SAMPLES = 10_000
DEFAULT_TIE = 1e-9
ALPHA = 0.05  # the level every claim of the report is made at
CORRECTIONS = {"holm": "Holm (family-wise error)", "bh": "Benjamini-Hochberg (false discovery rate)"}
INTERVALS = ("t", "bootstrap")


def tie_of(n_test: int | None) -> float:
    """Values closer than this are the same accuracy: half an image of a split of ``n_test`` images."""
    return 0.5 / n_test if n_test else DEFAULT_TIE


def _constant(values: Sequence[float], tie: float) -> bool:
    return max(values) - min(values) < tie


@dataclass(frozen=True)
class SignFlip:
    """A sign-flip p, ``exact`` (every assignment counted) or estimated from ``draws`` random ones."""

    p: float | None
    exact: bool = True
    draws: int = 0

    @property
    def error(self) -> float:
        """The Monte-Carlo standard error of p (0 when exact)."""
        if self.exact or self.p is None:
            return 0.0
        return math.sqrt(self.p * (1 - self.p) / self.draws)

    @property
    def method(self) -> str:
        if self.exact:
            return "exact"
        return f"Monte Carlo, {self.draws:,} draws, s.e. {self.error:.1g}"


def _signed_sums(values: np.ndarray) -> np.ndarray:
    """Every sum of +-v over ``values`` (2^len of them)."""
    sums = np.zeros(1)
    for v in values:
        sums = np.concatenate((sums + v, sums - v))
    return sums


def sign_flip(differences: Sequence[float], seed: int = 0, tie: float = DEFAULT_TIE) -> SignFlip:
    """Two-sided sign-flip test of ``mean(differences) == 0``: the share of sign assignments whose
    |sum| is at least the observed one (sums within ``tie`` of it tie, and a tie counts)."""
    d = np.asarray(differences, dtype=np.float64)
    n = len(d)
    if n == 0:
        return SignFlip(None)
    threshold = abs(d.sum()) - tie
    if n <= EXACT_UP_TO:
        left, right = _signed_sums(d[: n // 2]), _signed_sums(d[n // 2 :])
        count = 0
        step = max(1, 2**20 // len(right))
        for start in range(0, len(left), step):
            count += int(np.count_nonzero(np.abs(left[start : start + step, None] + right[None, :]) >= threshold))
        return SignFlip(count / 2**n)
    rng = np.random.default_rng(seed)
    count = 0
    for start in range(0, MONTE_CARLO, 20_000):
        signs = rng.choice((-1.0, 1.0), size=(min(20_000, MONTE_CARLO - start), n))
        count += int(np.count_nonzero(np.abs(signs @ d) >= threshold))
    return SignFlip((1 + count) / (1 + MONTE_CARLO), exact=False, draws=MONTE_CARLO)


def sign_flip_p(differences: Sequence[float], seed: int = 0, tie: float = DEFAULT_TIE) -> float | None:
    """The p of :func:`sign_flip` alone (None without pairs)."""
    return sign_flip(differences, seed, tie).p


@dataclass(frozen=True)
class TTest:
    p: float | None
    why: str = ""  # why p is undefined


def t_test(differences: Sequence[float], tie: float = DEFAULT_TIE) -> TTest:
    """Two-sided paired t-test of the differences, or why it is undefined (differences equal
    within ``tie`` have no variance: equal as counts, whatever their last bits say)."""
    if len(differences) < 2:
        return TTest(None, "fewer than 2 pairs")
    if _constant(differences, tie):
        return TTest(None, "no variance")
    from scipy import stats

    return TTest(float(stats.ttest_1samp(list(differences), 0.0).pvalue))


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float] | None:
    """The t interval of the mean (None below ``MIN_INTERVAL_N`` values)."""
    if len(values) < MIN_INTERVAL_N:
        return None
    from scipy import stats

    mean = statistics.fmean(values)
    half = float(stats.t.ppf(0.5 + level / 2, len(values) - 1)) * statistics.stdev(values) / math.sqrt(len(values))
    return mean - half, mean + half


def bootstrap_interval(
    values: Sequence[float], level: float = 0.95, samples: int = BOOTSTRAP_SAMPLES, seed: int = 0
) -> tuple[float, float] | None:
    """The seeded percentile bootstrap interval of the mean (None below ``MIN_BOOTSTRAP_N`` values)."""
    if len(values) < MIN_BOOTSTRAP_N:
        return None
    v = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), size=(samples, len(v)))].mean(axis=1)
    low, high = np.quantile(means, [0.5 - level / 2, 0.5 + level / 2])
    return float(low), float(high)


@dataclass(frozen=True)
class Interval:
    """A 95 % interval of a mean, or (``bounds`` None) why there is none."""

    bounds: tuple[float, float] | None
    why: str = ""


def interval(values: Sequence[float], kind: str = "t", seed: int = 0, tie: float = DEFAULT_TIE) -> Interval:
    """The ``kind`` interval of the mean of ``values``, or why the data cannot support one."""
    if len(values) < MIN_INTERVAL_N:
        return Interval(None, f"fewer than {MIN_INTERVAL_N} values")
    if _constant(values, tie):
        return Interval(None, "no variance")
    if kind == "bootstrap":
        if len(values) < MIN_BOOTSTRAP_N:
            return Interval(None, f"bootstrap below {MIN_BOOTSTRAP_N} values")
        return Interval(bootstrap_interval(values, seed=seed))
    return Interval(t_interval(values))


def interval_name(kind: str, seed: int = 0) -> str:
    if kind == "t":
        return "95% CI (t)"
    return f"95% CI (bootstrap percentile, {BOOTSTRAP_SAMPLES:,} resamples, seed {seed})"


def adjust(p_values: Sequence[float | None], method: str = "holm") -> list[float | None]:
    """Adjusted p-values of one family, in the given order (None stays None and is not counted)."""
    indexed = [(p, i) for i, p in enumerate(p_values) if p is not None]
    m = len(indexed)
    adjusted: list[float | None] = [None] * len(p_values)
    if not m:
        return adjusted
    ordered = sorted(indexed)
    if method == "holm":
        running = 0.0
        for rank, (p, i) in enumerate(ordered):
            running = max(running, min(1.0, (m - rank) * p))
            adjusted[i] = running
    elif method == "bh":
        running = 1.0
        for rank in range(m - 1, -1, -1):
            p, i = ordered[rank]
            running = min(running, min(1.0, p * m / (rank + 1)))
            adjusted[i] = running
    else:
        raise ValueError(f"correction must be one of {', '.join(CORRECTIONS)}, got {method!r}")
    return adjusted


def smallest_sign_flip_p(n: int) -> float:
    """The smallest two-sided p the sign-flip test can give with n pairs (exact up to ``EXACT_UP_TO``)."""
    return min(1.0, 2.0 / 2**n) if n <= EXACT_UP_TO else 1.0 / (1 + MONTE_CARLO)


def adjusted_floors(n_pairs: Sequence[int], method: str = "holm") -> list[float]:
    """Per member of a family, a lower bound of its adjusted sign-flip p whatever the data.

    Each member's p is at least ``f_i``, its smallest possible at its number of pairs. Under Holm a
    member with p ranks after at most the others whose floor is <= p, so its adjusted p is at least
    (m - that count) x p, and never below m x the family's smallest floor (Holm's first step): the
    bound is the least of that over the values p can take. Under Benjamini-Hochberg, ``f_i``."""
    floors = [smallest_sign_flip_p(n) for n in n_pairs]
    if method != "holm" or not floors:
        return floors
    m, lowest = len(floors), min(floors)
    bounds = []
    for i, own in enumerate(floors):
        others = [f for j, f in enumerate(floors) if j != i]
        candidates = [own, *(f for f in others if f > own)]
        best = min((m - sum(f <= p for f in others)) * p for p in candidates)
        bounds.append(min(1.0, max(best, m * lowest, own)))
    return bounds


def pairs_needed(family: int, method: str = "holm", alpha: float = ALPHA) -> int:
    """The fewest pairs with which one member of a family of ``family`` could survive the correction:
    under Holm its p must reach alpha / family; under Benjamini-Hochberg alpha (when every member is
    as extreme; one alone needs Holm's number)."""
    target = alpha / family if method == "holm" else alpha
    n = 1
    while smallest_sign_flip_p(n) >= target and n <= EXACT_UP_TO:
        n += 1
    return n
