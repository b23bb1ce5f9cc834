"""The numbers of ``study report``, grouped like with like (drawing lives in :mod:`study.reporting.report`).

Every trial's config is the one it ran with (:mod:`study.record.trial_config`; the settings that
act on it), and trials are grouped by equality of everything but what a summary varies:

- a Table-2 cell: trials equal except for the seed (a row) at one sampling rate (a column);
- the BSS gain: a BSS trial paired with the trial equal to it except for ``bss.*`` (same seed);
- a Fig. 3(d) line: BSS trials equal except for ``bss.k`` and the seed, one line per rate;
- a Table-3 row (a task sequence): trials equal except for the seed; its BSS difference per
  column pairs each BSS trial with its partner without BSS, as the gain does.

A trial that did not run to the end (stopped early, failed) still counts in its cell's expected
number, so a cell that lost trials says so ("3 of 5"); a gain counts its pairs against the BSS
trials of its configuration ("pairs 2 of 3") and says which seed lost its partner and why. Two
trials of the same resolved config and seed are one seed, not two: one is kept (the one that ran to
the end, then the latest) and the others listed (:func:`dedupe`).

Inference (:mod:`study.reporting.stats`): every mean carries a 95 % interval (t, or a seeded bootstrap) from
3 values on; every paired comparison has the exact sign-flip p (defined for any n) beside the
paired t-test's (or why that is undefined), and each table is one family whose p-values are
adjusted together (Holm by default, Benjamini-Hochberg as an option).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from finetune.config import applicable_params
from study.record import SPECTRUM_COLUMNS, params_text, row_config, row_params
from study.reporting import stats
from study.spec import StudyError

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
    ``interval``: the 95 % interval of the mean (None below 3 values); ``seeds``: those averaged."""

    mean: float | None
    std: float | None  # None below two values
    n: int
    expected: int
    interval: tuple[float, float] | None = None
    seeds: tuple[int, ...] = ()

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
        ci = stats.interval(values, options.interval, options.seed)
        return cls(mean, std, len(values), len(members), ci, tuple(sorted(seed for seed, _ in ran)))

    def text(self) -> str:
        if self.mean is None:
            return f"- (0 of {self.expected} ran to the end)"
        value = f"{100 * self.mean:.2f}" + (f" ± {100 * self.std:.2f}" if self.std is not None else "")
        if self.interval is not None:
            value += f" [{100 * self.interval[0]:.2f}, {100 * self.interval[1]:.2f}]"
        count = f"n={self.n}" if self.n == self.expected else f"n={self.n} of {self.expected}: {self.lost} lost"
        missing = ", no std" if self.std is None else ""
        if self.interval is None:
            missing += ", no interval"
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
    backbone: str = ""


@dataclass(frozen=True)
class Reference:
    """A Table-2 cell beside the published numbers for the same dataset, backbone, method and rate."""

    dataset: str
    method: str
    rate: float
    cell: Cell
    published: dict[str, float]  # source (``study/references.yaml``) -> accuracy


@dataclass(frozen=True)
class Comparison:
    """Paired differences (BSS minus its partner without BSS, same seed): their mean, its 95 %
    interval (None below 3 pairs), the paired t-test's p (``p_value``; None with ``p_why``), the exact
    sign-flip p, and ``p_adjusted``: the sign-flip p adjusted over the comparison's family."""

    mean_gain: float
    n_pairs: int
    p_value: float | None
    p_why: str
    p_sign: float | None
    interval: tuple[float, float] | None
    n_expected: int = 0  # the BSS trials of the configuration: pairs n of N
    unpaired: tuple[str, ...] = ()  # per seed without a pair: why
    p_adjusted: float | None = None

    @classmethod
    def of(
        cls, differences: Sequence[float], n_expected: int, unpaired: Sequence[str], options: ReportOptions
    ) -> Comparison:
        t = stats.t_test(differences)
        return cls(
            statistics.fmean(differences),
            len(differences),
            t.p,
            t.why,
            stats.sign_flip_p(differences, options.seed),
            stats.interval(differences, options.interval, options.seed),
            n_expected,
            tuple(unpaired),
        )


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
    def negative_transfer(self) -> bool:
        """BSS's whole 95 % interval below zero: with BSS this configuration is worse."""
        return self.gain is not None and self.gain.interval is not None and self.gain.interval[1] < 0


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

    @property
    def repeated(self) -> bool:
        """Whether any configuration ran with more than one seed (a mean ± std to show)."""
        return any(cell.n > 1 for row in self.rows for cell in row.cells.values())


