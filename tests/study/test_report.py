"""`study report`: numbers checked against hand computation; files written and logged to MLflow."""

from __future__ import annotations

import statistics
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient
from scipy import stats

from study.cli import main
from study.record import TRIALS_FILE, StoreChoice, StudyFolder, StudyRecord, TrialRow, trials_table, write_table
from study.reporting import report_data, spectra_markdown, table2_markdown, trials_from_table
from study.run import start_record
from study.spec import spec_from_mapping
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
    # two more seeds of L2 at 15% that did not run to the end (another seed each: the same seed would be a duplicate)
    rows.append(TrialRow("stopped", "finished", {"data.sampling_rate": 0.15, "seed": 3}, {"best_val_acc": 0.1}))
    rows.append(TrialRow("broken", "failed", {"data.sampling_rate": 0.15, "seed": 4}, {}, error="boom"))
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
    # the early-stopped and the failed trial have the same config but the seed: the cell lost them, and says so
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
    # equal differences: the t-test is undefined (not p = 0); the exact sign-flip test is 2 / 2^3
    assert constant.mean_gain == pytest.approx(0.01) and constant.p_value is None
    assert constant.p_why == "no variance" and constant.p_sign == pytest.approx(0.25)
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
    from study.reporting import table3_markdown, task_gains_markdown
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
    # the sign-flip p of each column beside its Holm adjustment over the table's 8 comparisons
    a_gain = gains[("fine-tuning + EWC + BSS", "task A")]
    assert b_gain.p_sign == pytest.approx(0.25) and a_gain.p_adjusted == b_gain.p_adjusted == 1.0
    expected = f"| fine-tuning + EWC + BSS | 3 of 3 | -1.00 (p {a_gain.p_sign:.2g}, adj. 1) | +3.00 (p 0.25, adj. 1) |"
    assert expected in task_gains_markdown(data)
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
    # no change at all: the t-test is undefined (zero variance), the sign-flip p is 1
    assert shifts[4].relative_change == 0.0 and shifts[4].p_value is None and shifts[4].p_sign == 1.0
    assert "| embedded-fashion-mnist | l2+BSS | 15% | 3 of 3 | -50% (p 0.25, adj. 1) |" in spectra_markdown(data)


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
            "seed": optuna.distributions.CategoricalDistribution([0, 1, 2, 3, 4]),
        }
        params = {k: row.params[k] for k in distributions}
        study.add_trial(
            optuna.trial.create_trial(params=params, distributions=distributions, value=row.metrics["best_val_acc"])
        )
    write_table(trials_table(rows), folder / TRIALS_FILE)
    assert main(["report", str(folder)]) == 0
    report = (folder / "report" / "report.md").read_text()
    assert "Table 2 style" in report and "Gain from adding BSS" in report and "Table 3" not in report
    held = "the number of optimiser steps (optim.epochs x optim.steps_per_epoch)"  # tiny_base: 2 steps an epoch
    assert f"Held fixed across sampling rates: {held}" in report
    # what Fig. 3(d) holds fixed is said directly under the figure, not in the notes at the end
    assert f"![fig3d.png](fig3d.png)\n\nFig. 3(d), held fixed across rates: {held}" in report
    assert "None of the" in report or "comparisons differ from zero" in report  # what survives, said once
    for name in ("fig3d.png", "importances.png", "parallel.png"):
        assert (folder / "report" / name).stat().st_size > 1000, name
    record = StudyRecord.load(StudyFolder(folder))
    client = MlflowClient(record.stores(StudyFolder(folder)).tracking_uri)
    logged = {a.path for a in client.list_artifacts(record.parent_run_id, "report")}
    assert {"report/report.md", "report/fig3d.png", "report/summary.parquet"} <= logged
    assert "report.md" in capsys.readouterr().out


