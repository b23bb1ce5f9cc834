"""The smallest singular values of the features with BSS against without (Fig. 1(c-d), 3(b-c))."""

from __future__ import annotations

from study.reporting.markdown import family_text, spectra_markdown
from study.reporting.sections.base import Context, Markdown, Nothing, Section


def render(context: Context) -> Markdown | Nothing:
    if not context.data.spectra:
        return Nothing("no BSS trial has a partner without BSS (same seed) with a recorded spectrum.")
    return Markdown(
        [
            "s_1 ≤ s_2 ≤ ... are the smallest singular values of the last training batch's features at "
            "the last epoch; each cell is the mean relative change with BSS, and the sign-flip p of the paired "
            "differences adjusted over this table (one family). BSS penalises the k smallest: a change beyond s_k "
            "is what Fig. 1(c-d) and 3(b-c) describe.",
            "",
            spectra_markdown(context.data),
            "",
            family_text(
                context.data.spectra,
                context.data.options,
                lambda s: f"s_{s.index} of {s.method} at {100 * s.rate:g}% ({100 * s.relative_change:+.0f}%)",
            ),
            "",
        ]
    )


SECTION = Section("## Smallest singular values of the features, with BSS against without (paired by seed)", render)
