"""Trials that repeat another's resolved config and seed: counted once, the others listed."""

from __future__ import annotations

from study.reporting.markdown import duplicates_markdown
from study.reporting.sections.base import Context, Markdown, Section


def render(context: Context) -> Markdown | None:
    if not context.data.duplicates:
        return None
    return Markdown(
        [
            "These trials share a resolved config and seed with another (a re-run, a resumed duplicate, merged "
            "studies): each group counts once, as the trial that ran to the end, then the latest to end (the time "
            "of its last result, comparable across merged studies; Optuna's trial number, then the table row, only "
            "for trials that recorded no end time).",
            "",
            duplicates_markdown(context.data),
            "",
        ]
    )


SECTION = Section("## Duplicate trials (one seed counted once)", render)
