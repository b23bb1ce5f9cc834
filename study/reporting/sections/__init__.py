"""The sections of ``study report``, in the order they appear (see :mod:`study.reporting.sections.base`)."""

from study.reporting.sections import (
    confirmation,
    cost,
    duplicates,
    fig3d,
    gains,
    optuna_plots,
    overview,
    references,
    spectra,
    table2,
    table3,
)
from study.reporting.sections.base import Context, Figures, Markdown, Nothing, Section, assemble

SECTIONS: list[Section] = [
    overview.SECTION,
    confirmation.SECTION,
    duplicates.SECTION,
    table2.SECTION,
    references.SECTION,
    gains.SECTION,
    spectra.SECTION,
    table3.SECTION,
    cost.SECTION,
    fig3d.SECTION,
    optuna_plots.SECTION,
]

__all__ = ["SECTIONS", "Context", "Figures", "Markdown", "Nothing", "Section", "assemble"]
