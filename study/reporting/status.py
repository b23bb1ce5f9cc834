"""`study status`: a study's progress read from its Optuna storage (safe while the study runs)."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from compat.for_optuna import TrialSummary
from study.record import (
    TUNE_TRIAL_ATTR,
    StudyFolder,
    StudyRecord,
    check_tracking_store,
    running_driver,
    trial_summaries,
    trials_table_state,
)
from study.record import status_line as budget_status
from study.spec import load_folder_spec, saved_settings


@dataclass(frozen=True)
class StudyStatus:
    name: str
    requested: int
    counts: dict[str, int]  # FINISHED / FAILED / RUNNING / INTERRUPTED -> number of trials
    metric: str  # the study's selection metric (best_val_acc, or test_acc for a grid of fixed settings)
    best: float | None
    best_trial: str | None
    table: str  # trials.parquet: "ok", "missing" (not finished) or "damaged"
    folder: str
    budget: str | None = None  # spent and left, where the study has a budget (``study.record.budget``)

    @property
    def complete(self) -> bool:
        return self.table == "ok"

    def render(self) -> str:
        states = ", ".join(f"{k.lower()} {v}" for k, v in sorted(self.counts.items())) or "none started"
        done = sum(v for k, v in self.counts.items() if k in ("FINISHED", "FAILED"))
        best = f"{self.best:.4f} (trial {self.best_trial})" if self.best is not None else "-"
        state = {
            "ok": "complete",
            "missing": "in progress or interrupted",
            "damaged": f"trials.parquet is damaged: `study resume {self.folder}` rebuilds it",
        }[self.table]
        ended = f"{done}/{self.requested} trials ended ({states})"
        line = f"study {self.name}: {ended}; best {self.metric.removeprefix('best_')} so far {best}; {state}"
        return line + (f"\n{self.budget}" if self.budget else "")


def study_status(path: Path) -> StudyStatus:
    """The study's progress from its Optuna storage (one read of every trial, whatever the number
    of trials: the searcher's own record, written as each trial starts, reports and ends); a
    trial RUNNING there while no driver holds the study's lock was interrupted. The MLflow store is
    only checked, not read (a tracking server that is down does not stop ``status``)."""
    folder = StudyFolder(path)
    folder.require_launched()
    # the settings as launch resolved them, not checked again: no import of the fine-tuning core
    settings = saved_settings(folder.path)
    if not settings.get("metric"):  # a folder written before the metric was resolved at launch
        settings = {**settings, "metric": load_folder_spec(folder.path).metric}
    name, metric, requested = str(settings["name"]), str(settings["metric"]), int(settings["num_samples"])
    record = StudyRecord.load(folder)
    if record.stores(folder).tracking_local:
        check_tracking_store(folder, record)  # a missing or damaged mlflow.db is one line, as everywhere
    trials = trial_summaries(folder, record, name)
    live = running_driver(folder.path) is not None
    counts: Counter[str] = Counter()
    best_val, best_trial = None, None
    for trial in trials:  # in trial-number order: ties go to the earlier trial
        if TUNE_TRIAL_ATTR not in trial.user_attrs or trial.user_attrs.get("orphaned"):
            continue  # asked for but never run (a driver killed in between), or closed as an orphan
        counts[state_name(trial.state, live)] += 1
        value = trial_value(trial, metric)
        if value is not None and not math.isnan(value) and (best_val is None or value > best_val):
            best_val, best_trial = value, str(trial.user_attrs[TUNE_TRIAL_ATTR])
    return StudyStatus(
        name,
        requested,
        dict(counts),
        metric,
        best_val,
        best_trial,
        trials_table_state(folder),
        str(folder.path),
        budget_status(folder.path),
    )


def state_name(state: str, driver_alive: bool) -> str:
    """A trial's state as ``status`` counts it, from its Optuna state's name."""
    if state in ("COMPLETE", "PRUNED"):
        return "FINISHED"
    if state == "FAIL":
        return "FAILED"
    return "RUNNING" if driver_alive else "INTERRUPTED"


def trial_value(trial: TrialSummary, metric: str) -> float | None:
    """The trial's selection metric so far: its value once complete; before that (and for a trial
    stopped early) its best reported validation accuracy. A grid's test accuracy counts only from a
    trial that ran to its end (as in best.yaml)."""
    if trial.state == "COMPLETE" and trial.value is not None:
        return float(trial.value)
    if metric == "test_acc":
        return None
    return trial.best_intermediate
