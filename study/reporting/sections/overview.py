"""The report's opening: how many trials ran, what the numbers are, how each trial was selected."""

from __future__ import annotations

from study.reporting import stats
from study.reporting.model import ReportOptions
from study.reporting.sections.base import Context, Markdown, Section
from study.spec import HELD_FIXED

SELECTION_TEXT = {
    "last": "Selection: `last` (the paper's protocol for fixed settings): each trial trains on every sampled "
    "image (ceil(rate x n_c) a class, nested across rates), has no validation split, and reports the test "
    "accuracy of its last epoch.",
    "best_val": "Selection: `best_val`: each trial reports the test accuracy of its epoch of best validation "
    "accuracy (validation is the dataset's own split, or carved from the sampled images where it has none).",
}


def inference_text(options: ReportOptions) -> str:
    """The columns and tests, explained once."""
    return (
        f"Numbers: a cell is mean ± std over seeds, then its {stats.interval_name(options.interval)} in brackets "
        f"from {stats.MIN_INTERVAL_N} seeds on (with fewer: marked, no interval). A BSS gain pairs each BSS trial "
        "with the trial equal to it but for BSS on the same seed; `pairs n of N` counts the pairs against the "
        "configuration's BSS trials. p (paired t) is undefined where the differences have no variance; "
        "p (sign-flip, exact) is the exact permutation test of the paired differences (no normality, defined for "
        "any n); each table is one family, whose sign-flip p are adjusted together with "
        f"{stats.CORRECTIONS[options.correction]}. Only what survives the adjustment is said to differ."
    )


def render(context: Context) -> Markdown:
    data, spec = context.data, context.spec
    lines = [
        f"# Study {spec.name}: report",
        "",
        f"{data.n_trials} of {data.n_rows} trials ran to the end; test accuracy in %, mean ± std over the "
        "seeds of trials whose resolved configs are equal but for the seed.",
        "",
        SELECTION_TEXT[str(spec.selection)],
        "",
        inference_text(data.options),
        "",
    ]
    if spec.held_fixed in HELD_FIXED and len(data.rates) > 1:
        lines += [f"Held fixed across sampling rates: {HELD_FIXED[str(spec.held_fixed)]}.", ""]
    sizes = sorted(
        {
            (r.get("param.data.sampling_rate"), r.get("n_train"), r.get("n_val"))
            for r in context.rows
            if r.get("n_train") is not None
        },
        key=str,
    )
    if sizes:
        lines += [
            "Images per trial (training / validation): "
            + "; ".join(
                (f"rate {rate:g}: " if isinstance(rate, float) else "") + f"{n_train} / {n_val}"
                for rate, n_train, n_val in sizes
            )
            + ".",
            "",
        ]
    return Markdown(lines)


SECTION = Section("", render)
