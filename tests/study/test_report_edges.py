"""The report's labels at the edges: ties of accuracies that are counts, intervals the data cannot
support, exact and Monte-Carlo p, each row's floor, the negative-transfer rule, published numbers
matched on their settings and protocol, duplicates by end time, and summary.parquet holding every
number of report.md. Right answers are computed here from counts over a test split, scipy and brute
force, not typed in."""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats as scipy_stats

from study.record import TrialRow, trials_table
from study.reporting import ReportOptions, confirmation_rows, report_data, stats, trials_from_table
from study.reporting.markdown import family_text, gains_markdown
from study.reporting.model import ReportData

N_TEST = 1000  # images in the test split: an accuracy is a count of them over N_TEST


def counted_rows(counts: list[tuple[int, int]], rate: float = 0.15, k: int = 1, **extra: Any) -> list[TrialRow]:
    """L2 and L2+BSS pairs, one seed each: (correct with BSS, correct without) of N_TEST test images."""
    rows = []
    for seed, (with_bss, without) in enumerate(counts):
        for bss, correct in ((True, with_bss), (False, without)):
            params = {"data.sampling_rate": rate, "seed": seed, "bss.enabled": bss, **extra}
            if bss:
                params["bss.k"] = k
            acc = correct / N_TEST
            metrics = {"best_val_acc": acc, "test_acc": acc, "n_test": N_TEST}
            rows.append(TrialRow(f"t{rate}-{k}-{seed}-{bss}", "finished", params, metrics))
    return rows


def data_of(rows: list[TrialRow], base: dict[str, Any] | None = None, **options: Any) -> ReportData:
    return report_data(trials_from_table(trials_table(rows).to_pylist(), base or {}), ReportOptions(**options))


def test_differences_equal_as_counts_are_a_tie_whatever_their_last_bits() -> None:
    counts = [(840, 800), (850, 810), (860, 820), (870, 830)]  # every pair: BSS 40 images better
    floats = [a / N_TEST - b / N_TEST for a, b in counts]
    assert len(set(floats)) > 1  # as floats the differences are not all equal
    assert scipy_stats.ttest_1samp(floats, 0.0).pvalue < 1e-20  # what an exact float comparison reported
    (gain,) = data_of(counted_rows(counts)).gains
    assert gain.p_value is None and gain.p_why == "no variance"  # the t-test is undefined, not p ~ 0
    assert gain.interval is None and gain.interval_why == "no variance"  # no [d, d] interval
    assert gain.p_sign == pytest.approx(2 / 2**4) and gain.p_sign_method == "exact"
    markdown = gains_markdown(data_of(counted_rows(counts)))
    assert "| undefined (no variance) | 4 of 4 | undefined (no variance) | 0.125 (exact) |" in markdown


def test_a_cell_of_equal_accuracies_has_no_interval_and_says_why() -> None:
    rows = [r for r in counted_rows([(840, 800), (840, 800), (840, 800)]) if r.params["bss.enabled"]]
    (row,) = data_of(rows).rows
    cell = row.cells[0.15]
    assert cell.std == 0.0 and cell.interval is None
    assert cell.text() == "84.00 ± 0.00 (n=3, no interval: no variance)"  # not "[84.00, 84.00]"


def test_the_sign_flip_test_is_exact_up_to_twenty_pairs_and_labels_its_monte_carlo_beyond() -> None:
    d = np.random.default_rng(20).normal(0.4, 1.0, size=20)
    signs = 1 - 2 * ((np.arange(2**20, dtype=np.int64)[:, None] >> np.arange(20)) & 1).astype(np.int8)
    brute = float(np.mean(np.abs(signs @ d) >= abs(d.sum()) - 1e-12))
    flip = stats.sign_flip(list(d))
    assert flip.exact and flip.method == "exact" and flip.p == pytest.approx(brute, abs=0)
    # 20 equal differences: exact 2 / 2^20 = 1.9e-6 (the old Monte Carlo said 1.0e-5)
    assert stats.sign_flip([0.01] * 20).p == pytest.approx(2 / 2**20)
    beyond = stats.sign_flip(list(np.random.default_rng(21).normal(0.4, 1.0, size=21)), seed=3)
    assert not beyond.exact and beyond.draws == stats.MONTE_CARLO
    assert beyond.method == f"Monte Carlo, 200,000 draws, s.e. {beyond.error:.1g}"
    assert beyond.error == pytest.approx(np.sqrt(beyond.p * (1 - beyond.p) / stats.MONTE_CARLO))  # type: ignore[operator]


