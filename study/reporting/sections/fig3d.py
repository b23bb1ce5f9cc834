"""Fig. 3(d): test accuracy against k, one line per sampling rate, from trials that differ only in k
and the seed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from study.reporting.model import ReportData
from study.reporting.sections.base import Context, Figures, Nothing, Section
from study.reporting.stats import interval_name
from study.spec import HELD_FIXED

FIGURE = "fig3d.png"


def draw_fig3d(data: ReportData, path: Path) -> None:
    """Draw :func:`fig3d_figure` into ``path``."""
    import matplotlib.pyplot as plt

    fig = fig3d_figure(data)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def fig3d_figure(data: ReportData) -> Any:
    """One panel per (dataset, base method), a line per sampling rate: test accuracy against k, the
    mean over seeds with its 95 % interval (none, and its n written, below 3 seeds), from trials that
    differ only in k and the seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(data.fig3d.items())
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for ax, ((dataset, method), lines) in zip(axes[0], panels, strict=True):
        for line in lines:
            ks = sorted(line.cells)
            cells = [line.cells[k] for k in ks]
            means = [100 * (c.mean or float("nan")) for c in cells]
            # the 95 % interval of each mean; a point of fewer than 3 seeds has none (no bar) and says its n
            low = [m - 100 * c.interval[0] if c.interval else float("nan") for m, c in zip(means, cells, strict=True)]
            high = [100 * c.interval[1] - m if c.interval else float("nan") for m, c in zip(means, cells, strict=True)]
            drawn = ax.errorbar(ks, means, yerr=[low, high], marker="o", capsize=3, label=line.label)
            for k, m, c in zip(ks, means, cells, strict=True):
                if c.interval is None and c.mean is not None:
                    color = drawn.lines[0].get_color()
                    ax.annotate(f"n={c.n}", (k, m), textcoords="offset points", xytext=(4, 4), fontsize=7, color=color)
        ax.set(
            xscale="symlog" if any(0 in line.cells for line in lines) else "log",
            xlabel="k (smallest singular values penalised; 0: without BSS)",
            ylabel=f"test accuracy (%), {interval_name(data.options.interval, data.options.seed)}",
            title=f"{dataset}, {method}+BSS: sensitivity to k (Fig. 3d)",
        )
        ax.set_xticks(sorted({k for line in lines for k in line.cells}))
        ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.get_xaxis().set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.legend(title="sampling rate")
    fig.tight_layout()
    return fig


def render(context: Context) -> Figures | Nothing:
    if not context.data.fig3d:
        return Nothing(
            "no BSS trials differ only in k and the seed (Fig. 3(d) needs a k grid, e.g. search_space: fig3d)"
        )
    draw_fig3d(context.data, context.out / FIGURE)
    fixed = context.spec.held_fixed
    notes = [f"Fig. 3(d), held fixed across rates: {HELD_FIXED[fixed]}."] if fixed in HELD_FIXED else []
    return Figures([FIGURE], notes)


SECTION = Section("", render, figure=FIGURE)
