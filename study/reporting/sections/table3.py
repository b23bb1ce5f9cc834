"""Table 3 style (incremental learning): each task's accuracy after the last, forgetting, BSS's effect."""

from __future__ import annotations

from study.reporting.markdown import family_text, table3_markdown, task_gains_markdown
from study.reporting.sections.base import Context, Markdown, Section


def render(context: Context) -> Markdown | None:
    data = context.data
    if not data.table3:
        return None  # not a task sequence
    lines = [
        "Test accuracy (%) on each task after training on the last one, their average, and the points task "
        "A lost between the end of its own training and the end (forgetting); mean ± std over seeds. "
        "`fine-tuning` is the task loss alone (L2 with alpha 0).",
        "",
        table3_markdown(data),
        "",
    ]
    if data.task_gains:
        lines += [
            "BSS minus its partner without BSS (same seed, otherwise equal), in points, with the sign-flip p of "
            "each column adjusted over this table (for `A forgotten`, negative is less forgetting):",
            "",
            task_gains_markdown(data),
            "",
            family_text(data.task_gains, data.options, lambda g: f"{g.column} of {g.label} ({100 * g.mean_gain:+.2f})"),
            "",
        ]
    else:
        lines += ["No BSS trial of a task sequence has a partner without BSS (same seed).", ""]
    return Markdown(lines)


SECTION = Section("## Table 3 style: task sequences (incremental learning)", render)