@pytest.mark.parametrize("n", [1, 2, 5, 7])
def test_the_exact_sign_flip_matches_brute_force_with_ties(n: int) -> None:
    d = [c / N_TEST for c in np.random.default_rng(n).integers(-3, 4, size=n)]  # many ties among |sums|
    observed = abs(sum(d))
    sums = [abs(sum(s * x for s, x in zip(signs, d, strict=True))) for signs in itertools.product((1, -1), repeat=n)]
    brute = sum(s >= observed - 0.5 / N_TEST for s in sums) / 2**n
    assert stats.sign_flip(d, tie=stats.tie_of(N_TEST)).p == pytest.approx(brute)


def test_the_bootstrap_is_refused_below_ten_values_and_names_its_seed_and_resamples() -> None:
    values = [0.61, 0.64, 0.70]
    assert stats.bootstrap_interval(values) is None  # at 3 values it would be [min, max], not 95 %
    refused = stats.interval(values, "bootstrap", seed=7)
    assert refused.bounds is None and refused.why == "bootstrap below 10 values"
    assert stats.interval(values, "t").bounds == pytest.approx(
        scipy_stats.t.interval(0.95, 2, loc=np.mean(values), scale=scipy_stats.sem(values))
    )
    assert stats.interval_name("bootstrap", 7) == "95% CI (bootstrap percentile, 10,000 resamples, seed 7)"
    rows = counted_rows([(840 + i, 800 + 2 * i) for i in range(3)])
    cell = {r.label: r for r in data_of(rows, interval="bootstrap", seed=7).rows}["l2+BSS"].cells[0.15]
    assert "no interval: bootstrap below 10 values" in cell.text()


def test_a_grid_gain_below_zero_is_flagged_by_the_familys_correction_with_each_rows_floor() -> None:
    harmful = counted_rows([(800 - 10 - i, 800) for i in range(8)], rate=0.15)  # 8 seeds, BSS worse each time
    few = counted_rows([(800 - 20 - i, 800) for i in range(3)], rate=0.3)  # 3 seeds, BSS worse each time
    data = data_of(harmful + few)
    worse, three = sorted(data.gains, key=lambda g: g.rate)
    # Holm over the two gains: 2 x 2 / 2^8 for the first; the second cannot reach 0.05 with 3 pairs
    assert worse.p_adjusted == pytest.approx(2 * 2 / 2**8) and worse.verdict() == "yes"
    assert three.p_floor == pytest.approx(0.25) and three.verdict().startswith("cannot tell: with 3 pairs")
    markdown = gains_markdown(data)
    assert markdown.splitlines()[0].endswith(
        "| p (paired t, unadjusted) | p (sign-flip) | p (sign-flip) adjusted (Holm, family of 2) | negative transfer |"
    )
    assert re.search(r"\| 15% \| -1\.35 \|.*\| yes \|$", markdown, re.M)
    sentence = family_text(data.gains, data.options, lambda g: g.method)
    assert (
        "with 3 to 8 pairs a row's smallest possible p is 0.00781 to 0.25, 0.0156 to 0.25 after the correction"
        in sentence
    )
    assert "under Holm over 2 comparisons a difference can survive only with 7 pairs or more" in sentence
    # the number of pairs Holm needs: 2 / 2^n < 0.05 / m
    for m in (1, 2, 16, 48):
        n = stats.pairs_needed(m)
        assert 2 / 2**n < 0.05 / m <= 2 / 2 ** (n - 1)


def test_the_confirmation_table_names_its_unpaired_seeds_like_the_searchs() -> None:
    from study.reporting.markdown import confirmation_markdown

    rows = counted_rows([(820, 800), (830, 800), (840, 800), (850, 800)])
    rows = [r for r in rows if not (r.params["seed"] == 3 and not r.params["bss.enabled"])]  # seed 3: no partner
    trials = trials_from_table(trials_table(rows).to_pylist(), {})
    data = ReportData(rates=[0.15], confirmation=confirmation_rows([(1, {"best_val_acc": 0.9}, trials)]))
    markdown = confirmation_markdown(data)
    assert "Seeds without a pair, and cells beside a gain that average other seeds:" in markdown
    assert "- rank 1: seed 3: no trial without BSS; the BSS cell also averages seeds 3" in markdown
    assert "| cannot tell: with 3 pairs here its adjusted p cannot go below 0.25 |" in markdown