def trials_from_table(
    rows: Sequence[dict[str, Any]], base: dict[str, Any], study_dir: Path | None = None
) -> list[Trial]:
    """Every row of ``trials.parquet`` as a :class:`Trial`, with the config it ran with (its saved
    ``config.yaml`` under ``study_dir``; rebuilt from its parameters without a folder or file)."""
    trials = []
    for index, row in enumerate(rows):
        config = applicable_params(row_config(study_dir, row, base))
        ran = row["status"] == "finished" and not row.get("early_stopped") and row.get("test_acc") is not None
        spectrum = tuple(float(row[c]) for c in SPECTRUM_COLUMNS if row.get(c) is not None) if ran else ()
        accs, learned = (_numbered(row, "task_acc_"), _numbered(row, "task_learned_acc_")) if ran else ((), ())
        status = "stopped early" if row.get("early_stopped") else str(row["status"])
        number = row.get("optuna_trial_number")
        order = (int(number) if number is not None else -1, index)
        trials.append(
            Trial(
                str(row["trial_id"]),
                config,
                float(row["test_acc"]) if ran else None,
                spectrum,
                accs,
                learned,
                status,
                order,
                row.get("digest_train"),
            )
        )
    return trials


def check_same_data(trials: Sequence[Trial]) -> None:
    """Trials of the same data settings and seed must have drawn the same training images (a BSS
    trial and its partner, a trial and its duplicate); their digests saying otherwise (the dataset
    changed between them, two studies on two copies merged) is one line naming two of them."""
    seen: dict[Key, Trial] = {}
    for t in trials:
        if t.digest is None:
            continue
        key = t.key(lambda k: not (k.startswith("data.") or k == "seed"))
        first = seen.setdefault(key, t)
        if first.digest != t.digest:
            raise StudyError(
                f"trials.parquet: trials {first.trial_id} and {t.trial_id} have the same data settings and seed "
                f"({t.dataset}, {100 * t.rate:g}%, seed {t.seed}) but drew different training images (digests "
                f"{str(first.digest)[:12]}... and {str(t.digest)[:12]}...): the data changed between them; run them "
                "again on one copy of the data"
            )


def dedupe(trials: Sequence[Trial]) -> tuple[list[Trial], list[Duplicate]]:
    """One trial per resolved config and seed (a re-run, a resumed duplicate, two studies merged
    would otherwise pool as extra seeds or overwrite each other as partners): the one that ran to
    the end, then the latest (Optuna trial number, then table row); the others are returned."""
    groups: dict[Key, list[Trial]] = defaultdict(list)
    for t in trials:
        groups[t.key(lambda _: False)].append(t)
    kept, duplicates = [], []
    for members in groups.values():
        best = max(members, key=lambda t: (t.test_acc is not None, t.order))
        kept.append(best)
        if len(members) > 1:
            others = tuple(sorted(t.trial_id for t in members if t is not best))
            duplicates.append(Duplicate(best.trial_id, others, best.seed))
    order = {id(t): i for i, t in enumerate(trials)}
    return sorted(kept, key=lambda t: order[id(t)]), sorted(duplicates, key=lambda d: d.kept)


def _numbered(row: dict[str, Any], prefix: str) -> tuple[float, ...]:
    """``prefix1``, ``prefix2``, ... of a row, in order, up to the first missing one."""
    values: list[float] = []
    while row.get(f"{prefix}{len(values) + 1}") is not None:
        values.append(float(row[f"{prefix}{len(values) + 1}"]))
    return tuple(values)


def _except(*names: str) -> Callable[[str], bool]:
    return lambda key: key in names or any(key.startswith(n) for n in names if n.endswith("."))


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _labels(
    groups: Iterable[tuple[Key, Trial]], name: Callable[[Trial], str], shown: Sequence[str] = ()
) -> dict[Key, str]:
    """``name`` of each group's trial, plus the settings in which groups of the same name differ
    (but the seed and the settings ``shown`` elsewhere, e.g. the rate in its own column)."""
    by_name: dict[str, list[tuple[Key, Trial]]] = defaultdict(list)
    for key, trial in groups:
        by_name[name(trial)].append((key, trial))
    labels = {}
    for base, members in by_name.items():
        names = {k for _, t in members for k in t.config} - {"seed", *shown}
        varying = sorted(k for k in names if len({repr(t.config.get(k)) for _, t in members}) > 1)
        for key, trial in members:
            extra = ", ".join(f"{_short(k)}={trial.config.get(k)}" for k in varying)
            labels[key] = f"{base}({extra})" if extra else base
    return labels


