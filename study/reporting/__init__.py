"""Reporting: the statistics, the published references, the report's data and one module a section
(:mod:`~study.reporting.sections`), ``study status`` and the best configurations' export. Reads the
record; never imports the run room or Ray."""

from __future__ import annotations

from typing import TYPE_CHECKING

from finetune._front import front_door

# each public name -> its module in this room (imported on first use)
_EXPORTS = {
    "Context": "sections",
    "Figures": "sections",
    "Markdown": "sections",
    "Nothing": "sections",
    "ReportData": "model",
    "ReportOptions": "model",
    "SECTIONS": "sections",
    "Section": "sections",
    "assemble": "sections",
    "confirmation_rows": "data",
    "export_best": "export",
    "gains_markdown": "markdown",
    "mlflow_uris": "export",
    "published": "references",
    "references_markdown": "markdown",
    "register_best": "export",
    "report_data": "data",
    "spectra_markdown": "markdown",
    "study_status": "status",
    "summary_table": "summary",
    "table2_markdown": "markdown",
    "table3_markdown": "markdown",
    "task_gains_markdown": "markdown",
    "trials_from_table": "data",
    "write_report": "report",
}
__all__ = [
    "Context",
    "Figures",
    "Markdown",
    "Nothing",
    "ReportData",
    "ReportOptions",
    "SECTIONS",
    "Section",
    "assemble",
    "confirmation_rows",
    "export_best",
    "gains_markdown",
    "mlflow_uris",
    "published",
    "references_markdown",
    "register_best",
    "report_data",
    "spectra_markdown",
    "study_status",
    "summary_table",
    "table2_markdown",
    "table3_markdown",
    "task_gains_markdown",
    "trials_from_table",
    "write_report",
]
__getattr__ = front_door(__name__, _EXPORTS)

if TYPE_CHECKING:
    from study.reporting.data import confirmation_rows, report_data, trials_from_table
    from study.reporting.export import export_best, mlflow_uris, register_best
    from study.reporting.markdown import (
        gains_markdown,
        references_markdown,
        spectra_markdown,
        table2_markdown,
        table3_markdown,
        task_gains_markdown,
    )
    from study.reporting.model import ReportData, ReportOptions
    from study.reporting.references import published
    from study.reporting.report import write_report
    from study.reporting.sections import SECTIONS, Context, Figures, Markdown, Nothing, Section, assemble
    from study.reporting.status import study_status
    from study.reporting.summary import summary_table
