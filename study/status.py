"""`study status`: a study's progress read from its MLflow runs (safe while the study runs)."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from study.driver import TRIALS_FILE, StudyRecord, load_study_spec


@dataclass(frozen=True)
class StudyStatus:
    name: str
    requested: int
    counts: dict[str, int]  # MLflow run status -> number of trials
    best_val_acc: float | None
    best_trial: str | None
    complete: bool

    def render(self) -> str:
        states = ", ".join(f"{k.lower()} {v}" for k, v in sorted(self.counts.items())) or "none started"
        done = sum(v for k, v in self.counts.items() if k in ("FINISHED", "FAILED"))
        best = f"{self.best_val_acc:.4f} (trial {self.best_trial})" if self.best_val_acc is not None else "-"
        state = "complete" if self.complete else "in progress or interrupted"
        return (f"study {self.name}: {done}/{self.requested} trials ended ({states}); "
                f"best val_acc so far {best}; {state}")  # fmt: skip


def study_status(folder: Path) -> StudyStatus:
    spec = load_study_spec(folder)
    record = StudyRecord.load(folder)
    client = MlflowClient(record.tracking_uri)
    runs = client.search_runs(
        [record.experiment_id], filter_string=f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{record.parent_run_id}'",
        max_results=50000,
    )  # fmt: skip
    counts = Counter(r.info.status for r in runs)
    best_val, best_trial = None, None
    for run in runs:
        value = run.data.metrics.get("best_val_acc")
        if value is not None and not math.isnan(value) and (best_val is None or value > best_val):
            best_val, best_trial = value, run.data.tags.get("tune.trial_id")
    return StudyStatus(
        spec.name, spec.num_samples, dict(counts), best_val, best_trial, (folder / TRIALS_FILE).is_file()
    )
