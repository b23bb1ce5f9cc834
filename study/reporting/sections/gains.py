"""The gain from adding BSS: each BSS trial against its partner without BSS, paired by seed."""

from __future__ import annotations

from study.reporting.markdown import family_text, gains_markdown
from study.reporting.sections.base import Context, Markdown, Nothing, Section


def render(context: Context) -> Markdown | Nothing:
    data = context.data
    if data.gains:
        sentence = family_text(
            data.gains, data.options, lambda g: f"{g.method} at {100 * g.rate:g}% ({100 * g.mean_gain:+.2f})"
        )
        return Markdown([gains_markdown(data), "", sentence, ""])
    return Nothing("no BSS trial has a partner without BSS whose config is otherwise equal (same seed).")


SECTION = Section("## Gain from adding BSS (paired by seed)", render)
