"""MLflow: the experiment, the study's parent run, and the checks of a tracking store.

The driver is the only writer (a single SQLite writer, no lock contention between trials); the
trials' child runs are written by :mod:`study.run.trial_logger` through :mod:`study.record.run_writer`.
"""

from __future__ import annotations

import subprocess
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT, MLFLOW_RUN_NAME

from compat import for_mlflow
from study.record.folder import first_line
from study.record.stores import Stores
from study.spec import StudyError, is_remote, is_server_database, redact

MAX_PARAM_LENGTH = 6000
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"


def git_commit() -> str | None:
    """The commit of the code that runs the study (None outside a git checkout)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and commit else None


def source_tags() -> dict[str, str]:
    """MLflow's own source tags (``mlflow.source.git.commit``, shown in the UI's run overview)."""
    commit = git_commit()
    return {MLFLOW_GIT_COMMIT: commit} if commit else {}


def open_experiment(client: MlflowClient, name: str, artifact_root: Path) -> str:
    """The experiment's id, creating it if needed: with an absolute local artifact location for a
    local store, with the server's own (proxied) artifact store for an HTTP tracking server."""
    existing = client.get_experiment_by_name(name)
    if existing is not None:
        return str(existing.experiment_id)
    location = None if is_remote(client.tracking_uri) else artifact_root.resolve().as_uri()
    # the kind tag makes MLflow 3's UI open the experiment as model training (runs, metrics, charts)
    tags = {EXPERIMENT_KIND_TAG: "custom_model_development"}
    return str(client.create_experiment(name, artifact_location=location, tags=tags))


def check_reachable(tracking_uri: str, timeout: float = 5.0) -> None:
    """Fail fast, before Ray starts, on an HTTP tracking server or a database server that does
    not answer (the message names the URI, never its password)."""
    if is_server_database(tracking_uri):
        check_database(tracking_uri, "tracking_uri", timeout)
    if not is_remote(tracking_uri):
        return
    url = tracking_uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            if response.status == 200:
                return
            problem = f"HTTP {response.status}"
    except (OSError, ValueError) as exc:
        problem = str(getattr(exc, "reason", exc))
    raise StudyError(
        f"tracking_uri: {redact(tracking_uri)} does not answer ({problem}); start the server or fix the URI"
    )


def check_database(url: str, field: str, timeout: float = 5.0) -> None:
    """Connect once to a database server (PostgreSQL, MySQL) and run ``SELECT 1``."""
    import sqlalchemy

    connect_args = {"connect_timeout": int(timeout)} if url.startswith(("postgresql", "mysql")) else {}
    engine = sqlalchemy.create_engine(url, connect_args=connect_args, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT 1"))
    except Exception as exc:
        raise StudyError(
            f"{field}: {redact(url)} does not answer ({first_line(exc)}); start the database or fix the URL"
        ) from None
    finally:
        engine.dispose()


def check_stores(stores: Stores) -> None:
    """Both stores of a study answer (before Ray starts)."""
    check_reachable(stores.tracking_uri)
    if is_server_database(stores.optuna_url):
        check_database(stores.optuna_url, "optuna_storage")


def _params(values: Mapping[str, Any]) -> list[Param]:
    return [Param(k, str(v)[:MAX_PARAM_LENGTH]) for k, v in values.items()]


def log_params(
    client: MlflowClient, run_id: str, values: Mapping[str, Any], tags: Mapping[str, str] | None = None
) -> None:
    """Params in batches of 100 (MLflow's limit); ``tags`` go with the last batch."""
    params = _params(values)
    starts = range(0, max(1, len(params)), 100)
    for start in starts:
        last = [RunTag(k, v) for k, v in (tags or {}).items()] if start == starts[-1] else []
        client.log_batch(run_id, params=params[start : start + 100], tags=last)


class StudyRun:
    """The study's parent run: every MLflow write of the driver that is not a trial's own goes
    through here (the trials' child runs through :class:`MlflowTrialLogger`)."""

    def __init__(self, client: MlflowClient, run_id: str) -> None:
        self.client, self.run_id = client, run_id

    @classmethod
    def create(
        cls,
        client: MlflowClient,
        name: str,
        study_dir: Path,
        artifact_root: Path,
        tags: Mapping[str, str],
        params: Mapping[str, Any],
        texts: Mapping[str, str],
    ) -> tuple[str, StudyRun]:
        """(experiment id, the new parent run). A parent run of this folder left by a start that
        was killed before its record was written is deleted first."""
        experiment_id = open_experiment(client, name, artifact_root)
        for stale in client.search_runs([experiment_id], filter_string=f"tags.`study.dir` = '{study_dir}'"):
            client.delete_run(stale.info.run_id)
        all_tags = {MLFLOW_RUN_NAME: f"study-{name}", "study.dir": str(study_dir), **source_tags(), **tags}
        run_id = client.create_run(experiment_id, run_name=f"study-{name}", tags=all_tags).info.run_id
        log_params(client, run_id, params)
        with for_mlflow.artifacts_of(client):
            for path, text in texts.items():
                client.log_text(run_id, text, path)
        return experiment_id, cls(client, run_id)

    def set_status(self, status: str) -> None:
        """RUNNING (resumed), KILLED (interrupted: resumable) or FINISHED / FAILED."""
        if status == RunStatus.to_string(RunStatus.RUNNING):
            self.client.update_run(self.run_id, status=status)
        else:
            self.client.set_terminated(self.run_id, status)

    def interrupted(self, trial_runs: list[str]) -> None:
        """The runs of interrupted trials and the parent run KILLED; `study resume` continues them."""
        for run_id in trial_runs:
            self.client.set_terminated(run_id, RunStatus.to_string(RunStatus.KILLED))
        self.set_status(RunStatus.to_string(RunStatus.KILLED))

    def run_status(self, run_id: str) -> str:
        return str(self.client.get_run(run_id).info.status)

    def log_metrics(self, values: Mapping[str, float], tags: Mapping[str, str] | None = None) -> None:
        metrics = [Metric(k, float(v), 0, 0) for k, v in values.items()]
        self.client.log_batch(self.run_id, metrics=metrics, tags=[RunTag(k, v) for k, v in (tags or {}).items()])

    def log_file(self, path: Path) -> None:
        with for_mlflow.artifacts_of(self.client):
            self.client.log_artifact(self.run_id, str(path))

    def finish(self, failed: int, total: int) -> None:
        """The trial counts; FAILED when every trial failed, else FINISHED."""
        self.log_metrics({"trials_failed": failed, "trials_total": total})
        self.set_status(RunStatus.to_string(RunStatus.FAILED if failed == total else RunStatus.FINISHED))
