"""`study report`: the paper's kinds of summaries, computed from the trial table, then laid out.

Data first (:func:`study.reporting.data.report_data` returns plain tables), then each section of
:data:`study.reporting.sections.SECTIONS` lays its part out (markdown, a figure, or why there is
nothing to show), like Optuna's visualization module.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from compat import for_mlflow
from study.record import (
    REPORT_DIR,
    StudyFolder,
    StudyRecord,
    confirmed,
    load_optuna_study,
    read_trials,
    rebase_artifacts,
)
from study.record import tracking_client as open_tracking
from study.reporting.data import confirmation_rows, cost_front, report_data, trials_from_table
from study.reporting.model import ReportOptions
from study.reporting.sections import SECTIONS, Context, assemble
from study.reporting.summary import summary_table
from study.spec import StudyError, load_folder_spec

SUMMARY_FILE = "summary.parquet"  # every number of report.md's tables, one row each


def write_report(path: Path, options: ReportOptions | None = None) -> list[Path]:
    """Write report.md and its figures into STUDY_DIR/report and log them to the parent MLflow run.
    Every input is checked (one line naming a missing or damaged file) before anything is written."""
    folder = StudyFolder(path)
    folder.require_launched()
    spec = load_folder_spec(folder.path)
    rows = read_trials(folder).to_pylist()
    record = StudyRecord.load(folder)
    client = open_tracking(folder, record)
    optuna_study = load_optuna_study(folder, record, spec.name)
    data = report_data(trials_from_table(rows, spec.base, folder.path), options)
    data.confirmation = confirmation_rows(
        [(c.rank, c.selected, trials_from_table(c.rows, c.spec.base, c.spec.study_dir)) for c in confirmed(spec)],
        options,
    )
    cost_front(data, rows, str(spec.metric))
    if not data.n_trials:
        raise StudyError(f"STUDY_DIR: no trial of {folder.path} ran to the end; nothing to report")
    rebase_artifacts(folder, record)
    out = folder.path / REPORT_DIR
    out.mkdir(exist_ok=True)
    lines, figures = assemble(SECTIONS, Context(data, spec, rows, optuna_study, out))
    (out / "report.md").write_text("\n".join(lines) + "\n")
    pq.write_table(summary_table(data), out / SUMMARY_FILE)
    paths = [out / "report.md", out / SUMMARY_FILE] + [out / name for name in figures]
    for written in paths:
        with for_mlflow.artifacts_of(client):
            client.log_artifact(record.parent_run_id, str(written), artifact_path="report")
    return paths
