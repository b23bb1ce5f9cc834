"""Headline numbers of a search, free of selection bias: its selected configurations on fresh
seeds (``confirm:`` in the spec, :mod:`study.run.confirm`), beside what the search itself measured."""

from __future__ import annotations

from study.reporting.markdown import confirmation_markdown, family_text
from study.reporting.sections.base import Context, Markdown, Nothing, Section


def render(context: Context) -> Markdown | Nothing | None:
    data, spec = context.data, context.spec
    if spec.space.grid is not None:
        return None  # a grid selects nothing: its cells are the numbers
    if not spec.confirm.top:
        return Nothing(
            "this search was not run again on fresh seeds (`confirm: {top: 3, seeds: 5}` in the spec does it); "
            "its best trial's accuracy is optimistic: it was chosen because it was high."
        )
    if not data.confirmation:
        return Nothing(
            f"the confirmation (confirm.top {spec.confirm.top}) has not run to its end; `study resume` runs it."
        )
    lines = [
        f"Each of the search's top {spec.confirm.top} configurations (by {spec.metric}) ran again on "
        f"{spec.confirm.seeds} seeds no trial of the search used, beside its partner without BSS on the same "
        "seeds. These are the study's headline numbers; `selected` is what the search measured for the trial it "
        "chose (optimistic: chosen because it was high).",
        "",
        confirmation_markdown(data),
        "",
    ]
    gains = [r.gain for r in data.confirmation if r.gain is not None]
    if gains:
        lines += [family_text(gains, data.options, lambda g: f"{g.method} ({100 * g.mean_gain:+.2f})"), ""]
    return Markdown(lines)


SECTION = Section("## Headline numbers: the selected configurations on fresh seeds", render)
