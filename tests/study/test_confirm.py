"""Headline numbers free of selection bias: a search's top configurations on fresh seeds."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from study.record import TrialRow, trials_table
from study.reporting import ReportOptions, confirmation_rows, stats, trials_from_table
from study.spec import StudyError, load_spec
from tests.conftest import small_study, tiny_base
from tests.study.test_spec_cli import write_spec


def test_confirm_is_checked_before_launch(tmp_path: Path) -> None:
    with pytest.raises(StudyError, match=r"^confirm\.seeds: must be >= 3 \(a 95% interval needs 3 values\), got 2"):
        load_spec(write_spec(tmp_path, **{"confirm.top": 2, "confirm.seeds": 2}), tmp_path)
    with pytest.raises(StudyError, match=r"^confirm: 'fig3d-small' is a grid, which selects nothing"):
        grid = {"search_space": "fig3d-small", "num_samples": 4, "scheduler.name": "fifo", "confirm.top": 1}
        load_spec(write_spec(tmp_path, **grid), tmp_path)
    with pytest.raises(StudyError, match=r"^confirm\.top: 20 is more than the 12 trials of the search"):
        load_spec(write_spec(tmp_path, **{"confirm.top": 20}), tmp_path)
    assert load_spec(write_spec(tmp_path, **{"confirm.top": 2}), tmp_path).confirm.seeds == 5


def confirmation_trials(gains: list[float]) -> list:
    rows = []
    for seed, gain in zip(range(10, 10 + len(gains)), gains, strict=True):
        for bss in (True, False):
            acc = 0.7 + 0.01 * seed + (gain if bss else 0.0)
            params = {"seed": seed, "bss.enabled": bss}
            rows.append(TrialRow(f"c{len(rows)}", "finished", params, {"best_val_acc": acc, "test_acc": acc}))
    base = {"bss": {"enabled": True, "k": 2}}
    return trials_from_table(trials_table(rows).to_pylist(), base)


def test_negative_transfer_needs_the_familys_correction_to_reject_and_says_when_it_cannot_tell() -> None:
    selected = {"best_val_acc": 0.9, "test_acc": 0.8, "param.bss.k": 2}
    rows = confirmation_rows(
        [(1, selected, confirmation_trials([-0.02, -0.03, -0.025, -0.02, -0.03, -0.01, -0.02, -0.04])),
         (2, selected, confirmation_trials([0.01, -0.02, 0.02, -0.01, 0.0, 0.01, -0.01, 0.02])),
         (3, selected, confirmation_trials([-0.02, -0.03, -0.025, -0.02, -0.03])),
         (4, selected, confirmation_trials([-0.05, -0.06]))],
        ReportOptions(),
    )  # fmt: skip
    worse, even, five, two = rows
    assert worse.gain is not None and worse.gain.n_pairs == 8
    # 8 negative pairs: sign-flip p 2 / 2^8, Holm over the 4 gains: 4 x 0.0078 = 0.031 < 0.05
    assert worse.gain.p_sign == pytest.approx(2 / 2**8) and worse.gain.p_adjusted == pytest.approx(4 * 2 / 2**8)
    assert worse.negative_transfer == "yes"
    assert even.negative_transfer == "no"
    # 5 pairs all below zero: its interval lies below zero, but no p of 5 pairs survives Holm over 4 (4 x 1/16)
    assert five.gain is not None and five.gain.interval is not None and five.gain.interval[1] < 0
    assert five.negative_transfer == "cannot tell: with 5 pairs here its adjusted p cannot go below 0.12"
    # 2 pairs: no interval, and never a claim either way
    assert two.gain is not None and two.gain.interval is None and two.gain.interval_why == "fewer than 3 values"
    assert two.negative_transfer.startswith("cannot tell: with 2 pairs")
    assert worse.cell.n == 8 and worse.partner is not None and worse.partner.n == 8
    assert worse.selected_val == 0.9 and worse.label == "l2+BSS (k=2)"
    # the four gains are one family, each adjusted over all of them
    assert [r.gain.p_adjusted for r in rows] == pytest.approx(  # type: ignore[union-attr]
        stats.adjust([r.gain.p_sign for r in rows], "holm")  # type: ignore[union-attr]
    )


@pytest.mark.slow
def test_a_confirmed_search_reports_fresh_seed_headline_numbers(tmp_path: Path) -> None:
    from study.cli import main

    out = tmp_path / "search"
    space = {"optim.lr": {"type": "loguniform", "low": 0.001, "high": 0.05}}
    base = tiny_base(bss={"enabled": True, "k": 1}, optim={"epochs": 1})
    spec = small_study(out, "conf", space, base, confirm={"top": 1, "seeds": 3})
    path = tmp_path / "conf.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert main(["launch", str(path)]) == 0
    confirm_dir = out / "confirm" / "rank-1"
    table = pq.read_table(confirm_dir / "trials.parquet").to_pylist()
    assert len(table) == 6 and {r["status"] for r in table} == {"finished"}
    assert sorted({r["param.seed"] for r in table}) == [1, 2, 3]  # fresh: the search used seed 0 only
    assert sorted(r["param.bss.enabled"] for r in table) == [False] * 3 + [True] * 3  # each with its partner
    chosen = yaml.safe_load((confirm_dir / "spec.yaml").read_text())["base"]
    best = yaml.safe_load((out / "best.yaml").read_text())
    assert chosen["optim"]["lr"] == best["optim"]["lr"]  # the selected trial's own config
    assert main(["launch", str(path)]) == 0  # complete: nothing runs again
    assert main(["report", str(out)]) == 0
    report = (out / "report" / "report.md").read_text()
    assert "## Headline numbers: the selected configurations on fresh seeds" in report
    assert "| 1 | l2+BSS (optim.lr=" not in report  # labels use the short name
    assert "| 1 | l2+BSS (lr=" in report and "| 3 of 3 |" in report


def test_pending_counts_only_the_configurations_there_are(tmp_path: Path) -> None:
    from study.record import StudyFolder, write_table
    from study.record import confirmations as confirm

    spec = load_spec(write_spec(tmp_path, **{"confirm.top": 2}), tmp_path)
    folder = StudyFolder(spec.study_dir)
    folder.path.mkdir(parents=True)
    rows = [
        TrialRow("a", "finished", {"optim.lr": 0.01}, {"best_val_acc": 0.8, "test_acc": 0.7}, trial_dir="trials/a"),
        TrialRow("b", "failed", {"optim.lr": 0.02}, {}, error="boom", trial_dir="trials/b"),
    ]
    write_table(trials_table(rows), folder.trials_file)
    (chosen,) = confirm.candidates(spec)  # one trial ran to its end: one configuration to confirm
    assert chosen.rank == 1 and chosen.config.optim.lr == 0.01
    assert confirm.fresh_seeds(spec, 3) == [1, 2, 3]  # the search used seed 0
    assert confirm.pending(spec)
    done = StudyFolder(confirm.rank_dir(spec, 1))
    done.path.mkdir(parents=True)
    write_table(trials_table(rows[:1]), done.trials_file)
    assert not confirm.pending(spec)


@pytest.mark.slow
def test_a_driver_killed_during_the_confirmation_is_resumed_with_every_trial_once(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    from mlflow.tracking import MlflowClient

    from study.cli import main
    from tests.conftest import REPO

    out = tmp_path / "search"
    space = {"optim.lr": {"type": "loguniform", "low": 0.001, "high": 0.05}}
    base = tiny_base(bss={"enabled": True, "k": 1}, optim={"epochs": 2})
    path = tmp_path / "conf.yaml"
    path.write_text(yaml.safe_dump(small_study(out, "confkill", space, base, confirm={"top": 1, "seeds": 3})))
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    driver = subprocess.Popen(
        [sys.executable, "-m", "study", "launch", str(path)],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    confirm_dir = out / "confirm" / "rank-1"
    deadline = time.monotonic() + 300
    while not list(confirm_dir.glob("trials/*/epoch_*.pt")):
        assert driver.poll() is None, "the driver ended before its confirmation saved an epoch"
        assert time.monotonic() < deadline, "no confirmation checkpoint appeared"
        time.sleep(0.2)
    driver.send_signal(signal.SIGKILL)
    driver.wait(timeout=60)
    assert (out / "trials.parquet").is_file() and not (confirm_dir / "trials.parquet").exists()
    assert main(["resume", str(out)]) == 0  # the search is complete: its confirmation continues
    table = pq.read_table(confirm_dir / "trials.parquet").to_pylist()
    assert len(table) == 6 and all(r["status"] == "finished" and r["epoch"] == 2 for r in table)
    client = MlflowClient(f"sqlite:///{confirm_dir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("confkill-confirm-1")
    assert experiment is not None
    children = [r for r in client.search_runs([experiment.experiment_id]) if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == 6 and all(c.info.status == "FINISHED" for c in children)  # each trial once
    assert {c.data.tags["tune.trial_id"] for c in children} == {r["trial_id"] for r in table}
    assert main(["report", str(out)]) == 0
    assert "| 3 of 3 |" in (out / "report" / "report.md").read_text()
