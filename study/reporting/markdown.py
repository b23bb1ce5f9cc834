"""The report's tables as Markdown, from :class:`~study.reporting.model.ReportData`: one function a table, each
label saying what its numbers are (the interval's method, the test, the correction and its family)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from study.reporting import stats
from study.reporting.model import Comparison, Gain, ReportData, ReportOptions, SpectrumShift, TaskGain


def _p(value: float | None, why: str = "") -> str:
    if value is None:
        return f"undefined ({why})" if why else "-"
    return f"{value:.3g}"


def _sign_p(c: Comparison) -> str:
    """The sign-flip p, labelled by how it was computed (exact, or Monte Carlo with its error)."""
    return "-" if c.p_sign is None else f"{c.p_sign:.3g} ({c.p_sign_method})"


def _compact_p(c: Comparison) -> str:
    """The sign-flip p and its adjusted value, side by side, for a table cell."""
    raw = "-" if c.p_sign is None else f"{c.p_sign:.2g}"
    adjusted = "-" if c.p_adjusted is None else f"{c.p_adjusted:.2g}"
    return f"p {raw}, adj. {adjusted}"


def _interval_text(c: Comparison) -> str:
    if c.interval is None:
        return f"undefined ({c.interval_why})" if c.interval_why else "-"
    return f"[{100 * c.interval[0]:+.2f}, {100 * c.interval[1]:+.2f}]"


def correction_name(options: ReportOptions) -> str:
    return "BH" if options.correction == "bh" else "Holm"


def adjusted_header(options: ReportOptions, family: int) -> str:
    """The adjusted column's header: which test's p it adjusts, how, over how many."""
    return f"p (sign-flip) adjusted ({correction_name(options)}, family of {family})"


def comparison_columns(options: ReportOptions, family: int) -> list[str]:
    """The headers of a comparison's columns (the interval's and the correction's names in them)."""
    return [
        stats.interval_name(options.interval, options.seed),
        "pairs",
        "p (paired t, unadjusted)",
        "p (sign-flip)",
        adjusted_header(options, family),
    ]


def comparison_cells(c: Comparison) -> list[str]:
    pairs = f"{c.n_pairs} of {c.n_expected}" if c.n_expected else str(c.n_pairs)
    return [_interval_text(c), pairs, _p(c.p_value, c.p_why), _sign_p(c), _p(c.p_adjusted)]


NEGATIVE_TRANSFER_RULE = (
    "Negative transfer, one rule for the `negative transfer` column of every table with a gain: `yes` where "
    "the gain is on the harmful side (below zero; above zero for forgetting) and its sign-flip test rejects "
    "after the table's correction (adjusted p < 0.05), the same family-wise rule as every other claim of this "
    "report; `cannot tell` where, "
    "with the pairs at hand, the adjusted p could not go below 0.05 whatever the data; `no` otherwise. The "
    "interval beside it is the unadjusted one and can lie below zero while the adjusted test does not reject."
)


def surviving(family: Sequence[Comparison], describe: Callable[[Any], str], alpha: float = stats.ALPHA) -> list[str]:
    """Those of a family whose adjusted p is below ``alpha``, described."""
    return [describe(c) for c in family if c.p_adjusted is not None and c.p_adjusted < alpha]


def _range(values: Sequence[float], form: str) -> str:
    low, high = min(values), max(values)
    return format(low, form) if low == high else f"{format(low, form)} to {format(high, form)}"


def family_text(family: Sequence[Comparison], options: ReportOptions, describe: Callable[[Any], str]) -> str:
    """What survives the family's correction at 0.05; how each p was computed; the smallest p each
    row's pairs allow; and how many pairs a difference needs to be able to survive this family."""
    name = stats.CORRECTIONS[options.correction]
    survivors = surviving(family, describe)
    said = (
        f"{len(survivors)} of the {len(family)} comparisons differ from zero at 0.05 after {name}: "
        + "; ".join(survivors)
        if survivors
        else f"None of the {len(family)} comparisons differs from zero at 0.05 after {name}"
    )
    if not family:
        return said + "."
    pairs = [c.n_pairs for c in family]
    floors = [stats.smallest_sign_flip_p(n) for n in pairs]
    adjusted = [c.p_floor for c in family if c.p_floor is not None]
    exact = all(c.p_sign_method == "exact" for c in family)
    how = (
        "Every sign-flip p here is exact (all 2^n sign assignments counted)"
        if exact
        else f"Sign-flip p are exact up to {stats.EXACT_UP_TO} pairs and Monte-Carlo estimates beyond "
        "(draws and standard error beside each)"
    )
    floor = f"with {_range(pairs, 'd')} pairs a row's smallest possible p is {_range(floors, '.3g')}" + (
        f", {_range(adjusted, '.3g')} after the correction" if adjusted else ""
    )
    needed = stats.pairs_needed(len(family), options.correction)
    if options.correction == "holm":
        feasible = (
            f"under Holm over {len(family)} comparisons a difference can survive only with {needed} pairs or more"
        )
    else:
        alone = stats.pairs_needed(len(family), "holm")
        feasible = (
            f"under Benjamini-Hochberg over {len(family)} comparisons a difference needs {needed} pairs or more "
            f"when every comparison is as extreme, {alone} when it stands alone"
        )
    return f"{said}. {how}; {floor}; {feasible}."


