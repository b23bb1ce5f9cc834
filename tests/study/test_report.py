"""`study report`: numbers checked against hand computation; files written and logged to MLflow."""

from __future__ import annotations

import statistics
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient
from scipy import stats

from study.cli import main
from study.driver import start_record
from study.folder import TRIALS_FILE, StudyFolder, StudyRecord
from study.report_data import report_data, spectra_markdown, table2_markdown, trials_from_table
from study.results import TrialRow, trials_table, write_table
from study.spec import spec_from_mapping
from study.stores import StoreChoice
from tests.conftest import tiny_base


def synthetic_rows() -> list[TrialRow]:
    """L2 and L2+BSS (k = 1 or 4) at two rates and three seeds, with known accuracies."""
    rows = []
    for rate in (0.15, 0.3):
        for seed in range(3):
            base_acc = 0.50 + rate + 0.01 * seed
            variants = [(False, None, base_acc), (True, 1, base_acc + 0.02 + 0.005 * seed), (True, 4, base_acc + 0.01)]
            for bss, k, acc in variants:
                params = {"data.sampling_rate": rate, "seed": seed, "bss.enabled": bss, "regularizer.name": "l2"}
                if k is not None:
                    params["bss.k"] = k
                trial_id = f"t{len(rows)}"
                rows.append(TrialRow(trial_id, "finished", params, {"best_val_acc": acc, "test_acc": acc, "epoch": 2}))
    rows.append(TrialRow("stopped", "finished", {"data.sampling_rate": 0.15, "seed": 0}, {"best_val_acc": 0.1}))
    rows.append(TrialRow("broken", "failed", {"data.sampling_rate": 0.15, "seed": 0}, {}, error="boom"))
    return rows


def test_report_numbers() -> None:
    table = trials_table(synthetic_rows()).to_pylist()
    trials = trials_from_table(table, {"regularizer": {"name": "l2"}})
    data = report_data(trials)
    assert data.n_trials == 18 and data.n_rows == 20
    rows = {row.label: row for row in data.rows}
    assert set(rows) == {"l2", "l2+BSS(k=1)", "l2+BSS(k=4)"}  # one row per config, seeds pooled
    cell = rows["l2"].cells[0.15]
    expected = [0.65, 0.66, 0.67]
    assert cell.mean == pytest.approx(statistics.fmean(expected))
    assert cell.std == pytest.approx(statistics.stdev(expected))
    # the early-stopped and the failed trial have the same config: the cell lost them, and says so
    assert (cell.n, cell.expected, cell.lost) == (3, 5, 2) and "n=3 of 5: 2 lost" in cell.text()
    assert rows["l2"].cells[0.3].text().endswith("(n=3)")
    # each BSS trial is paired with the L2 trial of its seed; two k values: two methods
    gain = next(g for g in data.gains if g.rate == 0.3 and g.method == "l2+BSS(k=1)")
    diffs = [0.02 + 0.005 * s for s in range(3)]
    assert gain.n_pairs == 3 and gain.mean_gain == pytest.approx(statistics.fmean(diffs))
    plain_accs = [0.80, 0.81, 0.82]
    bss_accs = [acc + d for acc, d in zip(plain_accs, diffs, strict=True)]
    assert gain.p_value == pytest.approx(stats.ttest_rel(bss_accs, plain_accs).pvalue)
    constant = next(g for g in data.gains if g.rate == 0.3 and g.method == "l2+BSS(k=4)")
    assert constant.mean_gain == pytest.approx(0.01) and constant.p_value == 0.0
    lines = data.fig3d[("embedded-fashion-mnist", "l2")]
    assert [line.label for line in lines] == ["15%", "30%"]
    assert set(lines[0].cells) == {0, 1, 4}  # k = 0: the same config without BSS, the line's baseline
    assert lines[0].cells[0].mean == pytest.approx(statistics.fmean([0.65, 0.66, 0.67]))
    assert lines[0].cells[0].expected == 5  # the lost trials of the baseline's cell count here too
    assert lines[1].cells[4].mean == pytest.approx(statistics.fmean([0.81, 0.82, 0.83]))
    markdown = table2_markdown(data)
    assert "| embedded-fashion-mnist | l2+BSS(k=4) |" in markdown and "15%" in markdown


