"""Compute budgets: the ledger's arithmetic, the flags and fields that set it, and a real study
stopped at its budget and continued with more (real Ray, MLflow and Optuna)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from study.cli import main
from study.record import LEDGER_FILE, Guard, Ledger, parse_budget, status_line
from study.spec import StudyError
from tests.conftest import small_study, tiny_base
from tests.record import assert_every_trial_once


def test_parse_budget_names_the_flag_and_the_fix() -> None:
    assert parse_budget("gpu_hours=2") == {"gpu_hours": 2.0}
    assert parse_budget("gpu_hours=0.5, wall_hours=none") == {"gpu_hours": 0.5, "wall_hours": None}
    for bad, says in (
        ("gpu=2", "is not NAME=HOURS with NAME one of gpu_hours, wall_hours"),
        ("gpu_hours=lots", "is not a number of hours"),
        ("gpu_hours=-1", "--budget.gpu_hours: must be hours > 0"),
        ("", "give at least one limit"),
    ):
        with pytest.raises(StudyError, match=says):
            parse_budget(bad)


def test_a_bad_budget_in_a_spec_is_one_line_before_anything_runs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    spec = small_study(tmp_path / "out", "bad-budget", "demo", tiny_base(), budget={"gpu_hours": 0})
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert main(["launch", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: budget.gpu_hours: must be hours > 0 (e.g. 2.5) or null (no limit), got 0.0"
    assert not (tmp_path / "out").exists()


def test_the_guard_waits_for_every_running_trial_to_end_its_epoch(tmp_path: Path) -> None:
    guard = Guard(tmp_path, Ledger(gpu_hours=1.0))
    assert not guard.check({"a", "b", "c"})
    guard.record("a", {"device_s": 1800.0})
    assert not guard.exhausted
    guard.record("b", {"device_s": 1800.0})  # 1 hour: spent; b has just saved its epoch, a and c are mid-epoch
    assert guard.exhausted and guard.reason == "gpu_hours: 1.0000 of 1 CPU-hours spent"
    assert not guard.check({"a", "b", "c"})
    guard.record("a", {"device_s": 2000.0})
    assert not guard.check({"a", "b", "c"})
    assert guard.check({"a", "b"})  # c is no longer running (it ended, or failed): nothing to wait for
    saved = Ledger.load(tmp_path)
    assert saved is not None and saved.device_s == {"a": 2000.0, "b": 1800.0}
    # a wall-time limit is reached without any result: every running trial is waited for
    wall = Guard(tmp_path, Ledger(wall_hours=1.0, wall_s=3600.0))  # earlier drivers spent it
    assert not wall.check({"x"}) and wall.exhausted
    wall.record("x", {"device_s": 1.0})
    assert wall.check({"x"})


def test_status_line_says_spent_left_and_what_it_buys(tmp_path: Path) -> None:
    assert status_line(tmp_path) is None
    Ledger(gpu_hours=2.0, wall_s=1800.0, device_s={"a": 1800.0, "b": 1800.0}, on_gpu=True).save(tmp_path)
    line = status_line(tmp_path)
    assert line == "budget: 1.0000 of 2 GPU-hours spent, 1.0000 left, about 2 more trial(s) at 0.5000 each so far"
    (tmp_path / LEDGER_FILE).write_text("{")
    with pytest.raises(StudyError, match=r"budget\.json is damaged"):
        status_line(tmp_path)


TRIALS, EPOCHS = 3, 2


@pytest.mark.slow
def test_a_study_stops_at_its_budget_and_resumes_with_more(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out, name = tmp_path / "budgeted", "budgeted"
    base = tiny_base(optim={"epochs": EPOCHS, "steps_per_epoch": 4})
    spec = small_study(out, name, "demo", base, num_samples=TRIALS, budget={"gpu_hours": 1e-4})  # 0.36 CPU-s
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))

    assert main(["launch", str(path)]) == 0
    printed = capsys.readouterr().out
    assert "budget spent (gpu_hours: " in printed and "--budget gpu_hours=N" in printed
    assert not (out / "trials.parquet").exists()  # stopped, not ended
    ledger = Ledger.load(out)
    assert ledger is not None and ledger.device_hours >= 1e-4 and ledger.wall_s > 0
    started = [d for d in (out / "trials").iterdir() if d.is_dir()]
    assert started and len(started) < TRIALS  # no trial started once the budget was spent
    for trial in started:  # each running trial ended the epoch it was in, its state saved
        assert list(trial.glob("epoch_*.pt")), trial
    assert main(["status", str(out)]) == 0
    status = capsys.readouterr().out
    assert "budget: " in status and "of 0.0001 CPU-hours spent" in status and "interrupted" in status

    assert main(["resume", str(out), "--budget", "gpu_hours=none"]) == 0
    assert "budget now: gpu_hours None" in capsys.readouterr().out
    table = assert_every_trial_once(out, name, TRIALS, EPOCHS)
    final = json.loads((out / LEDGER_FILE).read_text())
    assert final["gpu_hours"] is None and set(final["device_s"]) == {r["trial_id"] for r in table}
    assert sum(final["device_s"].values()) == pytest.approx(sum(r["device_s"] for r in table))
