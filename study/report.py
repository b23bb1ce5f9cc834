"""`study report`: the paper's kinds of summaries, computed from the trial table, then drawn.

Data first (:func:`report_data` returns plain tables), drawing and writing after
(:func:`write_report`), like Optuna's visualization module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from study.errors import StudyError
from study.folder import REPORT_DIR, StudyFolder, StudyRecord, load_optuna_study, read_trials, rebase_artifacts
from study.folder import tracking_client as open_tracking
from study.report_data import (
    ReportData,
    gains_markdown,
    report_data,
    spectra_markdown,
    table2_markdown,
    table3_markdown,
    task_gains_markdown,
    trials_from_table,
)
from study.spec import load_spec


def draw_fig3d(data: ReportData, path: Path) -> None:
    """One panel per (dataset, base method), a line per sampling rate: test accuracy against k,
    mean ± std over seeds, from trials that differ only in k and the seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(data.fig3d.items())
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for ax, ((dataset, method), lines) in zip(axes[0], panels, strict=True):
        for line in lines:
            ks = sorted(line.cells)
            means = [100 * (line.cells[k].mean or float("nan")) for k in ks]
            stds = [100 * (line.cells[k].std or 0.0) for k in ks]
            ax.errorbar(ks, means, yerr=stds, marker="o", capsize=3, label=line.label)
        ax.set(
            xscale="symlog" if any(0 in line.cells for line in lines) else "log",
            xlabel="k (smallest singular values penalised; 0: without BSS)",
            ylabel="test accuracy (%)",
            title=f"{dataset}, {method}+BSS: sensitivity to k (Fig. 3d)",
        )
        ax.set_xticks(sorted({k for line in lines for k in line.cells}))
        ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.get_xaxis().set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.legend(title="sampling rate")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


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


def table3_section(data: ReportData) -> list[str]:
    """The paper's Table 3 (incremental learning): each task's test accuracy after the last task,
    their average, and what task A lost since the end of its own training; the BSS differences."""
    lines = [
        "## Table 3 style: task sequences (incremental learning)",
        "",
        "Test accuracy (%) on each task after training on the last one, their average, and the points task "
        "A lost between the end of its own training and the end (forgetting); mean ± std over seeds. "
        "`fine-tuning` is the task loss alone (L2 with alpha 0).",
        "",
        table3_markdown(data),
        "",
    ]
    if data.task_gains:
        lines += [
            "BSS minus its partner without BSS (same seed, otherwise equal), in points, with the paired t-test p "
            "of each column (for `A forgotten`, negative is less forgetting):",
            "",
            task_gains_markdown(data),
            "",
        ]
    else:
        lines += ["No BSS trial of a task sequence has a partner without BSS (same seed).", ""]
    return lines


SELECTION_TEXT = {
    "last": "Selection: `last` (the paper's protocol for fixed settings): each trial trains on every sampled "
    "image (ceil(rate x n_c) a class, nested across rates), has no validation split, and reports the test "
    "accuracy of its last epoch.",
    "best_val": "Selection: `best_val`: each trial reports the test accuracy of its epoch of best validation "
    "accuracy (validation is the dataset's own split, or carved from the sampled images where it has none).",
}


def write_report(path: Path) -> list[Path]:
    """Write report.md and its figures into STUDY_DIR/report and log them to the parent MLflow run.
    Every input is checked (one line naming a missing or damaged file) before anything is written."""
    folder = StudyFolder(path)
    folder.require_launched()
    spec = load_spec(folder.spec_file, output_dir=folder.path)
    rows = read_trials(folder).to_pylist()
    record = StudyRecord.load(folder)
    client = open_tracking(folder, record)
    optuna_study = load_optuna_study(folder, record, spec.name)
    trials = trials_from_table(rows, spec.base)
    data = report_data(trials)
    if not data.n_trials:
        raise StudyError(f"STUDY_DIR: no trial of {folder.path} ran to the end; nothing to report")
    rebase_artifacts(folder, record)
    out = folder.path / REPORT_DIR
    out.mkdir(exist_ok=True)
    sections = [
        f"# Study {spec.name}: report",
        "",
        f"{data.n_trials} of {data.n_rows} trials ran to the end; test accuracy in %, mean ± std over the "
        "seeds of trials whose resolved configs are equal but for the seed.",
        "",
        SELECTION_TEXT[str(spec.selection)],
        "",
    ]
    sizes = sorted(
        {
            (r.get("param.data.sampling_rate"), r.get("n_train"), r.get("n_val"))
            for r in rows
            if r.get("n_train") is not None
        },
        key=str,
    )
    if sizes:
        sections += [
            "Images per trial (training / validation): "
            + "; ".join(
                (f"rate {rate:g}: " if isinstance(rate, float) else "") + f"{n_train} / {n_val}"
                for rate, n_train, n_val in sizes
            )
            + ".",
            "",
        ]
    sections += ["## Table 2 style", ""]
    if data.repeated or spec.space.grid is not None:  # a grid's table compares its fixed settings
        sections += [table2_markdown(data), ""]
    else:
        sections += [
            "Not shown: no configuration ran with more than one seed (a search, not a grid of seeds); "
            "each trial's accuracy is in trials.parquet.",
            "",
        ]
    sections += ["## Gain from adding BSS (paired by seed)", ""]
    if data.gains:
        sections += [gains_markdown(data), ""]
    else:
        sections += [
            "Not shown: no BSS trial has a partner without BSS whose config is otherwise equal (same seed).",
            "",
        ]
    sections += ["## Smallest singular values of the features, with BSS against without (paired by seed)", ""]
    if data.spectra:
        sections += [
            "s_1 ≤ s_2 ≤ ... are the smallest singular values of the last training batch's features at "
            "the last epoch; each cell is the mean relative change with BSS, and the paired t-test p of "
            "the differences. BSS penalises the k smallest: a change beyond s_k is what Fig. 1(c-d) and "
            "3(b-c) describe.",
            "",
            spectra_markdown(data),
            "",
        ]
    else:
        sections += ["Not shown: no BSS trial has a partner without BSS (same seed) with a recorded spectrum.", ""]
    if data.table3:
        sections += table3_section(data)
    figures, notes = [], []
    if data.fig3d:
        draw_fig3d(data, out / "fig3d.png")
        figures.append("fig3d.png")
    else:
        notes.append(
            "fig3d.png: not drawn: no BSS trials differ only in k and the seed (Fig. 3(d) needs a k grid, "
            "e.g. search_space: fig3d)"
        )
    searched_k = any(name == "bss.k" for t in optuna_study.trials for name in t.params)
    drawn, failed = optuna_figures(optuna_study, out, marginal_k=searched_k and not data.fig3d)
    figures += drawn
    notes += failed
    if "k_marginal.png" in drawn:
        notes.append(
            "k_marginal.png: the marginal effect of bss.k in this search, other parameters varying "
            "(Optuna's slice plot; not Fig. 3(d))"
        )
    sections += ["## Figures", ""] + [f"![{name}]({name})" for name in figures] + [""] + [f"- {n}" for n in notes]
    (out / "report.md").write_text("\n".join(sections) + "\n")
    paths = [out / "report.md"] + [out / name for name in figures]
    for written in paths:
        client.log_artifact(record.parent_run_id, str(written), artifact_path="report")
    return paths
