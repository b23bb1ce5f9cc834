"""The report's inference, each piece defined where the data allow it and named where they do not.

- :func:`sign_flip_p`: the exact sign-flip permutation test of paired differences (two-sided; every
  one of the 2^n sign assignments for n <= 16, else a seeded Monte-Carlo estimate). It needs no
  normality and is defined for any n >= 1, zero variance included; with n pairs its smallest
  possible p is 2 / 2^n (0.25 at n = 3), which the report states.
- :func:`t_test`: the paired t-test, or why it is undefined (fewer than 2 pairs, zero variance).
- :func:`t_interval` / :func:`bootstrap_interval`: 95 % intervals of a mean (n >= 3 only).
- :func:`adjust`: Holm (family-wise error) or Benjamini-Hochberg (false discovery rate) over a
  family of p-values; each table or figure of the report is one family.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

EXACT_UP_TO = 16  # pairs: 2^16 = 65,536 sign assignments, enumerated
MONTE_CARLO = 200_000  # sign assignments drawn beyond that
MIN_INTERVAL_N = 3  # a 95 % interval from fewer values is too wide to read (t: 12.7 x the standard error at n = 2)
CORRECTIONS = {"holm": "Holm (family-wise error)", "bh": "Benjamini-Hochberg (false discovery rate)"}
INTERVALS = ("t", "bootstrap")


def sign_flip_p(differences: Sequence[float], seed: int = 0) -> float | None:
    """Two-sided p of the sign-flip permutation test of ``mean(differences) == 0`` (None without pairs)."""
    d = np.asarray(differences, dtype=np.float64)
    n = len(d)
    if n == 0:
        return None
    observed = abs(d.mean())
    if n <= EXACT_UP_TO:
        signs = 1 - 2 * ((np.arange(2**n)[:, None] >> np.arange(n)) & 1)
        means = np.abs(signs @ d) / n
        return float(np.mean(means >= observed - 1e-12 * max(1.0, observed)))
    rng = np.random.default_rng(seed)
    signs = rng.choice((-1.0, 1.0), size=(MONTE_CARLO, n))
    means = np.abs(signs @ d) / n
    return float((1 + np.sum(means >= observed - 1e-12 * max(1.0, observed))) / (1 + MONTE_CARLO))


@dataclass(frozen=True)
class TTest:
    p: float | None
    why: str = ""  # why p is undefined


def t_test(differences: Sequence[float]) -> TTest:
    """Two-sided paired t-test of the differences, or why it is undefined."""
    if len(differences) < 2:
        return TTest(None, "fewer than 2 pairs")
    if statistics.pstdev(differences) == 0:
        return TTest(None, "zero variance")
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
    values: Sequence[float], level: float = 0.95, samples: int = 10_000, seed: int = 0
) -> tuple[float, float] | None:
    """The seeded percentile bootstrap interval of the mean (None below ``MIN_INTERVAL_N`` values)."""
    if len(values) < MIN_INTERVAL_N:
        return None
    v = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), size=(samples, len(v)))].mean(axis=1)
    low, high = np.quantile(means, [0.5 - level / 2, 0.5 + level / 2])
    return float(low), float(high)


def interval(values: Sequence[float], kind: str = "t", seed: int = 0) -> tuple[float, float] | None:
    return t_interval(values) if kind == "t" else bootstrap_interval(values, seed=seed)


def interval_name(kind: str) -> str:
    return "95% CI (t)" if kind == "t" else "95% CI (bootstrap percentile, 10,000 resamples, seeded)"


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
    """The smallest two-sided p the sign-flip test can give with n pairs."""
    return min(1.0, 2.0 / 2**n) if n <= EXACT_UP_TO else 1.0 / (1 + MONTE_CARLO)
