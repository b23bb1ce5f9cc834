"""`study report`: the paper's kinds of summaries, computed from the trial table, then drawn.

Data first (:func:`report_data` returns plain tables), drawing and writing after
(:func:`write_report`), like Optuna's visualization module.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from study.errors import StudyError
from study.folder import REPORT_DIR, StudyFolder, StudyRecord, load_optuna_study, read_trials, rebase_artifacts
from study.folder import tracking_client as open_tracking
from study.spec import load_spec


@dataclass(frozen=True)
class Trial:
    """One finished trial, reduced to what the reports group by."""

    dataset: str
    method: str  # "l2", "l2sp+BSS", ...
    base_method: str
    bss: bool
    rate: float
    seed: int
    k: int
    test_acc: float
    val_acc: float


@dataclass(frozen=True)
class Cell:
    mean: float
    std: float
    n: int

    def text(self) -> str:
        return f"{100 * self.mean:.2f} ± {100 * self.std:.2f}" + (f" (n={self.n})" if self.n != 5 else "")


@dataclass(frozen=True)
class Gain:
    """BSS minus its base method on the same seeds: mean gain and a paired t-test."""

    dataset: str
    method: str
    rate: float
    mean_gain: float
    n_pairs: int
    p_value: float | None


@dataclass
class ReportData:
    rates: list[float]
    table2: dict[tuple[str, str], dict[float, Cell]] = field(default_factory=dict)  # (dataset, method) -> rate
    gains: list[Gain] = field(default_factory=list)
    fig3d: dict[float, dict[int, Cell]] = field(default_factory=dict)  # rate -> k -> accuracy over seeds
    n_trials: int = 0


def _value(row: dict[str, Any], name: str, base: dict[str, Any], default: Any) -> Any:
    param = row.get(f"param.{name}")
    if param is not None:
        return param
    node: Any = base
    for part in name.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def trials_from_table(rows: Sequence[dict[str, Any]], base: dict[str, Any]) -> list[Trial]:
    """Finished trials that ran to the end (they have a test accuracy); early-stopped ones are left out."""
    trials = []
    for row in rows:
        if row["status"] != "finished" or row.get("test_acc") is None:
            continue
        method = str(_value(row, "regularizer.name", base, "l2"))
        bss = bool(_value(row, "bss.enabled", base, False))
        trials.append(
            Trial(
                dataset=str(_value(row, "data.dataset", base, "embedded-fashion-mnist")),
                method=method + ("+BSS" if bss else ""), base_method=method, bss=bss,
                rate=float(_value(row, "data.sampling_rate", base, 0.15)), seed=int(_value(row, "seed", base, 0)),
                k=int(_value(row, "bss.k", base, 1)), test_acc=float(row["test_acc"]),
                val_acc=float(row["best_val_acc"]),
            )
        )  # fmt: skip
    ks = {t.k for t in trials if t.bss}
    if len(ks) > 1:  # several k: each is its own method in the table
        trials = [replace(t, method=f"{t.method}(k={t.k})") if t.bss else t for t in trials]
    return trials


def _cell(values: list[float]) -> Cell:
    return Cell(statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0, len(values))


def paired_t_test(differences: list[float]) -> float | None:
    """Two-sided p-value of a paired t-test on the differences (None below two pairs)."""
    if len(differences) < 2:
        return None
    from scipy import stats

    if statistics.pstdev(differences) == 0:
        return 0.0 if statistics.fmean(differences) != 0 else 1.0
    return float(stats.ttest_1samp(differences, 0.0).pvalue)


def report_data(trials: list[Trial]) -> ReportData:
    rates = sorted({t.rate for t in trials})
    data = ReportData(rates=rates, n_trials=len(trials))
    groups: dict[tuple[str, str, float], list[Trial]] = defaultdict(list)
    for t in trials:
        groups[(t.dataset, t.method, t.rate)].append(t)
    for (dataset, method, rate), members in sorted(groups.items()):
        data.table2.setdefault((dataset, method), {})[rate] = _cell([m.test_acc for m in members])
    # BSS gain: pair each BSS trial with its base method's trial of the same dataset, rate and seed
    plain = {(t.dataset, t.base_method, t.rate, t.seed): t for t in trials if not t.bss}
    pairs: dict[tuple[str, str, float], list[float]] = defaultdict(list)
    for t in trials:
        partner = plain.get((t.dataset, t.base_method, t.rate, t.seed))
        if t.bss and partner is not None:
            pairs[(t.dataset, t.method, t.rate)].append(t.test_acc - partner.test_acc)
    for (dataset, method, rate), diffs in sorted(pairs.items()):
        data.gains.append(Gain(dataset, method, rate, statistics.fmean(diffs), len(diffs), paired_t_test(diffs)))
    ks: dict[tuple[float, int], list[float]] = defaultdict(list)
    for t in trials:
        if t.bss:
            ks[(t.rate, t.k)].append(t.test_acc)
    for (rate, k), values in sorted(ks.items()):
        data.fig3d.setdefault(rate, {})[k] = _cell(values)
    return data


def table2_markdown(data: ReportData) -> str:
    header = "| dataset | method | " + " | ".join(f"{100 * r:g}%" for r in data.rates) + " |"
    lines = [header, "|" + " --- |" * (2 + len(data.rates))]
    for (dataset, method), cells in sorted(data.table2.items()):
        row = [cells[r].text() if r in cells else "-" for r in data.rates]
        lines.append(f"| {dataset} | {method} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def gains_markdown(data: ReportData) -> str:
    lines = [
        "| dataset | method | rate | BSS gain (points) | pairs | paired t-test p |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for g in data.gains:
        p = "-" if g.p_value is None else f"{g.p_value:.3g}"
        lines.append(f"| {g.dataset} | {g.method} | {100 * g.rate:g}% | {100 * g.mean_gain:+.2f} | {g.n_pairs} | {p} |")
    return "\n".join(lines)


def draw_fig3d(data: ReportData, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for rate, cells in sorted(data.fig3d.items()):
        ks = sorted(cells)
        means = [100 * cells[k].mean for k in ks]
        stds = [100 * cells[k].std for k in ks]
        ax.errorbar(ks, means, yerr=stds, marker="o", capsize=3, label=f"{100 * rate:g}%")
    ax.set(xscale="log", xlabel="k (smallest singular values penalised)", ylabel="test accuracy (%)",
           title="sensitivity to k (cf. Fig. 3d)")  # fmt: skip
    ax.set_xticks(sorted({k for cells in data.fig3d.values() for k in cells}))
    ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.get_xaxis().set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.legend(title="sampling rate")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def optuna_figures(study: Any, folder: Path) -> tuple[list[str], list[str]]:
    """Parameter importances and a parallel-coordinates view (Optuna's matplotlib back-end)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    written, notes = [], []
    for name, draw in (("importances.png", ovm.plot_param_importances), ("parallel.png", ovm.plot_parallel_coordinate)):
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


def write_report(path: Path) -> list[Path]:
    """Write report.md and its figures into STUDY_DIR/report and log them to the parent MLflow run.
    Every input is checked (one line naming a missing or damaged file) before anything is written."""
    folder = StudyFolder(path)
    folder.require_launched()
    spec = load_spec(folder.spec_file, output_dir=folder.path)
    rows = read_trials(folder).to_pylist()
    record = StudyRecord.load(folder)
    client = open_tracking(folder, record)
    optuna_study = load_optuna_study(folder, spec.name)
    trials = trials_from_table(rows, spec.base)
    if not trials:
        raise StudyError(f"STUDY_DIR: no trial of {folder.path} ran to the end; nothing to report")
    data = report_data(trials)
    rebase_artifacts(folder, record)
    out = folder.path / REPORT_DIR
    out.mkdir(exist_ok=True)
    sections = [f"# Study {spec.name}: report", "",
                f"{data.n_trials} trials that ran to the end, of {len(rows)}; accuracy in % on the test split, "
                "mean ± std over seeds (the epoch was selected on validation).", "",
                "## Table 2 style", "", table2_markdown(data), ""]  # fmt: skip
    if data.gains:
        sections += ["## Gain from adding BSS (paired by seed)", "", gains_markdown(data), ""]
    figures = []
    if data.fig3d:
        draw_fig3d(data, out / "fig3d.png")
        figures.append("fig3d.png")
    drawn, notes = optuna_figures(optuna_study, out)
    figures += drawn
    sections += ["## Figures", ""] + [f"![{name}]({name})" for name in figures] + [""] + [f"- {n}" for n in notes]
    (out / "report.md").write_text("\n".join(sections) + "\n")
    paths = [out / "report.md"] + [out / name for name in figures]
    for written in paths:
        client.log_artifact(record.parent_run_id, str(written), artifact_path="report")
    return paths
