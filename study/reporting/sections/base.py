"""The unit of ``study report``: a :class:`Section` turns the report's numbers into markdown or
figures, or says why there is nothing to show.

Numbers come from :mod:`study.reporting.data` (plain tables, no drawing); a section only lays them
out. A new analysis is one new module here and one line in ``study.reporting.sections.SECTIONS``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from study.reporting.model import ReportData
from study.spec import StudySpec


@dataclass(frozen=True)
class Context:
    """What every section may read: the numbers, the spec, the table's rows, the Optuna study,
    and the folder its figures go to."""

    data: ReportData
    spec: StudySpec
    rows: Sequence[dict[str, Any]]
    optuna_study: Any
    out: Path


@dataclass(frozen=True)
class Markdown:
    """Lines shown in place, under the section's heading."""

    lines: list[str]


@dataclass(frozen=True)
class Figures:
    """Figure files written into ``Context.out``, shown together at the end, and notes about them."""

    names: list[str]
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Nothing:
    """Nothing to show, because ``reason`` (shown in the report: under the heading, or as a note of a
    figure that was not drawn)."""

    reason: str


Shown = Markdown | Figures | Nothing | None  # None: the section does not apply to this study (omitted)


@dataclass(frozen=True)
class Section:
    """``heading`` (markdown, '' for none) and ``render(context)``; a figure section names its file."""

    heading: str
    render: Callable[[Context], Shown]
    figure: str = ""


def assemble(sections: Sequence[Section], context: Context) -> tuple[list[str], list[str]]:
    """(report.md's lines, the figure files written), in the order of ``sections``; every figure
    at the end under ``## Figures``, each section's notes directly under its figures, then the
    notes of those not drawn."""
    lines: list[str] = []
    figures: list[str] = []
    drawn: list[str] = []
    notes: list[str] = []
    for section in sections:
        shown = section.render(context)
        if shown is None:
            continue
        if isinstance(shown, Figures):
            figures += shown.names
            drawn += [f"![{name}]({name})" for name in shown.names] + [""]
            drawn += [f"{n}" for n in shown.notes] + ([""] if shown.notes else [])
        elif isinstance(shown, Nothing) and section.figure:
            notes.append(f"{section.figure}: not drawn: {shown.reason}")
        else:
            lines += [section.heading, ""] if section.heading else []
            lines += shown.lines if isinstance(shown, Markdown) else [f"Not shown: {shown.reason}", ""]
    lines += ["## Figures", "", *drawn] + [f"- {n}" for n in notes]
    return lines, figures
