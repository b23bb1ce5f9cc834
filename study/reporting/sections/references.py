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
        "Published top-1 accuracy for the same dataset, backbone, method and rate, beside the rows that ran "
        "under the protocol the number stands for and, with BSS, at its published k and eta (other settings, "
        "named in the row's label, may differ), and its difference from this study's mean; a protocol "
        "reproduces a reference only in part, so a difference is not an error by itself:",
        "",
        *(
            f"- {s.name}: {s.title}; {s.protocol}; beside protocols {', '.join(s.protocols)}"
            + (f", BSS at {s.settings_text}" if s.settings else "")
            + "."
            for s in sources()
            if s.name in named
        ),
        "",
        references_markdown(data),
        "",
    ]
    return Markdown(lines)


SECTION = Section("## Published numbers beside this study's", render)
