"""Kill storm: SIGKILL the driver of one small study at random moments, resume each time, then
count what the record holds. ``tests/study/test_driver_exit.py`` runs a short storm in CI; the long one:

    .venv/bin/python -m tests.kill_storm --kills 20 --out /tmp/storm

Moments: a random time after the driver started (also during Ray's start-up and the study's
creation), the instant a trial's state file is being written (its ``.partial`` exists), and the
instant a trial has just saved an epoch. After each kill it checks that no process the driver
started outlives it by more than 10 s. At the end: exactly N trials in the table, N child runs,
none RUNNING, every epoch logged exactly once, N Optuna trials COMPLETE or PRUNED.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import optuna
import psutil
import pyarrow.parquet as pq
import yaml
from mlflow.tracking import MlflowClient

from tests.conftest import REPO, tiny_base

MOMENTS = ("random", "writing", "saved")
LEFTOVER_WAIT_S = 10.0


@dataclass
class StormCounts:
    kills: int = 0
    moments: dict[str, int] = field(default_factory=dict)
    leftover_processes: int = 0  # processes of a killed driver alive 10 s after it died
    leftover_names: list[str] = field(default_factory=list)  # which (moment: command line), to find why
    finished_early: bool = False
    table_rows: int = 0
    finished_trials: int = 0
    child_runs: int = 0
    running_runs: int = 0
    epochs_logged_twice: int = 0
    epochs_missing: int = 0
    optuna_complete_or_pruned: int = 0
    optuna_other: int = 0
    final_exit_code: int = -1

    def ok(self, trials: int) -> bool:
        return (
            self.leftover_processes == 0
            and self.table_rows == trials
            and self.finished_trials == trials
            and self.child_runs == trials
            and self.running_runs == 0
            and self.epochs_logged_twice == 0
            and self.epochs_missing == 0
            and self.optuna_complete_or_pruned == trials
            and self.final_exit_code == 0
        )

    def summary(self, trials: int) -> str:
        """The last line: lost (trials or epochs missing from the record), doubled (a trial, run or
        epoch recorded twice), orphans (a process outliving its driver, a run left RUNNING, an Optuna
        trial neither complete nor pruned)."""
        lost = max(0, trials - self.finished_trials) + self.epochs_missing
        doubled = (
            max(0, self.table_rows - trials)
            + max(0, self.child_runs - trials)
            + max(0, self.optuna_complete_or_pruned - trials)
            + self.epochs_logged_twice
        )
        orphans = self.leftover_processes + self.running_runs + self.optuna_other
        return f"kills {self.kills}, trials {self.finished_trials}, lost {lost}, doubled {doubled}, orphans {orphans}"


def write_spec(folder: Path, trials: int, epochs: int) -> Path:
    spec = {
        "name": "storm",
        "output_dir": str(folder / "study"),
        "search_space": "demo",
        "num_samples": trials,
        "max_concurrent": 2,
        "max_failures": 2,
        "scheduler": {"name": "fifo"},
        "ray_num_cpus": 2,
        "base": tiny_base(optim={"epochs": epochs, "steps_per_epoch": 3}),
    }
    path = folder / "storm.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def study_process(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "study", *args], cwd=REPO, env=env, stdout=out, stderr=out)


def saved_epochs(study: Path) -> set[Path]:
    return set(study.glob("trials/*/epoch_*.pt"))


def wait_for_moment(driver: subprocess.Popen[bytes], study: Path, moment: str, rng: random.Random) -> bool:
    """Wait for the kill moment; False if the driver ended first."""
    deadline = time.monotonic() + 180
    at = time.monotonic() + rng.uniform(0.5, 25.0)
    before = saved_epochs(study)
    while driver.poll() is None and time.monotonic() < deadline:
        if moment == "random" and time.monotonic() >= at:
            return True
        if moment == "writing" and any(study.glob("trials/*/.epoch_*.partial")):
            return True
        if moment == "saved" and saved_epochs(study) - before:
            return True
        time.sleep(0.002 if moment == "writing" else 0.05)
    return driver.poll() is None


def leftovers(noted: dict[int, float], names: list[str] | None = None) -> int:
    """How many of the noted processes are alive ``LEFTOVER_WAIT_S`` after the driver died (their
    command lines appended to ``names``)."""
    deadline = time.monotonic() + LEFTOVER_WAIT_S
    while True:
        alive = []
        for pid, started in noted.items():
            try:
                process = psutil.Process(pid)
                if process.create_time() == started and process.status() != psutil.STATUS_ZOMBIE:
                    alive.append(" ".join(process.cmdline())[:160])
            except psutil.Error:
                continue
        if not alive or time.monotonic() > deadline:
            if names is not None:
                names.extend(alive)
            return len(alive)
        time.sleep(0.2)


def tree(pid: int) -> dict[int, float]:
    try:
        return {c.pid: c.create_time() for c in psutil.Process(pid).children(recursive=True)}
    except psutil.Error:
        return {}


def count_record(study: Path, trials: int, epochs: int, counts: StormCounts) -> None:
    table = pq.read_table(study / "trials.parquet").to_pylist()
    counts.table_rows = len(table)
    counts.finished_trials = sum(r["status"] == "finished" and r["epoch"] == epochs for r in table)
    client = MlflowClient(f"sqlite:///{study / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("storm")
    assert experiment is not None
    children = [r for r in client.search_runs([experiment.experiment_id]) if "mlflow.parentRunId" in r.data.tags]
    counts.child_runs = len(children)
    counts.running_runs = sum(r.info.status == "RUNNING" for r in children)
    for child in children:
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "val_acc")]
        counts.epochs_logged_twice += len(steps) - len(set(steps))
        counts.epochs_missing += len(set(range(1, epochs + 1)) - set(steps))
    states = [t.state for t in optuna.load_study(study_name="storm", storage=f"sqlite:///{study / 'optuna.db'}").trials]
    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    counts.optuna_complete_or_pruned = sum(s in done for s in states)
    counts.optuna_other = len(states) - counts.optuna_complete_or_pruned


def storm(folder: Path, kills: int, trials: int = 4, epochs: int = 4, seed: int = 0) -> StormCounts:
    folder.mkdir(parents=True, exist_ok=True)
    spec = write_spec(folder, trials, epochs)
    study = folder / "study"
    log = folder / "drivers.log"
    rng = random.Random(seed)
    counts = StormCounts()
    args = ["launch", str(spec)]
    for _ in range(kills):
        moment = MOMENTS[counts.kills % len(MOMENTS)]
        driver = study_process(args, log)
        if not wait_for_moment(driver, study, moment, rng):
            counts.finished_early = True
            break
        noted = tree(driver.pid)
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        counts.kills += 1
        counts.moments[moment] = counts.moments.get(moment, 0) + 1
        names: list[str] = []
        counts.leftover_processes += leftovers(noted, names)
        counts.leftover_names += [f"{moment}: {name}" for name in names]
        args = ["resume", str(study)] if (study / "study.json").is_file() else ["launch", str(spec)]
    final = study_process(args, log)
    counts.final_exit_code = final.wait(timeout=900)
    if counts.final_exit_code == 0:
        count_record(study, trials, epochs, counts)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True, help="an empty folder for the study and the drivers' log")
    args = parser.parse_args()
    os.environ.setdefault("BSS_STUDY_CACHE", str(args.out / "cache"))
    started = time.monotonic()
    counts = storm(args.out, args.kills, args.trials, args.epochs, args.seed)
    print(json.dumps(asdict(counts), indent=2))
    verdict = "ok" if counts.ok(args.trials) else "FAILED"
    print(f"kill storm: {counts.kills} kills, {verdict}, {time.monotonic() - started:.0f} s")
    print(counts.summary(args.trials))
    sys.exit(0 if counts.ok(args.trials) else 1)


if __name__ == "__main__":
    main()