def table2_rows(trials: Sequence[Trial], options: ReportOptions | None = None) -> list[Row]:
    leave_out = _except("seed", "data.sampling_rate")
    groups: dict[Key, dict[float, list[Trial]]] = defaultdict(lambda: defaultdict(list))
    for t in trials:
        groups[t.key(leave_out)][t.rate].append(t)
    first = {key: next(iter(cells.values()))[0] for key, cells in groups.items()}
    labels = _labels(first.items(), lambda t: t.method, shown=("data.sampling_rate",))
    rows = [
        Row(
            first[key].dataset,
            labels[key],
            {rate: Cell.of(members, options=options) for rate, members in cells.items()},
            first[key].method,
            str(first[key].config.get("model.backbone", "")),
        )
        for key, cells in groups.items()
    ]
    return sorted(rows, key=lambda r: (r.dataset, r.label))


@dataclass
class PairGroup:
    """The BSS trials of one configuration (every seed, any status), their pairs with a partner
    without BSS (both with a value), and why each other seed has none."""

    bss: list[Trial] = field(default_factory=list)
    pairs: list[tuple[Trial, Trial]] = field(default_factory=list)
    unpaired: list[str] = field(default_factory=list)
    partner_seeds: set[int] = field(default_factory=set)  # the seeds of its partner configuration's finished trials


def confirmation_rows(
    studies: Sequence[tuple[int, dict[str, Any], list[Trial]]], options: ReportOptions | None = None
) -> list[ConfirmedRow]:
    """Per confirmed configuration (rank, the search's trial row, the confirmation's trials): the
    cell over the fresh seeds, the partner's cell and the BSS gain paired by seed; the gains of all
    ranks are one family."""
    options = options or ReportOptions()
    found = []
    for rank, selected, trials in studies:
        trials, _ = dedupe(trials)
        with_bss = [t for t in trials if t.bss]
        own = with_bss or trials
        gains = bss_gains(trials, options) if with_bss else []
        params = params_text({k: v for k, v in sorted(row_params(selected).items()) if k != "seed"}, _short)
        label = own[0].method + (f" ({params})" if params else "")
        found.append(
            ConfirmedRow(
                rank,
                label,
                selected.get("best_val_acc"),
                selected.get("test_acc"),
                Cell.of(own, options=options),
                Cell.of([t for t in trials if not t.bss], options=options) if with_bss else None,
                gains[0] if gains else None,
            )
        )
    adjusted = iter(_adjusted([r.gain for r in found if r.gain is not None], options))
    return [replace(r, gain=next(adjusted)) if r.gain is not None else r for r in found]


def references(rows: Sequence[Row]) -> list[Reference]:
    """Every cell of a row that is its method alone (no other setting sets it apart) whose dataset,
    backbone and rate have published numbers."""
    from study.reporting.references import published

    found = []
    for row in rows:
        if row.label != row.method:
            continue
        for rate, cell in sorted(row.cells.items()):
            numbers = published(row.dataset, row.backbone, row.method, rate)
            if numbers and cell.mean is not None:
                found.append(Reference(row.dataset, row.method, rate, cell, numbers))
    return found