def test_duplicates_keep_the_trial_that_ended_last_not_the_highest_optuna_number() -> None:
    rows = counted_rows([(840, 800)])
    rows.append(TrialRow("merged", "finished", dict(rows[0].params), {"test_acc": 0.9, "n_test": N_TEST}))
    table = trials_table(rows).to_pylist()
    # two merged studies: the rerun is trial 0 of the second study but ended an hour after the first
    for row, number, ended in zip(table, (5, 6, 0), (1_000.0, 1_000.0, 4_600.0), strict=True):
        row["optuna_trial_number"], row["ended_at"] = number, ended
    data = report_data(trials_from_table(table, {}))
    (duplicate,) = data.duplicates
    assert duplicate.kept == "merged" and duplicate.dropped == (rows[0].trial_id,)
    assert "ended_at" in trials_table([TrialRow("a", "finished", {}, {"timestamp": 12.5})]).column_names
    assert trials_table([TrialRow("a", "finished", {}, {"timestamp": 12.5})]).column("ended_at").to_pylist() == [12.5]


def published_rows(k: int, eta: float) -> list[TrialRow]:
    rows = []
    for seed in range(3):
        for bss in (False, True):
            acc = 0.50 + 0.01 * seed + (0.02 if bss else 0.0)
            params: dict[str, Any] = {"seed": seed, "bss.enabled": bss, "bss.k": k, "bss.eta": eta}
            rows.append(TrialRow(f"{k}-{eta}-{seed}-{bss}", "finished", params, {"test_acc": acc}))
    return rows


def published_base(protocol: str) -> dict[str, Any]:
    return {
        "protocol": protocol,
        "data": {"dataset": "cub200", "sampling_rate": 0.15},
        "model": {"backbone": "resnet50", "weights": None},
    }


def test_published_numbers_match_the_rows_settings_and_protocol() -> None:
    from study.reporting import references_markdown

    grid = published_rows(1, 0.001) + published_rows(8, 0.1)
    data = data_of(grid, published_base("paper"))
    by_label = {r.label: r for r in data.references}
    # the k = 1, eta = 0.001 row of a k grid gets the paper's number; the k = 8 row does not
    assert set(by_label) == {"l2", "l2+BSS(eta=0.001, k=1)"}
    assert by_label["l2+BSS(eta=0.001, k=1)"].published == {"paper": pytest.approx(0.4774)}
    assert by_label["l2"].published == {"paper": pytest.approx(0.4525)}  # tllib's numbers are tllib's protocol
    assert "| cub200 | l2+BSS | l2+BSS(eta=0.001, k=1) | paper | 15% | 53.00 (n=3) | 47.74 | -5.26 |" in (
        references_markdown(data)
    )
    tllib = data_of(published_rows(1, 0.001), published_base("tllib")).references
    assert {r.method: r.published for r in tllib} == {
        "l2": {"tllib": pytest.approx(0.512)},
        "l2+BSS": {"tllib": pytest.approx(0.534)},
    }
    assert not data_of(published_rows(1, 0.001), published_base("custom")).references