def test_report_needs_a_finished_study(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = spec_from_mapping({"name": "rep2", "output_dir": str(tmp_path / "r"), "base": tiny_base()}, "x", tmp_path)
    start_record(spec, StoreChoice())
    assert main(["report", str(tmp_path / "r")]) == 2
    assert "no trials.parquet yet" in capsys.readouterr().err


def paired_rows(partner_of_seed_2: str = "failed") -> list[TrialRow]:
    """L2 and L2+BSS at one rate, seeds 0-2; seed 2's L2 trial did not finish."""
    rows = []
    for seed in range(3):
        for bss in (False, True):
            acc = 0.60 + 0.01 * seed + (0.02 + 0.01 * seed if bss else 0.0)
            params = {"data.sampling_rate": 0.15, "seed": seed, "bss.enabled": bss, "regularizer.name": "l2"}
            if bss:
                params["bss.k"] = 1
            if not bss and seed == 2:
                rows.append(TrialRow(f"t{len(rows)}", partner_of_seed_2, params, {}, error="boom"))
            else:
                rows.append(TrialRow(f"t{len(rows)}", "finished", params, {"best_val_acc": acc, "test_acc": acc}))
    return rows


def test_a_gain_counts_its_pairs_and_says_why_a_seed_has_none() -> None:
    from study.reporting import gains_markdown

    data = report_data(trials_from_table(trials_table(paired_rows()).to_pylist(), {}))
    (gain,) = data.gains
    assert (gain.n_pairs, gain.n_expected) == (2, 3)
    assert gain.unpaired == ("seed 2: its partner without BSS did not run to the end (failed)",)
    assert gain.seeds_note == "the BSS cell also averages seeds 2"
    markdown = gains_markdown(data)
    assert "| 2 of 3 |" in markdown
    assert "- l2+BSS at 15%: seed 2: its partner without BSS did not run to the end (failed); the BSS cell" in (
        markdown
    )
    cells = {row.label: row.cells[0.15] for row in data.rows}
    assert cells["l2+BSS"].seeds == (0, 1, 2) and cells["l2"].seeds == (0, 1)
    assert cells["l2"].interval is None and "no interval" in cells["l2"].text()  # 2 seeds: no interval


def test_duplicates_count_once_the_finished_then_the_latest_kept() -> None:
    rows = paired_rows()
    twin = rows[0]  # L2, seed 0, finished
    rows.append(TrialRow("rerun", "finished", dict(twin.params), {"best_val_acc": 0.9, "test_acc": 0.9}))
    rows.append(TrialRow("crashed", "failed", dict(twin.params), {}, error="boom"))
    table = trials_table(rows).to_pylist()
    for number, row in enumerate(table):
        row["optuna_trial_number"] = number
    data = report_data(trials_from_table(table, {}))
    (duplicate,) = data.duplicates
    assert duplicate.kept == "rerun" and set(duplicate.dropped) == {"t0", "crashed"} and duplicate.seed == 0
    cell = {row.label: row.cells[0.15] for row in data.rows}["l2"]
    assert cell.n == 2 and cell.expected == 3 and cell.mean == pytest.approx((0.9 + 0.61) / 2)  # not 3 seeds
    (gain,) = data.gains
    assert gain.n_pairs == 2  # seed 0 paired with the kept trial only


def test_the_summary_parquet_holds_the_markdown_numbers(tmp_path: Path) -> None:
    from study.reporting import gains_markdown, summary_table

    data = report_data(trials_from_table(trials_table(synthetic_rows()).to_pylist(), {"regularizer": {"name": "l2"}}))
    summary = summary_table(data).to_pylist()
    markdown = table2_markdown(data)
    table2 = [r for r in summary if r["table"] == "table2"]
    assert len(table2) == sum(len(row.cells) for row in data.rows)
    for r in table2:
        text = f"{100 * r['mean']:.2f}" + (f" ± {100 * r['std']:.2f}" if r["std"] is not None else "")
        if r["ci_low"] is not None:
            text += f" [{100 * r['ci_low']:.2f}, {100 * r['ci_high']:.2f}]"
        assert text in markdown
    gains = gains_markdown(data)
    for r in (r for r in summary if r["table"] == "gains"):
        row = f"| {r['dataset']} | {r['method']} | {100 * r['rate']:g}% | {100 * r['mean']:+.2f} | "
        interval = (
            "undefined (no variance)"
            if r["ci_low"] is None
            else (f"[{100 * r['ci_low']:+.2f}, {100 * r['ci_high']:+.2f}]")
        )
        row += f"{interval} | {r['n']} of {r['expected']} |"
        assert row in gains
        assert f"{r['p_sign']:.3g} ({r['p_sign_method']}) | {r['p_adjusted']:.3g} |" in gains
    assert {r["table"] for r in summary} == {"table2", "gains", "fig3d"}  # every table: test_report_edges


def test_a_fig3d_point_of_one_seed_has_no_bar_and_says_n() -> None:
    import math

    from study.reporting.sections.fig3d import fig3d_figure

    rows = [r for r in synthetic_rows() if r.params.get("seed") == 0]  # one seed: every point n = 1
    data = report_data(trials_from_table(trials_table(rows).to_pylist(), {}))
    assert all(c.interval is None for lines in data.fig3d.values() for line in lines for c in line.cells.values())
    fig = fig3d_figure(data)
    ax = fig.axes[0]
    assert {t.get_text() for t in ax.texts} == {"n=1"}
    bars = [c for c in ax.containers if hasattr(c, "has_yerr")]
    assert bars and all(
        all(math.isnan(y) for seg in bar.lines[2][0].get_segments() for _, y in seg) for bar in bars
    )  # no error bar drawn


def test_the_table_says_how_each_trial_evaluated_tsvd() -> None:
    rows = [
        TrialRow("batch", "finished", {}, {"tsvd_r": 2.0, "tsvd_per_batch": 1.0}),
        TrialRow("split", "finished", {}, {"tsvd_r": 4.0, "tsvd_per_batch": 0.0}),
        TrialRow("none", "finished", {}, {"tsvd_r": 0.0, "tsvd_per_batch": 0.0}),
    ]
    assert trials_table(rows).column("tsvd").to_pylist() == ["r=2, per batch", "r=4, whole split", None]


def test_published_numbers_beside_matching_cells() -> None:
    from study.reporting import published, references_markdown

    base = {"protocol": "paper", "data": {"dataset": "cub200"}, "model": {"backbone": "resnet50", "weights": None}}
    rows = []
    for seed in range(3):
        for bss in (False, True):
            acc = 0.50 + 0.01 * seed + (0.02 if bss else 0.0)
            params = {"data.sampling_rate": 0.15, "seed": seed, "bss.enabled": bss}
            rows.append(TrialRow(f"t{len(rows)}", "finished", params, {"best_val_acc": acc, "test_acc": acc}))
    data = report_data(trials_from_table(trials_table(rows).to_pylist(), base))
    by_method = {r.method: r for r in data.references}
    assert set(by_method) == {"l2", "l2+BSS"}
    assert by_method["l2"].published == {"paper": pytest.approx(0.4525)}  # tllib's numbers: tllib's protocol
    assert by_method["l2+BSS"].published == {"paper": pytest.approx(0.4774)}
    markdown = references_markdown(data)
    assert "| cub200 | l2 | l2 | paper | 15% | 51.00 (n=3) | 45.25 | -5.75 |" in markdown
    paper = ("paper", {"bss.k": 1, "bss.eta": 0.001})
    assert published("cub200", "resnet18", "l2", 0.15, *paper) == {}
    assert published("cub200", "resnet50", "l2", 0.2, *paper) == {}
    assert published("oxford-pets", "resnet50", "delta+BSS", 1.0, *paper) == {"paper": pytest.approx(0.9262)}
    assert published("cub200", "resnet50", "l2+BSS", 0.15, "tllib", {"bss.k": 1, "bss.eta": 0.001}) == {
        "tllib": pytest.approx(0.534)
    }
    # a synthetic study on the embedded data has nothing published beside it
    assert not report_data(trials_from_table(trials_table(synthetic_rows()).to_pylist(), {})).references


def test_trials_of_the_same_data_and_seed_that_drew_different_images_are_refused() -> None:
    from study.spec import StudyError

    table = trials_table(paired_rows()).to_pylist()
    for row in table:
        row["digest_train"] = f"d{row['param.seed']}"  # one draw per seed: pairs share it
    assert report_data(trials_from_table(table, {})).gains  # consistent digests: reported
    table[1]["digest_train"] = "changed"  # seed 0's BSS trial saw other images than its partner
    with pytest.raises(StudyError, match=r"^trials\.parquet: trials t0 and t1 have the same data settings and seed"):
        report_data(trials_from_table(table, {}))


def test_a_split_digest_names_exactly_the_images() -> None:
    import numpy as np
    import torch

    from finetune.data import Split
    from finetune.digests import split_digest

    images = torch.arange(4 * 3 * 2 * 2, dtype=torch.uint8).reshape(4, 3, 2, 2)
    labels = torch.tensor([0, 1, 0, 1])
    whole = Split(images, labels)
    assert split_digest(whole) == split_digest(Split(images.clone(), labels.clone()))
    subset = Split(images, labels[[0, 2]], index=np.array([0, 2]))
    assert split_digest(subset) == split_digest(Split(images[[0, 2]], labels[[0, 2]]))  # the same images
    assert split_digest(subset) != split_digest(Split(images, labels[[0, 2]], index=np.array([0, 1])))
    changed = images.clone()
    changed[3, 0, 0, 0] += 1
    assert split_digest(whole) != split_digest(Split(changed, labels))  # one pixel


def test_a_trials_cost_is_its_wall_time_times_what_it_held() -> None:
    from trainables.finetune_trial import share_of

    assert share_of({"CPU": 1.0, "GPU": 0.25}) == (True, 0.25)  # a quarter of a GPU
    assert share_of({"CPU": 2.0}) == (False, 2.0)  # on CPUs: CPU-seconds
    rows = [TrialRow("a", "finished", {}, {"wall_s": 10.0, "device_s": 2.5, "device_gpu": 1.0})]
    table = trials_table(rows).to_pylist()[0]
    assert (table["wall_s"], table["device_s"], table["device_gpu"]) == (10.0, 2.5, 1.0)
