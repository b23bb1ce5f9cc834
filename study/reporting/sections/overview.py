"""The report's opening: how many trials ran, what the numbers are, how each trial was selected."""

from __future__ import annotations

from study.reporting import stats
from study.reporting.markdown import NEGATIVE_TRANSFER_RULE
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
    boot = (
        f" The bootstrap is shown from {stats.MIN_BOOTSTRAP_N} values on: below, its percentile interval covers "
        "well under 95 % (at 3 values it is the range of the values)."
        if options.interval == "bootstrap"
        else ""
    )
    return (
        f"Numbers: a cell is mean ± std over seeds, then its {stats.interval_name(options.interval, options.seed)} "
        f"in brackets from {stats.MIN_INTERVAL_N} seeds on; a cell without one says why (fewer values, or no "
        f"variance: every seed gave the same accuracy, and no interval follows from that).{boot} Accuracies are "
        "counts of test images, so values within half an image of each other are the same. A BSS gain pairs each "
        "BSS trial with the trial equal to it but for BSS on the same seed; `pairs n of N` counts the pairs against "
        "the configuration's BSS trials. p (paired t, unadjusted) is shown for reference and is undefined where "
        "the differences have no variance; p (sign-flip) is the permutation test of the paired differences (no "
        f"normality, defined for any n), exact up to {stats.EXACT_UP_TO} pairs and a Monte-Carlo estimate beyond, "
        "as each value says; each table is one family, whose sign-flip p (only) are adjusted together with "
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
        NEGATIVE_TRANSFER_RULE,
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
