"""`study sync`: bring MLflow up to date with what the study folder holds.

A study whose tracking server did not answer kept what MLflow missed in ``mlflow-pending.jsonl``;
this replays it (each record once: :mod:`study.record.run_writer`), then, for a finished study, checks
every trial of ``trials.parquet`` against its run: a run left RUNNING is closed with the trial's
status, a trial whose run id the table lacks gets it, and the parent run gets its final status.
``study resume`` does the same first when it finds kept records.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import IO

from mlflow.entities import RunStatus

from study.record import StudyRecord, bound, check_reachable, open_study, read_trials, trials_table_state, write_table
from study.run.trial_logger import behind_message, trial_logger
from study.spec import StudyError, StudySpec


@dataclass(frozen=True)
class SyncOutcome:
    replayed: int
    closed: int  # runs left open that now have their trial's final status
    filled: int  # trials whose run id the table now has

    def render(self) -> str:
        return (
            f"MLflow is up to date: {self.replayed} kept record(s) replayed, {self.closed} run(s) closed, "
            f"{self.filled} run id(s) added to trials.parquet"
        )


def replay_pending(spec: StudySpec, record: StudyRecord, out: IO[str] | None = None) -> int:
    """Replay the study's kept records (the study must be bound); raise naming the URI if MLflow
    still does not take them all. Returns how many were replayed."""

    logger = trial_logger(spec, record)
    logger.out = out
    count = logger.pending
    if not logger.drain(0.0):
        raise StudyError(behind_message(logger, logger.bound.stores.shown()))
    return count


def sync_study(path: Path, out: IO[str] | None = None) -> SyncOutcome:
    import pyarrow as pa

    opened = open_study(path)
    folder, spec, record, stores = opened.folder, opened.spec, opened.record, opened.stores
    check_reachable(stores.tracking_uri)
    with bound(record.parent_run_id, folder.path, stores):
        replayed = replay_pending(spec, record, out)
        if trials_table_state(folder) != "ok":
            return SyncOutcome(replayed, 0, 0)
        logger = trial_logger(spec, record)
        table = read_trials(folder)
        rows = table.to_pylist()
        runs, open_runs = logger.child_runs(), logger.open_runs()
        closed = 0
        for row in rows:
            if row["trial_id"] in open_runs:
                failed = row["status"] == "failed"
                logger.close(row["trial_id"], failed, int(row.get("epoch") or 0), str(row.get("error") or ""))
                closed += 1
        filled = [r for r in rows if r["mlflow_run_id"] is None and r["trial_id"] in runs]
        if filled:
            ids = [r["mlflow_run_id"] or runs.get(r["trial_id"]) for r in rows]
            index = table.column_names.index("mlflow_run_id")
            write_table(table.set_column(index, "mlflow_run_id", pa.array(ids, pa.string())), folder.trials_file)
        parent = logger.client.get_run(record.parent_run_id).info.status
        if parent not in ("FINISHED", "FAILED"):
            failed = sum(1 for r in rows if r["status"] == "failed")
            logger.parent_file(folder.relative(folder.trials_file))
            logger.parent_metrics({"trials_failed": failed, "trials_total": len(rows)})
            done = RunStatus.FAILED if rows and failed == len(rows) else RunStatus.FINISHED
            logger.parent_status(RunStatus.to_string(done))
        logger.remove_orphans({str(r["trial_id"]) for r in rows})
        if not logger.drain(0.0):
            raise StudyError(behind_message(logger, stores.shown()))
    return SyncOutcome(replayed, closed, len(filled))
