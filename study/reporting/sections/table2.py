"""Table 2 style: test accuracy per configuration and sampling rate, mean ± std over seeds."""

from __future__ import annotations

from study.reporting.markdown import table2_markdown
from study.reporting.sections.base import Context, Markdown, Nothing, Section


def render(context: Context) -> Markdown | Nothing:
    if context.data.repeated or context.spec.space.grid is not None:  # a grid's table compares its settings
        return Markdown([table2_markdown(context.data), ""])
    return Nothing(
        "no configuration ran with more than one seed (a search, not a grid of seeds); "
        "each trial's accuracy is in trials.parquet."
    )


SECTION = Section("## Table 2 style", render)
