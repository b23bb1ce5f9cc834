"""The report's types: a trial as the report reads it, the report's options, and what each table holds (cells,
rows, comparisons with their statistics, lines, duplicates, confirmed rows), gathered in :class:`ReportData`."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from study.reporting import stats

Key = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Trial:
    """One trial: its applicable resolved config (flat) and, if it ran to the end, its test accuracy."""

    trial_id: str
    config: dict[str, Any]
    test_acc: float | None  # None: stopped early or failed
    # the smallest singular values of its features at the last epoch (ascending; empty if unknown)
    spectrum: tuple[float, ...] = ()
    # a task sequence's: the test accuracy on each task at the end, and at the end of its own training
    task_accs: tuple[float, ...] = ()
    learned_accs: tuple[float, ...] = ()
    status: str = "finished"  # finished, failed, stopped early, ...: why test_acc is None
    order: tuple[int, int] = (0, 0)  # (Optuna trial number, row of the table): later is larger
    digest: str | None = None  # of the training images it held (finetune.digests); None: not recorded
    n_test: int | None = None  # images in its test split: its accuracy is a count over this many
    ended: float | None = None  # when it reported its last result (Unix seconds); None: not recorded

    @property
    def seed(self) -> int:
        return int(self.config.get("seed", 0))

    @property
    def dataset(self) -> str:
        return str(self.config["data.dataset"])

    @property
    def base_method(self) -> str:
        return str(self.config["regularizer.name"])

    @property
    def bss(self) -> bool:
        return bool(self.config["bss.enabled"])

    @property
    def ewc(self) -> bool:
        return bool(self.config.get("ewc.enabled", False))

    @property
    def method(self) -> str:
        return self.base_method + ("+EWC" if self.ewc else "") + ("+BSS" if self.bss else "")

    @property
    def rate(self) -> float:
        return float(self.config["data.sampling_rate"])

    @property
    def k(self) -> int | None:
        return int(self.config["bss.k"]) if self.bss else None

    @property
    def tie(self) -> float:
        """Accuracies closer than this are the same count of test images (``stats.tie_of``)."""
        return stats.tie_of(self.n_test)

    @property
    def recency(self) -> tuple[float, int, int]:
        """Later is larger: the end time first (comparable across merged studies), then the Optuna
        trial number and the table row (for trials that recorded no end time)."""
        return (self.ended if self.ended is not None else float("-inf"), *self.order)

    def key(self, leave_out: Callable[[str], bool]) -> Key:
        return tuple(sorted((k, repr(v)) for k, v in self.config.items() if not leave_out(k)))


@dataclass(frozen=True)
class ReportOptions:
    """How the report infers: ``correction`` of each family's p (``holm``, ``bh``), ``interval`` of
    each mean (``t``, ``bootstrap``: seeded percentile), and the seed of the resampling."""

    correction: str = "holm"
    interval: str = "t"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.correction not in stats.CORRECTIONS:
            raise ValueError(f"--correction: must be one of {', '.join(stats.CORRECTIONS)}, got {self.correction!r}")
        if self.interval not in stats.INTERVALS:
            raise ValueError(f"--interval: must be one of {', '.join(stats.INTERVALS)}, got {self.interval!r}")


@dataclass(frozen=True)
class Cell:
    """Test accuracy over the seeds of one configuration; ``expected`` counts lost trials too;
    ``interval``: the 95 % interval of the mean (None, with ``interval_why``, where the data cannot
    support one); ``seeds``: those averaged."""

    mean: float | None
    std: float | None  # None below two values
    n: int
    expected: int
    interval: tuple[float, float] | None = None
    seeds: tuple[int, ...] = ()
    interval_why: str = ""

    @classmethod
    def of(
        cls,
        members: Sequence[Trial],
        value: Callable[[Trial], float | None] = lambda t: t.test_acc,
        options: ReportOptions | None = None,
    ) -> Cell:
        ran = [(t.seed, v) for t, v in ((t, value(t)) for t in members) if v is not None]
        values = [v for _, v in ran]
        mean = statistics.fmean(values) if values else None
        std = statistics.stdev(values) if len(values) > 1 else None
        options = options or ReportOptions()
        tie = min((t.tie for t in members), default=stats.DEFAULT_TIE)
        ci = stats.interval(values, options.interval, options.seed, tie)
        seeds = tuple(sorted(seed for seed, _ in ran))
        return cls(mean, std, len(values), len(members), ci.bounds, seeds, ci.why)

    def text(self) -> str:
        if self.mean is None:
            return f"- (0 of {self.expected} ran to the end)"
        value = f"{100 * self.mean:.2f}" + (f" ± {100 * self.std:.2f}" if self.std is not None else "")
        if self.interval is not None:
            value += f" [{100 * self.interval[0]:.2f}, {100 * self.interval[1]:.2f}]"
        count = f"n={self.n}" if self.n == self.expected else f"n={self.n} of {self.expected}: {self.lost} lost"
        missing = ", no std" if self.std is None else ""
        if self.interval is None:
            missing += f", no interval: {self.interval_why}" if self.interval_why else ", no interval"
        return f"{value} ({count}{missing})"

    @property
    def lost(self) -> int:
        return self.expected - self.n


@dataclass(frozen=True)
class Row:
    dataset: str
    label: str  # the method, with what else sets this row apart
    cells: dict[float, Cell]
    method: str = ""  # the method alone (the base regulariser, +BSS)
    config: dict[str, Any] = field(default_factory=dict)  # what its trials share (one of them, but the seed)

    @property
    def backbone(self) -> str:
        return str(self.config.get("model.backbone", ""))


@dataclass(frozen=True)
class Reference:
    """A Table-2 cell beside the published numbers for the same dataset, backbone, method, rate,
    protocol and published settings; ``label``: the row's own (its settings that set it apart)."""

    dataset: str
    method: str
    rate: float
    cell: Cell
    published: dict[str, float]  # source (``study/references.yaml``) -> accuracy
    label: str = ""
    protocol: str = ""