def bss_pairs(
    trials: Sequence[Trial],
    name: Callable[[Trial], str] = lambda t: t.method,
    value: Callable[[Trial], object] = lambda t: t.test_acc,
    missing: str = "has no test accuracy",
) -> tuple[dict[Key, PairGroup], dict[Key, str]]:
    """Each BSS trial with its partner without BSS (equal but for ``bss.*``, same seed), grouped by
    configuration but the seed, and each group's row label (``name`` of its BSS trial). A pair
    needs ``value`` of both; a BSS trial without one is listed with the reason."""

    def has(t: Trial) -> bool:
        v = value(t)
        return v is not None and v != ()

    partners = {t.key(_except("bss.")): t for t in trials if not t.bss}
    partner_seeds: dict[Key, set[int]] = defaultdict(set)
    for t in trials:
        if not t.bss and has(t):
            partner_seeds[t.key(_except("bss.", "seed"))].add(t.seed)
    groups: dict[Key, PairGroup] = defaultdict(PairGroup)
    for t in sorted((t for t in trials if t.bss), key=lambda t: t.seed):
        group = groups[t.key(_except("seed"))]
        group.bss.append(t)
        group.partner_seeds = partner_seeds.get(t.key(_except("bss.", "seed")), set())
        partner = partners.get(t.key(_except("bss.")))
        if not has(t):
            group.unpaired.append(f"seed {t.seed}: the BSS trial {_why(t, missing)}")
        elif partner is None:
            group.unpaired.append(f"seed {t.seed}: no trial without BSS")
        elif not has(partner):
            group.unpaired.append(f"seed {t.seed}: its partner without BSS {_why(partner, missing)}")
        else:
            group.pairs.append((t, partner))
    groups = {key: g for key, g in groups.items() if g.pairs}
    example = {key: g.pairs[0][0] for key, g in groups.items()}
    return groups, _labels(example.items(), name, shown=("data.sampling_rate",))


def _why(t: Trial, missing: str) -> str:
    return missing if t.status == "finished" else f"did not run to the end ({t.status})"


def _seeds_note(group: PairGroup) -> str:
    """How the gain's seeds differ from those of the two Table-2 cells beside it ('' : the same)."""
    paired = {a.seed for a, _ in group.pairs}
    cell = {t.seed for t in group.bss if t.test_acc is not None}
    notes = []
    if cell != paired:
        notes.append(f"the BSS cell also averages seeds {_seeds(cell - paired)}")
    if group.partner_seeds != paired:
        notes.append(f"the cell without BSS also averages seeds {_seeds(group.partner_seeds - paired)}")
    return "; ".join(notes)


def _seeds(seeds: Iterable[int]) -> str:
    return ", ".join(str(s) for s in sorted(seeds))


def bss_gains(trials: Sequence[Trial], options: ReportOptions | None = None) -> list[Gain]:
    options = options or ReportOptions()
    groups, labels = bss_pairs(trials)
    gains = []
    for key, group in groups.items():
        d = [float(a.test_acc) - float(b.test_acc) for a, b in group.pairs]  # type: ignore[arg-type]
        t = group.pairs[0][0]
        c = Comparison.of(d, len(group.bss), group.unpaired, options)
        gains.append(Gain(**vars(c), dataset=t.dataset, method=labels[key], rate=t.rate, seeds_note=_seeds_note(group)))
    return _adjusted(sorted(gains, key=lambda g: (g.dataset, g.method, g.rate)), options)


C = TypeVar("C", bound=Comparison)


def _adjusted(family: list[C], options: ReportOptions) -> list[C]:
    """The family with each member's sign-flip p adjusted over all of them."""
    adjusted = stats.adjust([c.p_sign for c in family], options.correction)
    return [replace(c, p_adjusted=p) for c, p in zip(family, adjusted, strict=True)]


def fig3d_lines(trials: Sequence[Trial], options: ReportOptions | None = None) -> dict[tuple[str, str], list[Line]]:
    """Accuracy against k per rate; the line's baseline (its trials without BSS, otherwise equal
    but for the seed) is drawn at k = 0 when the study ran it."""
    groups: dict[Key, dict[int, list[Trial]]] = defaultdict(lambda: defaultdict(list))
    for t in trials:
        if t.k is not None:
            groups[t.key(_except("seed", "bss.k"))][t.k].append(t)
    groups = {key: ks for key, ks in groups.items() if len(ks) > 1}  # a line needs two values of k
    first = {key: next(iter(ks.values()))[0] for key, ks in groups.items()}
    baselines: dict[Key, list[Trial]] = defaultdict(list)
    for t in trials:
        if not t.bss:
            baselines[t.key(_except("seed", "bss."))].append(t)
    labels = _labels(first.items(), lambda t: f"{100 * t.rate:g}%", shown=("bss.k",))
    panels: dict[tuple[str, str], list[Line]] = defaultdict(list)
    for key, ks in groups.items():
        t = first[key]
        cells = {k: Cell.of(m, options=options) for k, m in ks.items()}
        baseline = baselines.get(t.key(_except("seed", "bss.")))
        if baseline:
            cells[0] = Cell.of(baseline, options=options)
        panels[(t.dataset, t.base_method)].append(Line(t.rate, labels[key], cells))
    return {panel: sorted(lines, key=lambda line: (line.rate, line.label)) for panel, lines in sorted(panels.items())}