def numbers_in(markdown: str) -> list[str]:
    """Every number in the cells of report.md's tables (rows starting with '|', not the header or rule)."""
    found: list[str] = []
    lines = markdown.splitlines()
    for i, line in enumerate(lines):
        if not line.startswith("| ") or set(line) <= set("|- ") or (i + 1 < len(lines) and "---" in lines[i + 1]):
            continue
        for cell in line.strip("|").split("|"):
            found += re.findall(r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?", cell)
    return found


def formatted(summary: list[dict[str, Any]]) -> set[str]:
    """Each value of summary.parquet as report.md may print it, and the words of its labels."""
    shown: set[str] = set()
    for row in summary:
        for _name, value in row.items():
            if isinstance(value, float):
                for scaled in (value, 100 * value):
                    shown |= {f"{scaled:.2f}", f"{scaled:+.2f}", f"{scaled:.3g}", f"{scaled:.2g}", f"{scaled:+.0f}",
                              f"{scaled:g}", f"{scaled:.4f}", f"{scaled:.1g}"}  # fmt: skip
            elif isinstance(value, int):
                shown.add(str(value))
            elif isinstance(value, str):
                shown |= set(re.findall(r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?", value))
    return {s.lstrip("+") for s in shown} | shown


def report_with_every_section(tmp_path: Path) -> tuple[str, list[dict[str, Any]]]:
    """report.md's lines and summary.parquet's rows, from the report's own sections, for data with every
    table: Table 2 and gains (cub200 under the paper's protocol: published numbers too), spectra, a
    k grid (Fig. 3(d)), Table 3 (a task sequence), a confirmation with an unpaired seed, the cost front."""
    import optuna

    from study.reporting import SECTIONS, Context, assemble, summary_table
    from study.reporting.data import cost_front
    from study.spec import spec_from_mapping
    from tests.conftest import tiny_base
    from tests.finetune.test_incremental import sequence_base
    from tests.study.test_report import sequence_rows

    rows = []
    for k in (1, 4):
        for seed in range(4):
            for bss in (False, True):
                correct = 500 + 7 * seed + (10 * k + seed * seed if bss else 0)
                params: dict[str, Any] = {"seed": seed, "bss.enabled": bss, "bss.k": k, "data.dataset": "cub200"}
                spectrum = {f"sv_min_{i}": 0.1 * i + (0.01 * k + 0.003 * seed if bss else 0.0) for i in (1, 2)}
                metrics = {"best_val_acc": correct / N_TEST, "test_acc": correct / N_TEST, "n_test": N_TEST,
                           "device_s": 100.0 * (k + seed) + (50.0 if bss else 0.0), **spectrum}  # fmt: skip
                rows.append(TrialRow(f"g{k}-{seed}-{bss}", "finished", params, metrics))
    table = trials_table(rows).to_pylist()
    base = {**published_base("paper"), "bss": {"eta": 0.001}}
    data = report_data(trials_from_table(table, base))
    sequences = report_data(trials_from_table(trials_table(sequence_rows()).to_pylist(), sequence_base()))
    data.task_columns, data.table3, data.task_gains = sequences.task_columns, sequences.table3, sequences.task_gains
    confirmed = counted_rows([(820, 800), (835, 800), (845, 811), (851, 800)])
    confirmed = [r for r in confirmed if not (r.params["seed"] == 3 and not r.params["bss.enabled"])]
    selected = {"best_val_acc": 0.9, "test_acc": 0.85, "param.bss.k": 1}
    data.confirmation = confirmation_rows([(1, selected, trials_from_table(trials_table(confirmed).to_pylist(), {}))])
    spec = spec_from_mapping(
        {"name": "all", "output_dir": str(tmp_path), "base": tiny_base(), "confirm": {"top": 1, "seeds": 4}},
        "<spec>",
        tmp_path,
    )
    cost_front(data, table, "best_val_acc")
    lines, _ = assemble(SECTIONS, Context(data, spec, table, optuna.create_study(), tmp_path))
    return "\n".join(lines), summary_table(data).to_pylist()


def test_every_number_of_every_section_of_report_md_is_in_summary_parquet(tmp_path: Path) -> None:
    markdown, summary = report_with_every_section(tmp_path)
    tables = {r["table"] for r in summary}
    every = {"table2", "gains", "fig3d", "spectra", "table3", "task_gains", "references", "confirmation"}
    assert every | {"confirmation_gains", "cost"} <= tables
    for heading in ("## Headline numbers", "## Table 2 style", "## Published numbers", "## Gain from adding BSS",
                    "## Smallest singular values", "## Table 3 style", "## Accuracy against compute"):  # fmt: skip
        assert heading in markdown, heading
    numbers = numbers_in(markdown)
    assert len(numbers) > 200
    shown = formatted(summary)
    missing = [n for n in numbers if n not in shown and n.lstrip("+-") not in shown]
    assert not missing, missing[:20]


def test_the_fig3d_doc_says_how_many_pairs_its_family_needs_and_claims_nothing_the_adjustment_removes() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "fig3d-embedded.md").read_text()
    needed = stats.pairs_needed(16)
    assert needed == 10
    assert f"A difference in this\nfamily could survive Holm only with {needed} pairs or more" in doc
    assert "6 seeds would let" not in doc  # its old claim: 6 seeds reach 0.03 unadjusted, 0.5 after Holm
    assert stats.adjust([2 / 2**6] * 16, "holm") == pytest.approx([0.5] * 16)
    for m, n in ((2, 7), (1, 6)):  # the doc's smaller families
        assert stats.pairs_needed(m) == n and f"{n} pairs for {m} comparison" in doc.replace("\n", " ")