@dataclass(frozen=True)
class Comparison:
    """Paired differences (BSS minus its partner without BSS, same seed): their mean, its 95 %
    interval (None with ``interval_why``), the paired t-test's p (``p_value``; None with ``p_why``;
    never adjusted), the sign-flip p (``p_sign``, computed as ``p_sign_method`` says), and
    ``p_adjusted``: the sign-flip p adjusted over the comparison's family, whose smallest reachable
    value at these numbers of pairs is ``p_floor``.

    Negative transfer (:meth:`verdict`), one rule for every table: the mean is on the harmful side
    (below zero; above for forgetting) and the family's correction rejects (``p_adjusted`` < 0.05).
    Where ``p_floor`` >= 0.05 no data could show it: the verdict is that it cannot tell."""

    mean_gain: float
    n_pairs: int
    p_value: float | None
    p_why: str
    p_sign: float | None
    interval: tuple[float, float] | None
    n_expected: int = 0  # the BSS trials of the configuration: pairs n of N
    unpaired: tuple[str, ...] = ()  # per seed without a pair: why
    p_adjusted: float | None = None
    p_sign_method: str = "exact"
    interval_why: str = ""
    p_floor: float | None = None
    harmful: int = -1  # the sign of a harmful difference: -1 (less accurate), +1 (more forgetting)

    @classmethod
    def of(
        cls,
        differences: Sequence[float],
        n_expected: int,
        unpaired: Sequence[str],
        options: ReportOptions,
        tie: float = stats.DEFAULT_TIE,
    ) -> Comparison:
        t = stats.t_test(differences, tie)
        flip = stats.sign_flip(differences, options.seed, tie)
        ci = stats.interval(differences, options.interval, options.seed, tie)
        return cls(
            statistics.fmean(differences),
            len(differences),
            t.p,
            t.why,
            flip.p,
            ci.bounds,
            n_expected,
            tuple(unpaired),
            p_sign_method=flip.method,
            interval_why=ci.why,
        )

    def verdict(self, alpha: float = stats.ALPHA) -> str:
        """Negative transfer: ``yes``, ``no``, or ``cannot tell: why`` (see the class)."""
        if self.p_adjusted is not None and self.p_adjusted < alpha and self.mean_gain * self.harmful > 0:
            return "yes"
        if self.p_floor is not None and self.p_floor >= alpha:
            return f"cannot tell: with {self.n_pairs} pairs here its adjusted p cannot go below {self.p_floor:.2g}"
        return "no"