@dataclass(frozen=True)
class SpectrumShift(Comparison):
    """How BSS moved the i-th smallest singular value of the features, against its partner without
    BSS (same config otherwise, same seed): the paired differences, and their mean relative change."""

    dataset: str = ""
    method: str = ""
    rate: float = 0.0
    index: int = 0  # 1 = the smallest
    relative_change: float = 0.0  # mean of (with BSS / without) - 1


def spectrum_shifts(trials: Sequence[Trial], options: ReportOptions | None = None) -> list[SpectrumShift]:
    """For every BSS configuration with partners: the change of each reported smallest singular
    value (does BSS shrink more than the k it penalises? Fig. 1c-d, 3b-c)."""
    options = options or ReportOptions()
    groups, labels = bss_pairs(trials, value=lambda t: t.spectrum, missing="has no recorded spectrum")
    shifts = []
    for key, group in groups.items():
        members = group.pairs
        t = members[0][0]
        for i in range(min(len(a.spectrum) for pair in members for a in pair)):
            diffs = [a.spectrum[i] - b.spectrum[i] for a, b in members]
            ratios = [a.spectrum[i] / b.spectrum[i] - 1 for a, b in members if b.spectrum[i] > 0]
            change = statistics.fmean(ratios) if ratios else float("nan")
            c = Comparison.of(diffs, len(group.bss), group.unpaired, options)
            shifts.append(
                SpectrumShift(
                    **vars(c), dataset=t.dataset, method=labels[key], rate=t.rate, index=i + 1, relative_change=change
                )
            )
    return _adjusted(sorted(shifts, key=lambda s: (s.dataset, s.method, s.rate, s.index)), options)


def task_name(index: int) -> str:
    """0 -> "task A", 1 -> "task B", ... (the paper's names)."""
    return f"task {chr(ord('A') + index)}" if index < 26 else f"task {index + 1}"


def task_values(count: int) -> dict[str, Callable[[Trial], float | None]]:
    """Table 3's columns for a sequence of ``count`` tasks: the test accuracy on each task after the
    last one, their average (the trial's test_acc), and how much task A lost after its own training."""

    def acc(i: int) -> Callable[[Trial], float | None]:
        return lambda t: t.task_accs[i] if len(t.task_accs) > i else None

    def forgotten(t: Trial) -> float | None:
        return t.learned_accs[0] - t.task_accs[0] if t.learned_accs and t.task_accs else None

    return {**{task_name(i): acc(i) for i in range(count)}, "average": lambda t: t.test_acc, "A forgotten": forgotten}


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


def _sequence_label(t: Trial) -> str:
    """The method in the paper's words: L2 at alpha 0 is plain fine-tuning."""
    plain = t.base_method == "l2" and float(t.config.get("regularizer.alpha", 0.0)) == 0.0
    return ("fine-tuning" if plain else t.base_method) + (" + EWC" if t.ewc else "") + (" + BSS" if t.bss else "")


def table3(
    trials: Sequence[Trial], options: ReportOptions | None = None
) -> tuple[list[str], list[TaskRow], list[TaskGain]]:
    """Table 3 from the trials of task sequences: (columns, rows, BSS differences per column)."""
    sequences = [t for t in trials if "tasks.count" in t.config]
    if not sequences:
        return [], [], []
    options = options or ReportOptions()
    count = max(int(t.config["tasks.count"]) for t in sequences)
    columns = task_values(count)
    groups: dict[Key, list[Trial]] = defaultdict(list)
    for t in sequences:
        groups[t.key(_except("seed"))].append(t)
    first = {key: members[0] for key, members in groups.items()}
    labels = _labels(first.items(), _sequence_label)
    rows = [
        TaskRow(
            first[key].dataset,
            labels[key],
            {name: Cell.of(members, value, options) for name, value in columns.items()},
        )
        for key, members in sorted(groups.items(), key=lambda item: _sequence_order(first[item[0]], labels[item[0]]))
    ]
    pair_groups, pair_labels = bss_pairs(sequences, _sequence_label)
    gains = []
    ordered = sorted(pair_groups.items(), key=lambda item: _sequence_order(item[1].pairs[0][0], pair_labels[item[0]]))
    for key, group in ordered:
        for name, value in columns.items():
            d = [
                float(va) - float(vb)
                for va, vb in ((value(a), value(b)) for a, b in group.pairs)
                if va is not None and vb is not None
            ]
            if d:
                t = group.pairs[0][0]
                c = Comparison.of(d, len(group.bss), group.unpaired, options)
                gains.append(TaskGain(**vars(c), dataset=t.dataset, label=pair_labels[key], column=name))
    return list(columns), rows, _adjusted(gains, options)


