"""Optuna's views of a search: parameter importances, parallel coordinates, and, in a search over
``bss.k`` without a k grid, the marginal effect of k."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from study.reporting.sections.base import Context, Figures, Section


def optuna_figures(study: Any, folder: Path, marginal_k: bool = False) -> tuple[list[str], list[str]]:
    """Parameter importances and a parallel-coordinates view (Optuna's matplotlib back-end); with
    ``marginal_k``, the slice plot of ``bss.k``: its marginal effect in a search."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    written, notes = [], []
    figures: list[tuple[str, Any]] = [
        ("importances.png", ovm.plot_param_importances),
        ("parallel.png", ovm.plot_parallel_coordinate),
    ]
    if marginal_k:
        figures.append(("k_marginal.png", lambda s: ovm.plot_slice(s, params=["bss.k"])))
    for name, draw in figures:
        try:
            axes: Any = draw(study)
            figure: Any = axes.figure if hasattr(axes, "figure") else axes[0].figure
            figure.set_size_inches(9, 5)
            figure.tight_layout()
            figure.savefig(folder / name, dpi=110)
            plt.close(figure)
            written.append(name)
        except Exception as exc:
            notes.append(f"{name}: not drawn ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})")
    return written, notes


def render(context: Context) -> Figures:
    searched_k = any(name == "bss.k" for t in context.optuna_study.trials for name in t.params)
    drawn, notes = optuna_figures(context.optuna_study, context.out, marginal_k=searched_k and not context.data.fig3d)
    if "k_marginal.png" in drawn:
        notes.append(
            "k_marginal.png: the marginal effect of bss.k in this search, other parameters varying "
            "(Optuna's slice plot; not Fig. 3(d))"
        )
    return Figures(drawn, notes)


SECTION = Section("", render)