@dataclass(frozen=True)
class Gain(Comparison):
    """BSS minus its partner without BSS on test accuracy, for one configuration and rate."""

    dataset: str = ""
    method: str = ""
    rate: float = 0.0
    seeds_note: str = ""  # how the seeds of the gain differ from those its two cells average


@dataclass(frozen=True)
class Line:
    """One Fig. 3(d) line: accuracy against k at one rate, the rest of the config fixed."""

    rate: float
    label: str
    cells: dict[int, Cell]


@dataclass(frozen=True)
class Duplicate:
    """Trials of one resolved config and seed: ``kept`` counts, ``dropped`` do not."""

    kept: str
    dropped: tuple[str, ...]
    seed: int


@dataclass(frozen=True)
class ConfirmedRow:
    """One selected configuration of a search run again on fresh seeds (``study.run.confirm``): the
    search's own numbers for it ("selected"), its test accuracy over the fresh seeds, and, with BSS,
    its partner without BSS on the same seeds and the paired gain."""

    rank: int
    label: str
    selected_val: float | None
    selected_test: float | None
    cell: Cell
    partner: Cell | None = None
    gain: Gain | None = None

    @property
    def negative_transfer(self) -> str:
        """The gain's verdict (:meth:`Comparison.verdict`); ``-`` without BSS."""
        return "-" if self.gain is None else self.gain.verdict()


@dataclass
class ReportData:
    rates: list[float]
    rows: list[Row] = field(default_factory=list)
    gains: list[Gain] = field(default_factory=list)
    spectra: list[SpectrumShift] = field(default_factory=list)
    fig3d: dict[tuple[str, str], list[Line]] = field(default_factory=dict)  # (dataset, base method) -> lines
    task_columns: list[str] = field(default_factory=list)  # Table 3 (task sequences): its columns
    table3: list[TaskRow] = field(default_factory=list)
    task_gains: list[TaskGain] = field(default_factory=list)
    n_trials: int = 0  # trials that ran to the end
    n_rows: int = 0  # every trial of the table
    duplicates: list[Duplicate] = field(default_factory=list)
    options: ReportOptions = field(default_factory=ReportOptions)
    references: list[Reference] = field(default_factory=list)
    confirmation: list[ConfirmedRow] = field(default_factory=list)
    # the accuracy-against-compute front (study.reporting.data.cost_front): per trial its trial_id, device_s,
    # test_acc, searched (its searched settings) and mark ("selected" or ""); and the study's device-hours
    cost: list[dict[str, Any]] = field(default_factory=list)
    cost_total_hours: float = 0.0
    cost_selected: str | None = None  # the trial the study chose, on the front or not
    cost_unit: str = "CPU-hours"

    @property
    def repeated(self) -> bool:
        """Whether any configuration ran with more than one seed (a mean ± std to show)."""
        return any(cell.n > 1 for row in self.rows for cell in row.cells.values())


@dataclass
class PairGroup:
    """The BSS trials of one configuration (every seed, any status), their pairs with a partner
    without BSS (both with a value), and why each other seed has none."""

    bss: list[Trial] = field(default_factory=list)
    pairs: list[tuple[Trial, Trial]] = field(default_factory=list)
    unpaired: list[str] = field(default_factory=list)
    partner_seeds: set[int] = field(default_factory=set)  # the seeds of its partner configuration's finished trials


C = TypeVar("C", bound=Comparison)


@dataclass(frozen=True)
class SpectrumShift(Comparison):
    """How BSS moved the i-th smallest singular value of the features, against its partner without
    BSS (same config otherwise, same seed): the paired differences, and their mean relative change."""

    dataset: str = ""
    method: str = ""
    rate: float = 0.0
    index: int = 0  # 1 = the smallest
    relative_change: float = 0.0  # mean of (with BSS / without) - 1


@dataclass(frozen=True)
class TaskRow:
    """One Table-3 row: a configuration of a task sequence, each column over its seeds."""

    dataset: str
    label: str
    cells: dict[str, Cell]


@dataclass(frozen=True)
class TaskGain(Comparison):
    """One Table-3 column's BSS difference: the BSS trial minus its partner without BSS (same
    seed, otherwise equal)."""

    dataset: str = ""
    label: str = ""
    column: str = ""