def sequence_rows() -> list[TrialRow]:
    """A task sequence: fine-tuning, EWC (lam 10) and each with BSS, 3 seeds; known accuracies."""
    rows = []
    for seed in range(3):
        for lam in (0.0, 10.0):
            for bss in (False, True):
                learned = 0.80 + 0.01 * seed
                task_a = learned - (0.10 if lam == 0 else 0.03) - (0.01 * seed if bss else 0.0)
                task_b = 0.78 + (0.02 + 0.01 * seed if bss else 0.0)
                metrics = {
                    "test_acc": (task_a + task_b) / 2,
                    "task": 2,
                    "task_acc_1": task_a,
                    "task_acc_2": task_b,
                    "task_learned_acc_1": learned,
                    "task_learned_acc_2": task_b,
                    "epoch": 4,
                }
                params = {"ewc.lam": lam, "bss.enabled": bss, "seed": seed}
                rows.append(TrialRow(f"t{len(rows)}", "finished", params, metrics))
    return rows


def test_table3_has_each_task_the_average_and_forgetting_and_pairs_bss_per_column() -> None:
    from study.report_data import table3_markdown, task_gains_markdown
    from tests.finetune.test_incremental import sequence_base

    table = trials_table(sequence_rows())
    assert {"task", "task_acc_1", "task_acc_2", "task_learned_acc_1", "task_learned_acc_2"} <= set(table.column_names)
    base = sequence_base(ewc={"enabled": True})
    data = report_data(trials_from_table(table.to_pylist(), base))
    assert data.task_columns == ["task A", "task B", "average", "A forgotten"]
    rows = {row.label: row for row in data.table3}
    assert set(rows) == {"fine-tuning", "fine-tuning + BSS", "fine-tuning + EWC", "fine-tuning + EWC + BSS"}
    ewc = rows["fine-tuning + EWC"].cells
    assert ewc["task A"].mean == pytest.approx(statistics.fmean([0.77, 0.78, 0.79]))
    assert ewc["A forgotten"].mean == pytest.approx(0.03) and rows["fine-tuning"].cells["A forgotten"].mean == (
        pytest.approx(0.10)
    )
    assert ewc["average"].n == 3 and ewc["average"].std is not None
    gains = {(g.label, g.column): g for g in data.task_gains}
    b_gain = gains[("fine-tuning + EWC + BSS", "task B")]
    with_bss, without = [0.80 + 0.01 * s for s in range(3)], [0.78] * 3
    assert b_gain.n_pairs == 3 and b_gain.mean_gain == pytest.approx(0.03)
    assert b_gain.p_value == pytest.approx(stats.ttest_rel(with_bss, without).pvalue)
    assert gains[("fine-tuning + EWC + BSS", "A forgotten")].mean_gain == pytest.approx(0.01)  # more forgetting
    assert "| fine-tuning + EWC + BSS | 3 | -1.00 (p 0.23) | +3.00 (p 0.035) |" in task_gains_markdown(data)
    assert "| task A | task B | average | A forgotten |" in table3_markdown(data)
    assert not report_data(trials_from_table(trials_table(synthetic_rows()).to_pylist(), {})).table3


