"""The report's tables as Markdown, from :class:`~study.reporting.model.ReportData`: one function a table, each
label saying what its numbers are (the interval's method, the test, the correction and its family)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from study.reporting import stats
from study.reporting.model import Comparison, ReportData, ReportOptions, SpectrumShift, TaskGain


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
