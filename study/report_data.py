"""The numbers of ``study report``, grouped like with like (drawing lives in :mod:`study.report`).

Every trial's config is resolved by the core (:func:`finetune.resolve_config`, the settings that
act on it), and trials are grouped by equality of everything but what a summary varies:

- a Table-2 cell: trials equal except for the seed (a row) at one sampling rate (a column);
- the BSS gain: a BSS trial paired with the trial equal to it except for ``bss.*`` (same seed);
- a Fig. 3(d) line: BSS trials equal except for ``bss.k`` and the seed, one line per rate;
- a Table-3 row (a task sequence): trials equal except for the seed; its BSS difference per
  column pairs each BSS trial with its partner without BSS, as the gain does.

A trial that did not run to the end (stopped early, failed) still counts in its cell's expected
number, so a cell that lost trials says so ("3 of 5").
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from finetune import resolve_config
from finetune.config import applicable_params
from study.results import SPECTRUM_COLUMNS, row_params

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
class Cell:
    """Test accuracy over the seeds of one configuration; ``expected`` counts lost trials too."""

    mean: float | None
    std: float | None  # None below two values
    n: int
    expected: int

    @classmethod
    def of(cls, members: Sequence[Trial], value: Callable[[Trial], float | None] = lambda t: t.test_acc) -> Cell:
        values = [v for v in (value(t) for t in members) if v is not None]
        mean = statistics.fmean(values) if values else None
        std = statistics.stdev(values) if len(values) > 1 else None
        return cls(mean, std, len(values), len(members))

    def text(self) -> str:
        if self.mean is None:
            return f"- (0 of {self.expected} ran to the end)"
        value = f"{100 * self.mean:.2f}" + (f" ± {100 * self.std:.2f}" if self.std is not None else "")
        count = f"n={self.n}" if self.n == self.expected else f"n={self.n} of {self.expected}: {self.lost} lost"
        return f"{value} ({count}{', no std' if self.std is None else ''})"

    @property
    def lost(self) -> int:
        return self.expected - self.n


@dataclass(frozen=True)
class Row:
    dataset: str
    label: str  # the method, with what else sets this row apart
    cells: dict[float, Cell]


@dataclass(frozen=True)
class Gain:
    """BSS minus its partner without BSS (same config otherwise, same seed): mean and a paired t-test."""

    dataset: str
    method: str
    rate: float
    mean_gain: float
    n_pairs: int
    p_value: float | None


@dataclass(frozen=True)
class Line:
    """One Fig. 3(d) line: accuracy against k at one rate, the rest of the config fixed."""

    rate: float
    label: str
    cells: dict[int, Cell]


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

    @property
    def repeated(self) -> bool:
        """Whether any configuration ran with more than one seed (a mean ± std to show)."""
        return any(cell.n > 1 for row in self.rows for cell in row.cells.values())


def trials_from_table(rows: Sequence[dict[str, Any]], base: dict[str, Any]) -> list[Trial]:
    """Every row of ``trials.parquet`` as a :class:`Trial` (its config resolved as the trial's was)."""
    trials = []
    for row in rows:
        config = applicable_params(resolve_config(base, row_params(row)))
        ran = row["status"] == "finished" and not row.get("early_stopped") and row.get("test_acc") is not None
        spectrum = tuple(float(row[c]) for c in SPECTRUM_COLUMNS if row.get(c) is not None) if ran else ()
        accs, learned = (_numbered(row, "task_acc_"), _numbered(row, "task_learned_acc_")) if ran else ((), ())
        trials.append(
            Trial(str(row["trial_id"]), config, float(row["test_acc"]) if ran else None, spectrum, accs, learned)
        )
    return trials


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


def paired_t_test(differences: list[float]) -> float | None:
    """Two-sided p-value of a paired t-test on the differences (None below two pairs)."""
    if len(differences) < 2:
        return None
    from scipy import stats

    if statistics.pstdev(differences) == 0:
        return 0.0 if statistics.fmean(differences) != 0 else 1.0
    return float(stats.ttest_1samp(differences, 0.0).pvalue)


def table2_rows(trials: Sequence[Trial]) -> list[Row]:
    leave_out = _except("seed", "data.sampling_rate")
    groups: dict[Key, dict[float, list[Trial]]] = defaultdict(lambda: defaultdict(list))
    for t in trials:
        groups[t.key(leave_out)][t.rate].append(t)
    first = {key: next(iter(cells.values()))[0] for key, cells in groups.items()}
    labels = _labels(first.items(), lambda t: t.method, shown=("data.sampling_rate",))
    rows = [
        Row(first[key].dataset, labels[key], {rate: Cell.of(members) for rate, members in cells.items()})
        for key, cells in groups.items()
    ]
    return sorted(rows, key=lambda r: (r.dataset, r.label))


def bss_pairs(
    trials: Sequence[Trial], name: Callable[[Trial], str] = lambda t: t.method
) -> tuple[dict[Key, list[tuple[Trial, Trial]]], dict[Key, str]]:
    """Each BSS trial with its partner without BSS (equal but for ``bss.*``, same seed), grouped by
    configuration but the seed; and each group's row label (``name`` of its BSS trial)."""
    partners = {t.key(_except("bss.")): t for t in trials if not t.bss}
    pairs: dict[Key, list[tuple[Trial, Trial]]] = defaultdict(list)
    for t in trials:
        partner = partners.get(t.key(_except("bss."))) if t.bss else None
        if partner is not None:
            pairs[t.key(_except("seed"))].append((t, partner))
    example = {key: members[0][0] for key, members in pairs.items()}
    return pairs, _labels(example.items(), name, shown=("data.sampling_rate",))


def bss_gains(trials: Sequence[Trial]) -> list[Gain]:
    pairs, labels = bss_pairs([t for t in trials if t.test_acc is not None])
    gains = []
    for key, members in pairs.items():
        d = [float(a.test_acc) - float(b.test_acc) for a, b in members]  # type: ignore[arg-type]
        t = members[0][0]
        gains.append(Gain(t.dataset, labels[key], t.rate, statistics.fmean(d), len(d), paired_t_test(d)))
    return sorted(gains, key=lambda g: (g.dataset, g.method, g.rate))


def fig3d_lines(trials: Sequence[Trial]) -> dict[tuple[str, str], list[Line]]:
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
        cells = {k: Cell.of(m) for k, m in ks.items()}
        baseline = baselines.get(t.key(_except("seed", "bss.")))
        if baseline:
            cells[0] = Cell.of(baseline)
        panels[(t.dataset, t.base_method)].append(Line(t.rate, labels[key], cells))
    return {panel: sorted(lines, key=lambda line: (line.rate, line.label)) for panel, lines in sorted(panels.items())}


@dataclass(frozen=True)
class SpectrumShift:
    """How BSS moved the i-th smallest singular value of the features, against its partner without
    BSS (same config otherwise, same seed): mean relative change and a paired t-test."""

    dataset: str
    method: str
    rate: float
    index: int  # 1 = the smallest
    relative_change: float  # mean of (with BSS / without) - 1
    n_pairs: int
    p_value: float | None


def spectrum_shifts(trials: Sequence[Trial]) -> list[SpectrumShift]:
    """For every BSS configuration with partners: the change of each reported smallest singular
    value (does BSS shrink more than the k it penalises? Fig. 1c-d, 3b-c)."""
    pairs, labels = bss_pairs([t for t in trials if t.spectrum])
    shifts = []
    for key, members in pairs.items():
        t = members[0][0]
        for i in range(min(len(a.spectrum) for pair in members for a in pair)):
            diffs = [a.spectrum[i] - b.spectrum[i] for a, b in members]
            ratios = [a.spectrum[i] / b.spectrum[i] - 1 for a, b in members if b.spectrum[i] > 0]
            change = statistics.fmean(ratios) if ratios else float("nan")
            shifts.append(
                SpectrumShift(t.dataset, labels[key], t.rate, i + 1, change, len(diffs), paired_t_test(diffs))
            )
    return sorted(shifts, key=lambda s: (s.dataset, s.method, s.rate, s.index))


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
class TaskGain:
    """One Table-3 column's BSS difference: the BSS trial minus its partner without BSS (same
    seed, otherwise equal), mean and a paired t-test."""

    dataset: str
    label: str
    column: str
    mean_gain: float
    n_pairs: int
    p_value: float | None


def _sequence_label(t: Trial) -> str:
    """The method in the paper's words: L2 at alpha 0 is plain fine-tuning."""
    plain = t.base_method == "l2" and float(t.config.get("regularizer.alpha", 0.0)) == 0.0
    return ("fine-tuning" if plain else t.base_method) + (" + EWC" if t.ewc else "") + (" + BSS" if t.bss else "")


def table3(trials: Sequence[Trial]) -> tuple[list[str], list[TaskRow], list[TaskGain]]:
    """Table 3 from the trials of task sequences: (columns, rows, BSS differences per column)."""
    sequences = [t for t in trials if "tasks.count" in t.config]
    if not sequences:
        return [], [], []
    count = max(int(t.config["tasks.count"]) for t in sequences)
    columns = task_values(count)
    groups: dict[Key, list[Trial]] = defaultdict(list)
    for t in sequences:
        groups[t.key(_except("seed"))].append(t)
    first = {key: members[0] for key, members in groups.items()}
    labels = _labels(first.items(), _sequence_label)
    rows = [
        TaskRow(first[key].dataset, labels[key], {name: Cell.of(members, value) for name, value in columns.items()})
        for key, members in sorted(groups.items(), key=lambda item: _sequence_order(first[item[0]], labels[item[0]]))
    ]
    pairs, pair_labels = bss_pairs([t for t in sequences if t.test_acc is not None], _sequence_label)
    gains = []
    for key, members in sorted(pairs.items(), key=lambda item: _sequence_order(item[1][0][0], pair_labels[item[0]])):
        for name, value in columns.items():
            d = [float(value(a)) - float(value(b)) for a, b in members if value(a) is not None and value(b) is not None]  # type: ignore[arg-type]
            if d:
                t = members[0][0]
                gains.append(TaskGain(t.dataset, pair_labels[key], name, statistics.fmean(d), len(d), paired_t_test(d)))
    return list(columns), rows, gains


def _sequence_order(t: Trial, label: str) -> tuple[Any, ...]:
    """Table 3's row order: per dataset, without EWC first, then by lambda; without BSS first."""
    lam = float(t.config["ewc.lam"]) if t.ewc else 0.0
    return (t.dataset, t.base_method, t.ewc, lam, t.bss, label)


def report_data(trials: Sequence[Trial]) -> ReportData:
    task_columns, task_rows, task_gains = table3(trials)
    return ReportData(
        rates=sorted({t.rate for t in trials}),
        rows=table2_rows(trials),
        gains=bss_gains(trials),
        spectra=spectrum_shifts(trials),
        fig3d=fig3d_lines(trials),
        task_columns=task_columns,
        table3=task_rows,
        task_gains=task_gains,
        n_trials=sum(t.test_acc is not None for t in trials),
        n_rows=len(trials),
    )


def table2_markdown(data: ReportData) -> str:
    header = "| dataset | method | " + " | ".join(f"{100 * r:g}%" for r in data.rates) + " |"
    lines = [header, "|" + " --- |" * (2 + len(data.rates))]
    for row in data.rows:
        cells = [row.cells[r].text() if r in row.cells else "-" for r in data.rates]
        lines.append(f"| {row.dataset} | {row.label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def gains_markdown(data: ReportData) -> str:
    lines = [
        "| dataset | method | rate | BSS gain (points) | pairs | paired t-test p |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for g in data.gains:
        p = "-" if g.p_value is None else f"{g.p_value:.3g}"
        lines.append(f"| {g.dataset} | {g.method} | {100 * g.rate:g}% | {100 * g.mean_gain:+.2f} | {g.n_pairs} | {p} |")
    return "\n".join(lines)


def spectra_markdown(data: ReportData) -> str:
    """One row per BSS configuration and rate; a column per reported singular value (1 = smallest)."""
    count = max(s.index for s in data.spectra)
    lines = [
        "| dataset | method | rate | pairs | " + " | ".join(f"s_{i} change (p)" for i in range(1, count + 1)) + " |",
        "|" + " --- |" * (4 + count),
    ]
    rows: dict[tuple[str, str, float], dict[int, SpectrumShift]] = defaultdict(dict)
    for shift in data.spectra:
        rows[(shift.dataset, shift.method, shift.rate)][shift.index] = shift
    for (dataset, method, rate), by_index in rows.items():
        n = next(iter(by_index.values())).n_pairs
        cells = []
        for i in range(1, count + 1):
            found = by_index.get(i)
            p = "-" if found is None or found.p_value is None else f"{found.p_value:.2g}"
            cells.append("-" if found is None else f"{100 * found.relative_change:+.0f}% ({p})")
        lines.append(f"| {dataset} | {method} | {100 * rate:g}% | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table3_markdown(data: ReportData) -> str:
    columns = data.task_columns
    lines = ["| dataset | method | " + " | ".join(columns) + " |", "|" + " --- |" * (2 + len(columns))]
    for row in data.table3:
        lines.append(f"| {row.dataset} | {row.label} | " + " | ".join(row.cells[c].text() for c in columns) + " |")
    return "\n".join(lines)


def task_gains_markdown(data: ReportData) -> str:
    """One row per BSS configuration: each column's mean difference with BSS (points) and its p."""
    by_row: dict[tuple[str, str], dict[str, TaskGain]] = defaultdict(dict)
    for gain in data.task_gains:
        by_row[(gain.dataset, gain.label)][gain.column] = gain
    lines = [
        "| dataset | BSS added to | pairs | " + " | ".join(data.task_columns) + " |",
        "|" + " --- |" * (3 + len(data.task_columns)),
    ]
    for (dataset, label), gains in by_row.items():
        n = max(g.n_pairs for g in gains.values())
        cells = []
        for column in data.task_columns:
            g = gains.get(column)
            p = "-" if g is None or g.p_value is None else f"{g.p_value:.2g}"
            cells.append("-" if g is None else f"{100 * g.mean_gain:+.2f} (p {p})")
        lines.append(f"| {dataset} | {label} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