def _sequence_order(t: Trial, label: str) -> tuple[Any, ...]:
    """Table 3's row order: per dataset, without EWC first, then by lambda; without BSS first."""
    lam = float(t.config["ewc.lam"]) if t.ewc else 0.0
    return (t.dataset, t.base_method, t.ewc, lam, t.bss, label)


def report_data(trials: Sequence[Trial], options: ReportOptions | None = None) -> ReportData:
    options = options or ReportOptions()
    check_same_data(trials)
    trials, duplicates = dedupe(trials)
    task_columns, task_rows, task_gains = table3(trials, options)
    rows = table2_rows(trials, options)
    return ReportData(
        rates=sorted({t.rate for t in trials}),
        rows=rows,
        references=references(rows),
        gains=bss_gains(trials, options),
        spectra=spectrum_shifts(trials, options),
        fig3d=fig3d_lines(trials, options),
        task_columns=task_columns,
        table3=task_rows,
        task_gains=task_gains,
        n_trials=sum(t.test_acc is not None for t in trials),
        n_rows=len(trials),
        duplicates=duplicates,
        options=options,
    )


def _p(value: float | None, why: str = "") -> str:
    if value is None:
        return f"undefined ({why})" if why else "-"
    return f"{value:.3g}"


def _compact_p(c: Comparison) -> str:
    """The sign-flip p and its adjusted value, side by side, for a table cell."""
    raw = "-" if c.p_sign is None else f"{c.p_sign:.2g}"
    adjusted = "-" if c.p_adjusted is None else f"{c.p_adjusted:.2g}"
    return f"p {raw}, adj. {adjusted}"


def _interval_text(c: Comparison) -> str:
    return "-" if c.interval is None else f"[{100 * c.interval[0]:+.2f}, {100 * c.interval[1]:+.2f}]"


def comparison_columns(options: ReportOptions, family: int) -> list[str]:
    """The headers of a comparison's columns (the interval's and the correction's names in them)."""
    return [
        stats.interval_name(options.interval),
        "pairs",
        "p (paired t)",
        "p (sign-flip, exact)",
        f"p adjusted ({options.correction.upper() if options.correction == 'bh' else 'Holm'}, family of {family})",
    ]


def comparison_cells(c: Comparison) -> list[str]:
    pairs = f"{c.n_pairs} of {c.n_expected}" if c.n_expected else str(c.n_pairs)
    return [_interval_text(c), pairs, _p(c.p_value, c.p_why), _p(c.p_sign), _p(c.p_adjusted)]


def surviving(family: Sequence[Comparison], describe: Callable[[Any], str], alpha: float = 0.05) -> list[str]:
    """Those of a family whose adjusted p is below ``alpha``, described."""
    return [describe(c) for c in family if c.p_adjusted is not None and c.p_adjusted < alpha]


def family_text(family: Sequence[Comparison], options: ReportOptions, describe: Callable[[Any], str]) -> str:
    """One sentence: what survives the family's correction at 0.05, and the test's floor at these n."""
    name = stats.CORRECTIONS[options.correction]
    survivors = surviving(family, describe)
    smallest_n = min((c.n_pairs for c in family), default=0)
    floor = stats.smallest_sign_flip_p(smallest_n)
    said = (
        f"{len(survivors)} of the {len(family)} comparisons differ from zero at 0.05 after {name}: "
        + "; ".join(survivors)
        if survivors
        else f"None of the {len(family)} comparisons differs from zero at 0.05 after {name}"
    )
    return (
        f"{said}. The sign-flip test is exact for any number of pairs; with {smallest_n} pairs its smallest "
        f"possible p is {floor:.3g}."
    )