def test_spectrum_shifts_pair_bss_with_its_partner_per_singular_value() -> None:
    """Each BSS trial's smallest singular values against its partner's without BSS (same seed):
    mean relative change and the paired t-test of the differences, per index."""
    rows = []
    for seed in range(3):
        plain = [1.0 + seed, 2.0 + seed, 3.0, 4.0]
        shrunk = [0.5 * plain[0], 0.8 * plain[1] - 0.01 * seed, 3.0 + 0.1 * seed, 4.0]
        for bss, spectrum in ((False, plain), (True, shrunk)):
            metrics = {"test_acc": 0.5, "epoch": 2, **{f"sv_min_{i + 1}": v for i, v in enumerate(spectrum)}}
            params = {"seed": seed, "bss.enabled": bss}
            rows.append(TrialRow(f"t{len(rows)}", "finished", params, metrics))
    data = report_data(trials_from_table(trials_table(rows).to_pylist(), {}))
    shifts = {s.index: s for s in data.spectra}
    assert set(shifts) == {1, 2, 3, 4} and all(s.n_pairs == 3 and s.method == "l2+BSS" for s in shifts.values())
    assert shifts[1].relative_change == pytest.approx(-0.5) and shifts[1].p_value is not None
    diffs = [(0.8 * (2.0 + s) - 0.01 * s) - (2.0 + s) for s in range(3)]
    assert shifts[2].p_value == pytest.approx(stats.ttest_1samp(diffs, 0.0).pvalue)
    assert shifts[4].relative_change == 0.0 and shifts[4].p_value == 1.0
    assert "| embedded-fashion-mnist | l2+BSS | 15% | 3 | -50% (" in spectra_markdown(data)


def test_a_search_is_not_pooled_into_table_cells_or_fig3d() -> None:
    """Trials with different lr, eta and k, all seed 0 (a TPE search like the demo): no cell pools
    them, no mean ± std is printed for one trial, and no Fig. 3(d) line is drawn from them."""
    rows = [
        TrialRow(
            f"s{i}",
            "finished",
            {"optim.lr": lr, "bss.enabled": True, "bss.k": k, "bss.eta": eta},
            {"best_val_acc": acc, "test_acc": acc, "epoch": 2},
        )
        for i, (lr, k, eta, acc) in enumerate([(0.01, 1, 0.001, 0.76), (0.02, 2, 0.01, 0.70), (0.05, 4, 0.1, 0.67)])
    ]
    data = report_data(trials_from_table(trials_table(rows).to_pylist(), {}))
    assert len(data.rows) == 3 and not data.repeated
    assert all(cell.n == 1 and "±" not in cell.text() for row in data.rows for cell in row.cells.values())
    assert not data.fig3d and not data.gains


def test_study_report_writes_and_logs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = spec_from_mapping({"name": "rep", "output_dir": str(tmp_path / "rep"), "base": tiny_base()}, "x", tmp_path)
    start_record(spec, StoreChoice())
    folder = tmp_path / "rep"
    study = optuna.load_study(study_name="rep", storage=StudyFolder(folder).optuna_url)
    rows = [r for r in synthetic_rows() if r.status == "finished"]
    for row in rows:
        distributions = {
            "data.sampling_rate": optuna.distributions.CategoricalDistribution([0.15, 0.3]),
            "seed": optuna.distributions.CategoricalDistribution([0, 1, 2]),
        }
        params = {k: row.params[k] for k in distributions}
        study.add_trial(
            optuna.trial.create_trial(params=params, distributions=distributions, value=row.metrics["best_val_acc"])
        )
    write_table(trials_table(rows), folder / TRIALS_FILE)
    assert main(["report", str(folder)]) == 0
    report = (folder / "report" / "report.md").read_text()
    assert "Table 2 style" in report and "Gain from adding BSS" in report and "Table 3" not in report
    for name in ("fig3d.png", "importances.png", "parallel.png"):
        assert (folder / "report" / name).stat().st_size > 1000, name
    record = StudyRecord.load(StudyFolder(folder))
    client = MlflowClient(record.stores(StudyFolder(folder)).tracking_uri)
    logged = {a.path for a in client.list_artifacts(record.parent_run_id, "report")}
    assert {"report/report.md", "report/fig3d.png"} <= logged
    assert "report.md" in capsys.readouterr().out


def test_report_needs_a_finished_study(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = spec_from_mapping({"name": "rep2", "output_dir": str(tmp_path / "r"), "base": tiny_base()}, "x", tmp_path)
    start_record(spec, StoreChoice())
    assert main(["report", str(tmp_path / "r")]) == 2
    assert "no trials.parquet yet" in capsys.readouterr().err
