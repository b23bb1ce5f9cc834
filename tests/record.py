"""What every fault test checks of a study that ended: each trial exactly once in the table, in
MLflow (one FINISHED child run, every epoch logged once) and in Optuna (COMPLETE)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pyarrow.parquet as pq
from mlflow.tracking import MlflowClient


def assert_every_trial_once(out: Path, name: str, trials: int, epochs: int) -> list[dict[str, Any]]:
    """The study folder ``out`` (its own mlflow.db and optuna.db) holds ``trials`` trials of ``epochs``
    epochs each, once each everywhere; returns the table's rows."""
    table = pq.read_table(out / "trials.parquet").to_pylist()
    assert len(table) == trials and all(r["status"] == "finished" and r["epoch"] == epochs for r in table)
    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(name)
    assert experiment is not None
    children = [r for r in client.search_runs([experiment.experiment_id]) if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == trials and all(c.info.status == "FINISHED" for c in children)
    assert {c.data.tags["tune.trial_id"] for c in children} == {r["trial_id"] for r in table}
    for child in children:  # every epoch logged once, a stopped and continued trial's included
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "val_acc")]
        assert sorted(steps) == list(range(1, epochs + 1)), (child.info.run_id, steps)
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{out / 'optuna.db'}")
    assert len(study.trials) == trials
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    return table