def table2_markdown(data: ReportData) -> str:
    header = "| dataset | method | " + " | ".join(f"{100 * r:g}%" for r in data.rates) + " |"
    lines = [header, "|" + " --- |" * (2 + len(data.rates))]
    for row in data.rows:
        cells = [row.cells[r].text() if r in row.cells else "-" for r in data.rates]
        lines.append(f"| {row.dataset} | {row.label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def gains_markdown(data: ReportData) -> str:
    columns = ["dataset", "method", "rate", "BSS gain (points)", *comparison_columns(data.options, len(data.gains))]
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    for g in data.gains:
        cells = [g.dataset, g.method, f"{100 * g.rate:g}%", f"{100 * g.mean_gain:+.2f}", *comparison_cells(g)]
        lines.append("| " + " | ".join(cells) + " |")
    notes = [
        f"- {g.method} at {100 * g.rate:g}%: " + "; ".join([*g.unpaired, *([g.seeds_note] if g.seeds_note else [])])
        for g in data.gains
        if g.unpaired or g.seeds_note
    ]
    if notes:
        lines += ["", "Seeds without a pair, and cells beside a gain that average other seeds:", "", *notes]
    return "\n".join(lines)


def spectra_markdown(data: ReportData) -> str:
    """One row per BSS configuration and rate; a column per reported singular value (1 = smallest):
    the mean relative change and the adjusted sign-flip p of the paired differences."""
    count = max(s.index for s in data.spectra)
    lines = [
        "| dataset | method | rate | pairs | "
        + " | ".join(f"s_{i} change (p, adj.)" for i in range(1, count + 1))
        + " |",
        "|" + " --- |" * (4 + count),
    ]
    rows: dict[tuple[str, str, float], dict[int, SpectrumShift]] = defaultdict(dict)
    for shift in data.spectra:
        rows[(shift.dataset, shift.method, shift.rate)][shift.index] = shift
    for (dataset, method, rate), by_index in rows.items():
        first = next(iter(by_index.values()))
        n = f"{first.n_pairs} of {first.n_expected}" if first.n_expected else str(first.n_pairs)
        cells = []
        for i in range(1, count + 1):
            found = by_index.get(i)
            cells.append("-" if found is None else f"{100 * found.relative_change:+.0f}% ({_compact_p(found)})")
        lines.append(f"| {dataset} | {method} | {100 * rate:g}% | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table3_markdown(data: ReportData) -> str:
    columns = data.task_columns
    lines = ["| dataset | method | " + " | ".join(columns) + " |", "|" + " --- |" * (2 + len(columns))]
    for row in data.table3:
        lines.append(f"| {row.dataset} | {row.label} | " + " | ".join(row.cells[c].text() for c in columns) + " |")
    return "\n".join(lines)


def task_gains_markdown(data: ReportData) -> str:
    """One row per BSS configuration: each column's mean difference with BSS (points) and its
    adjusted sign-flip p (the family: every cell of this table)."""
    by_row: dict[tuple[str, str], dict[str, TaskGain]] = defaultdict(dict)
    for gain in data.task_gains:
        by_row[(gain.dataset, gain.label)][gain.column] = gain
    lines = [
        "| dataset | BSS added to | pairs | " + " | ".join(data.task_columns) + " |",
        "|" + " --- |" * (3 + len(data.task_columns)),
    ]
    for (dataset, label), gains in by_row.items():
        n = max(g.n_pairs for g in gains.values())
        expected = max(g.n_expected for g in gains.values())
        cells = []
        for column in data.task_columns:
            g = gains.get(column)
            cells.append("-" if g is None else f"{100 * g.mean_gain:+.2f} ({_compact_p(g)})")
        lines.append(f"| {dataset} | {label} | {n} of {expected} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def references_markdown(data: ReportData) -> str:
    from study.reporting.references import sources

    names = [s.name for s in sources() if any(s.name in r.published for r in data.references)]
    columns = ["dataset", "method", "rate", "this study", *(f"{n} | {n} - this study" for n in names)]
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * (4 + 2 * len(names))]
    for r in data.references:
        mine = float(r.cell.mean)  # type: ignore[arg-type]
        cells = [r.dataset, r.method, f"{100 * r.rate:g}%", f"{100 * mine:.2f} (n={r.cell.n})"]
        for n in names:
            value = r.published.get(n)
            cells += ["-", "-"] if value is None else [f"{100 * value:.2f}", f"{100 * (value - mine):+.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def confirmation_markdown(data: ReportData) -> str:
    interval = stats.interval_name(data.options.interval)
    correction = "Holm" if data.options.correction == "holm" else "BH"
    family = sum(r.gain is not None for r in data.confirmation)
    columns = [
        "rank", "configuration", "selected: val / test (search)", f"confirmed test acc, fresh seeds ({interval})",
        "without BSS, same seeds", "BSS gain (points)", f"gain {interval}", "pairs", "p (sign-flip)",
        f"p adjusted ({correction}, family of {family})", "negative transfer",
    ]  # fmt: skip
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    for r in data.confirmation:
        selected = " / ".join("-" if v is None else f"{100 * v:.2f}" for v in (r.selected_val, r.selected_test))
        g = r.gain
        cells = [
            str(r.rank), r.label, selected, r.cell.text(), "-" if r.partner is None else r.partner.text(),
            "-" if g is None else f"{100 * g.mean_gain:+.2f}", "-" if g is None else _interval_text(g),
            "-" if g is None else f"{g.n_pairs} of {g.n_expected}", "-" if g is None else _p(g.p_sign),
            "-" if g is None else _p(g.p_adjusted), "yes" if r.negative_transfer else ("-" if g is None else "no"),
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def duplicates_markdown(data: ReportData) -> str:
    lines = ["| kept | seed | not counted |", "| --- | --- | --- |"]
    for d in data.duplicates:
        lines.append(f"| {d.kept} | {d.seed} | {', '.join(d.dropped)} |")
    return "\n".join(lines)


SUMMARY_COLUMNS = (
    "table", "dataset", "method", "rate", "k", "column", "mean", "std", "n", "expected",
    "ci_low", "ci_high", "p_t", "p_sign", "p_adjusted",
)  # fmt: skip


def summary_table(data: ReportData) -> Any:
    """Every number of the report's tables as a row (fractions, not %; unrounded): ``table`` is
    ``table2``, ``gains``, ``fig3d``, ``spectra``, ``table3``, ``task_gains`` or ``references`` (a published
    number: ``column`` is its source)."""
    import pyarrow as pa

    rows: list[dict[str, Any]] = []

    def cell(table: str, c: Cell, **where: Any) -> None:
        low, high = c.interval or (None, None)
        rows.append({"table": table, **where, "mean": c.mean, "std": c.std, "n": c.n, "expected": c.expected,
                     "ci_low": low, "ci_high": high})  # fmt: skip

    def comparison(table: str, c: Comparison, mean: float, **where: Any) -> None:
        low, high = c.interval or (None, None)
        rows.append({"table": table, **where, "mean": mean, "n": c.n_pairs, "expected": c.n_expected,
                     "ci_low": low, "ci_high": high, "p_t": c.p_value, "p_sign": c.p_sign,
                     "p_adjusted": c.p_adjusted})  # fmt: skip

    for row in data.rows:
        for rate, c in row.cells.items():
            cell("table2", c, dataset=row.dataset, method=row.label, rate=rate)
    for g in data.gains:
        comparison("gains", g, g.mean_gain, dataset=g.dataset, method=g.method, rate=g.rate)
    for (dataset, method), lines in data.fig3d.items():
        for line in lines:
            for k, c in line.cells.items():
                cell("fig3d", c, dataset=dataset, method=f"{method} {line.label}", rate=line.rate, k=k)
    for s in data.spectra:
        comparison(
            "spectra", s, s.relative_change, dataset=s.dataset, method=s.method, rate=s.rate, column=f"s_{s.index}"
        )
    for task_row in data.table3:
        for column, c in task_row.cells.items():
            cell("table3", c, dataset=task_row.dataset, method=task_row.label, column=column)
    for ref in data.references:
        for source, value in ref.published.items():
            rows.append({"table": "references", "dataset": ref.dataset, "method": ref.method, "rate": ref.rate,
                         "column": source, "mean": value})  # fmt: skip
    for tg in data.task_gains:
        comparison("task_gains", tg, tg.mean_gain, dataset=tg.dataset, method=tg.label, column=tg.column)
    types = {"table": pa.string(), "dataset": pa.string(), "method": pa.string(), "column": pa.string(),
             "k": pa.int64(), "n": pa.int64(), "expected": pa.int64()}  # fmt: skip
    return pa.table(
        {name: pa.array([r.get(name) for r in rows], types.get(name, pa.float64())) for name in SUMMARY_COLUMNS}
    )
