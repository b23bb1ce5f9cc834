"""The report's unit: a section gives markdown, figures, or why there is nothing to show; a new
analysis is one module and one line in ``SECTIONS``."""

from __future__ import annotations

from pathlib import Path

import optuna

from study.reporting import SECTIONS, Context, Figures, Markdown, Nothing, ReportData, Section, assemble
from study.reporting.data import cost_front, pareto_front
from study.spec import spec_from_mapping
from tests.conftest import tiny_base


def context(tmp_path: Path, data: ReportData) -> Context:
    spec = spec_from_mapping({"name": "s", "output_dir": str(tmp_path), "base": tiny_base()}, "<spec>", tmp_path)
    return Context(data, spec, [], optuna.create_study(), tmp_path)


def test_a_new_section_is_one_entry_in_the_list(tmp_path: Path) -> None:
    def drawn(c: Context) -> Figures:
        (c.out / "mine.png").write_bytes(b"png")
        return Figures(["mine.png"], ["mine.png: drawn from nothing"])

    sections = [
        Section("## Mine", lambda c: Markdown([f"{c.data.n_trials} trials", ""])),
        Section("## Empty", lambda c: Nothing("no trial asked for it.")),
        Section("## Absent", lambda c: None),
        Section("", lambda c: Nothing("no k grid"), figure="k.png"),
        Section("", drawn),
    ]
    lines, figures = assemble(sections, context(tmp_path, ReportData(rates=[], n_trials=3)))
    assert lines == [
        "## Mine",
        "",
        "3 trials",
        "",
        "## Empty",
        "",
        "Not shown: no trial asked for it.",
        "",
        "## Figures",
        "",
        "![mine.png](mine.png)",
        "",
        "mine.png: drawn from nothing",  # a figure's notes directly under it
        "",
        "- k.png: not drawn: no k grid",
    ]
    assert figures == ["mine.png"]


def test_every_built_in_section_says_why_when_there_is_nothing(tmp_path: Path) -> None:
    c = context(tmp_path, ReportData(rates=[]))
    shown = {section.heading or section.figure or "figures": section.render(c) for section in SECTIONS}
    assert isinstance(shown["## Table 2 style"], Nothing) and "more than one seed" in shown["## Table 2 style"].reason
    assert isinstance(shown["## Gain from adding BSS (paired by seed)"], Nothing)
    assert shown["## Table 3 style: task sequences (incremental learning)"] is None  # not a task sequence
    assert isinstance(shown["fig3d.png"], Nothing) and "k grid" in shown["fig3d.png"].reason
    lines, _ = assemble(SECTIONS, c)
    assert lines[0] == "# Study s: report" and "## Figures" in lines


def test_the_cost_front_keeps_the_trials_no_cheaper_one_beats(tmp_path: Path) -> None:
    from study.reporting.sections import cost

    rows = [
        {"trial_id": "cheap", "test_acc": 0.70, "device_s": 360.0, "best_val_acc": 0.71, "param.optim.lr": 0.01},
        {"trial_id": "worse", "test_acc": 0.65, "device_s": 720.0, "best_val_acc": 0.80, "param.optim.lr": 0.1},
        {"trial_id": "best", "test_acc": 0.78, "device_s": 1800.0, "best_val_acc": 0.75, "param.optim.lr": 0.02},
        {"trial_id": "lost", "test_acc": None, "device_s": 100.0, "best_val_acc": 0.5},
    ]
    assert [r["trial_id"] for r in pareto_front(rows)] == ["cheap", "best"]
    c = context(tmp_path, ReportData(rates=[]))
    cost_front(c.data, rows, "best_val_acc")
    shown = cost.render(Context(c.data, c.spec, rows, c.optuna_study, tmp_path))
    assert isinstance(shown, Markdown)
    text = "\n".join(shown.lines)
    assert "| cheap | 0.1000 | 70.00 | optim.lr=0.01 |  |" in text and "| best | 0.5000 | 78.00 |" in text
    assert "The selected trial worse is not on the front" in text  # chosen on validation, beaten on both
    cost_front(c.data, [rows[-1]], "best_val_acc")
    assert isinstance(cost.render(Context(c.data, c.spec, [rows[-1]], c.optuna_study, tmp_path)), Nothing)
