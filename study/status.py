"""`study status`: a study's progress read from its MLflow runs (safe while the study runs)."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from study.folder import StudyFolder, StudyRecord, tracking_client, trials_table_state
from study.spec import load_spec


@dataclass(frozen=True)
class StudyStatus:
    name: str
    requested: int
    counts: dict[str, int]  # MLflow run status -> number of trials
    metric: str  # the study's selection metric (best_val_acc, or test_acc for a grid of fixed settings)
    best: float | None
    best_trial: str | None
    table: str  # trials.parquet: "ok", "missing" (not finished) or "damaged"
    folder: str

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
        return f"study {self.name}: {ended}; best {self.metric.removeprefix('best_')} so far {best}; {state}"


def study_status(path: Path) -> StudyStatus:
    folder = StudyFolder(path)
    folder.require_launched()
    spec = load_spec(folder.spec_file, output_dir=folder.path)
    record = StudyRecord.load(folder)
    client = tracking_client(folder, record)
    runs = client.search_runs(
        [record.experiment_id],
        filter_string=f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{record.parent_run_id}'",
        max_results=50000,
    )
    counts = Counter(r.info.status for r in runs)
    metric = str(spec.metric)
    best_val, best_trial = None, None
    for run in sorted(runs, key=lambda r: r.info.start_time):  # ties go to the earlier trial, as in best.yaml
        value = run.data.metrics.get(metric)
        if value is not None and not math.isnan(value) and (best_val is None or value > best_val):
            best_val, best_trial = value, run.data.tags.get("tune.trial_id")
    return StudyStatus(
        spec.name,
        spec.num_samples,
        dict(counts),
        metric,
        best_val,
        best_trial,
        trials_table_state(folder),
        str(folder.path),
    )
