"""The published numbers beside this study's own: the paper's Table 2 and tllib's benchmark,
wherever a cell's dataset, backbone, method and rate match (``study/references.yaml``)."""

from __future__ import annotations

from study.reporting.markdown import references_markdown
from study.reporting.references import sources
from study.reporting.sections.base import Context, Markdown, Section


def render(context: Context) -> Markdown | None:
    data = context.data
    if not data.references:
        return None  # nothing published for these datasets, backbones and rates
    named = {name for r in data.references for name in r.published}
    lines = [
        "Published top-1 accuracy for the same dataset, backbone, method and rate, and its difference from "
        "this study's mean; the protocols differ, so a difference is not an error by itself:",
        "",
        *(f"- {s.name}: {s.title}; {s.protocol}." for s in sources() if s.name in named),
        "",
        references_markdown(data),
        "",
    ]
    return Markdown(lines)


SECTION = Section("## Published numbers beside this study's", render)