def seed_notes(notes: Sequence[tuple[str, Comparison]]) -> list[str]:
    """The notes under a table with a gain (one rule for all): which seeds have no pair and why, and
    which seeds the cells beside a gain average that the gain does not."""

    def said(c: Comparison) -> list[str]:
        return [*c.unpaired, *([c.seeds_note] if isinstance(c, Gain) and c.seeds_note else [])]

    lines = [f"- {name}: " + "; ".join(said(c)) for name, c in notes if said(c)]
    if not lines:
        return []
    return ["", "Seeds without a pair, and cells beside a gain that average other seeds:", "", *lines]


def table2_markdown(data: ReportData) -> str:
    header = "| dataset | method | " + " | ".join(f"{100 * r:g}%" for r in data.rates) + " |"
    lines = [header, "|" + " --- |" * (2 + len(data.rates))]
    for row in data.rows:
        cells = [row.cells[r].text() if r in row.cells else "-" for r in data.rates]
        lines.append(f"| {row.dataset} | {row.label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def gains_markdown(data: ReportData) -> str:
    columns = [
        "dataset", "method", "rate", "BSS gain (points)", *comparison_columns(data.options, len(data.gains)),
        "negative transfer",
    ]  # fmt: skip
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    for g in data.gains:
        cells = [g.dataset, g.method, f"{100 * g.rate:g}%", f"{100 * g.mean_gain:+.2f}", *comparison_cells(g)]
        lines.append("| " + " | ".join([*cells, g.verdict()]) + " |")
    lines += seed_notes([(f"{g.method} at {100 * g.rate:g}%", g) for g in data.gains])
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
        "| dataset | BSS added to | pairs | " + " | ".join(data.task_columns) + " | negative transfer |",
        "|" + " --- |" * (4 + len(data.task_columns)),
    ]
    for (dataset, label), gains in by_row.items():
        n = max(g.n_pairs for g in gains.values())
        expected = max(g.n_expected for g in gains.values())
        cells = []
        for column in data.task_columns:
            g = gains.get(column)
            cells.append("-" if g is None else f"{100 * g.mean_gain:+.2f} ({_compact_p(g)})")
        verdicts = {column: g.verdict() for column, g in gains.items()}
        flagged = [column for column, v in verdicts.items() if v == "yes"]
        unsure = any(v.startswith("cannot tell") for v in verdicts.values())
        verdict = f"yes: {', '.join(flagged)}" if flagged else "cannot tell (too few pairs)" if unsure else "no"
        lines.append(f"| {dataset} | {label} | {n} of {expected} | " + " | ".join(cells) + f" | {verdict} |")
    # a row's unpaired seeds are its configuration's, the same in every column
    lines += seed_notes([(label, next(iter(gains.values()))) for (_, label), gains in by_row.items()])
    return "\n".join(lines)


def references_markdown(data: ReportData) -> str:
    from study.reporting.references import sources

    names = [s.name for s in sources() if any(s.name in r.published for r in data.references)]
    columns = [
        "dataset", "method", "this study's row (its settings)", "protocol", "rate", "this study",
        *(f"{n} | {n} - this study" for n in names),
    ]  # fmt: skip
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * (6 + 2 * len(names))]
    for r in data.references:
        mine = float(r.cell.mean)  # type: ignore[arg-type]
        cells = [r.dataset, r.method, r.label, r.protocol, f"{100 * r.rate:g}%", f"{100 * mine:.2f} (n={r.cell.n})"]
        for n in names:
            value = r.published.get(n)
            cells += ["-", "-"] if value is None else [f"{100 * value:.2f}", f"{100 * (value - mine):+.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def confirmation_markdown(data: ReportData) -> str:
    interval = stats.interval_name(data.options.interval, data.options.seed)
    family = sum(r.gain is not None for r in data.confirmation)
    columns = [
        "rank", "configuration", "selected: val / test (search)", f"confirmed test acc, fresh seeds ({interval})",
        "without BSS, same seeds", "BSS gain (points)", f"gain {interval}", "pairs", "p (sign-flip)",
        adjusted_header(data.options, family), "negative transfer",
    ]  # fmt: skip
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    for r in data.confirmation:
        selected = " / ".join("-" if v is None else f"{100 * v:.2f}" for v in (r.selected_val, r.selected_test))
        g = r.gain
        cells = [
            str(r.rank), r.label, selected, r.cell.text(), "-" if r.partner is None else r.partner.text(),
            "-" if g is None else f"{100 * g.mean_gain:+.2f}", "-" if g is None else _interval_text(g),
            "-" if g is None else f"{g.n_pairs} of {g.n_expected}", "-" if g is None else _sign_p(g),
            "-" if g is None else _p(g.p_adjusted), r.negative_transfer,
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    lines += seed_notes([(f"rank {r.rank}", r.gain) for r in data.confirmation if r.gain is not None])
    return "\n".join(lines)


def duplicates_markdown(data: ReportData) -> str:
    lines = ["| kept | seed | not counted |", "| --- | --- | --- |"]
    for d in data.duplicates:
        lines.append(f"| {d.kept} | {d.seed} | {', '.join(d.dropped)} |")
    return "\n".join(lines)
