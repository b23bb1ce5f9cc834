"""A study folder: its layout, its record, and the checked ways to open what it holds.

Every path of a study comes from the folder a command is given, never from where the study was
first launched: a folder can be moved, copied, or mounted elsewhere on another node. Nothing
here imports Ray; opening a file never creates it (a missing or damaged file is a one-line
:class:`StudyError` naming it and what to do).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import compat
from compat import for_mlflow
from study.record.attrs import UID_ATTR
from study.record.stores import StoreChoice, Stores
from study.spec import SPEC_FILE, StudyError, StudySpec, load_folder_spec, redact_text, sqlite_path
from trainables.layout import TRIALS_DIR
from trainables.storage import is_remote

if TYPE_CHECKING:
    import pyarrow as pa
    from mlflow.tracking import MlflowClient

    from trainables.trial_store import TrialStore

RECORD_FILE = "study.json"
TRIALS_FILE = "trials.parquet"
BEST_FILE = "best.yaml"
TUNE_DIR = "tune"
OPTUNA_FILE = "optuna.db"
MLFLOW_FILE = "mlflow.db"
ARTIFACTS_DIR = "mlartifacts"
REPORT_DIR = "report"
EXPORT_DIR = "export"


class Entry:
    """A file or folder of the study folder, by its name: ``folder.spec_file`` is ``folder.path / "spec.yaml"``."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, folder: StudyFolder, owner: type | None = None) -> Path:
        return folder.path / self.name


@dataclass(frozen=True)
class StudyFolder:
    """The files of one study, all below ``path``."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path).resolve())

    spec_file = Entry(SPEC_FILE)
    record_file = Entry(RECORD_FILE)
    trials_file = Entry(TRIALS_FILE)
    best_file = Entry(BEST_FILE)
    tune_dir = Entry(TUNE_DIR)
    optuna_file = Entry(OPTUNA_FILE)
    mlflow_file = Entry(MLFLOW_FILE)
    artifacts_dir = Entry(ARTIFACTS_DIR)
    trials_root = Entry(TRIALS_DIR)

    @property
    def optuna_url(self) -> str:
        return f"sqlite:///{self.optuna_file}"

    @property
    def storage(self) -> str | None:
        """The object-store URI the study's trials live under (study.json's ``storage``), or None:
        in this folder."""
        try:
            value = json.loads(self.record_file.read_text()).get("storage")
        except (OSError, ValueError, AttributeError):
            return None
        return str(value) if value else None

    def trials_location(self) -> str:
        """Where the trials' folders are: ``<storage>/trials``, else this folder's ``trials/``."""
        storage = self.storage
        return f"{storage}/{TRIALS_DIR}" if storage else str(self.trials_root)

    def trial_stores(self) -> Callable[[str], TrialStore]:
        """The store of each trial by its id, ``study.json`` read once for all of them."""
        from trainables.trial_store import TrialStore

        root = self.storage or self.path
        return lambda trial_id: TrialStore.of(root, trial_id)

    def trial_path(self, trial_dir: str) -> str | Path:
        """A ``trial_dir`` of the result table as a place to read: an object-store URI as it is,
        a folder relative to this one made absolute (a moved folder finds its own)."""
        return trial_dir if is_remote(trial_dir) else self.path / trial_dir

    def relative(self, path: Path) -> str:
        return str(path.relative_to(self.path))

    def is_launched(self) -> bool:
        return self.spec_file.is_file() and self.record_file.is_file()

    def require_launched(self) -> None:
        if not self.is_launched():
            raise StudyError(
                f"STUDY_DIR: {self.path} holds no launched study (no {SPEC_FILE} / {RECORD_FILE}); "
                "pass the output_dir of a study"
            )


@dataclass(frozen=True)
class StudyRecord:
    """What a study folder needs to be continued: where its runs and trials live.

    ``tracking_uri`` / ``optuna_storage`` are None for the folder's own ``mlflow.db`` /
    ``optuna.db`` (the default), so the record holds no absolute path; any other store is kept as
    :func:`study.record.stores.choose` decided it at launch (never with a password). ``uid`` tells this
    study from another of the same name in a shared database."""

    tracking_uri: str | None
    experiment_id: str
    parent_run_id: str
    optuna_storage: str | None = None
    uid: str = ""
    # where the trials' state, config and weights and Tune's experiment state live when not in the
    # folder: the spec's ``storage`` URI with a prefix of this study's own (name and uid)
    storage: str | None = None

    @property
    def choice(self) -> StoreChoice:
        return StoreChoice(self.tracking_uri, self.optuna_storage)

    def stores(self, folder: StudyFolder) -> Stores:
        """The study's live stores: the one place every command gets its URIs from."""
        return self.choice.open(folder.path)

    def save(self, folder: StudyFolder) -> None:
        tmp = folder.path / f"{RECORD_FILE}.partial"
        tmp.write_text(json.dumps(self.__dict__, indent=2))
        tmp.replace(folder.record_file)

    @classmethod
    def load(cls, folder: StudyFolder) -> StudyRecord:
        try:
            values = json.loads(folder.record_file.read_text())
            record = cls(**values)
        except FileNotFoundError:
            raise StudyError(f"STUDY_DIR: {folder.record_file} is missing; pass the output_dir of a study") from None
        except (ValueError, TypeError):
            raise StudyError(
                f"STUDY_DIR: {folder.record_file} is damaged; restore it from a backup of the study folder"
            ) from None
        legacy = "optuna_storage" not in values  # written before stores were chosen in one place
        if legacy and record.tracking_uri is not None and record.tracking_uri.startswith("sqlite:"):
            record = cls(None, record.experiment_id, record.parent_run_id)  # a folder-local store (older records)
        return record


def check_sqlite(path: Path, table: str, what: str, fix: str) -> None:
    """One line naming ``path`` if it is missing or is not a database with ``table``."""
    if not path.is_file():
        raise StudyError(f"STUDY_DIR: {path} is missing; {fix}")
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
            connection.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchall()
    except sqlite3.Error as exc:
        raise StudyError(f"STUDY_DIR: {path} is not a readable {what} ({exc}); {fix}") from None


def check_tracking_store(folder: StudyFolder, record: StudyRecord) -> None:
    """A folder-local MLflow database must exist and be one, an external SQLite file must exist
    (MLflow would create an empty one): one line otherwise. Reads the file with sqlite3 only."""
    stores = record.stores(folder)
    if stores.tracking_local:
        check_sqlite(folder.mlflow_file, "runs", "MLflow database", "restore it from a backup of the study folder")
    elif (path := sqlite_path(stores.tracking_uri)) is not None:
        check_sqlite(path, "runs", "MLflow database", "restore it, or point the study at its database")


def tracking_client(folder: StudyFolder, record: StudyRecord) -> MlflowClient:
    """The study's MLflow client, its store checked first (:func:`check_tracking_store`)."""
    from mlflow.tracking import MlflowClient

    check_tracking_store(folder, record)
    return MlflowClient(record.stores(folder).tracking_uri)


def rebase_artifacts(folder: StudyFolder, record: StudyRecord) -> None:
    """Point the experiment's and runs' artifact locations at this folder's ``mlartifacts``.

    MLflow stores them as absolute URIs; in a copied or moved study they still name the original
    folder, so logging an artifact would write into it. Only a folder-local store is rebased
    (a tracking server owns its artifact store). MLflow has no API to change them, so this
    updates its two columns in the study's own SQLite file (tests/study/test_study_folder.py fails
    loudly if MLflow's schema changes)."""
    if record.tracking_uri is not None:
        return
    target = folder.artifacts_dir.as_uri()
    with sqlite3.connect(folder.mlflow_file) as connection:
        row = connection.execute(
            "SELECT artifact_location FROM experiments WHERE experiment_id = ?", (int(record.experiment_id),)
        ).fetchone()
        if row is None or row[0] == target:
            return
        old = row[0]
        connection.execute(
            "UPDATE experiments SET artifact_location = ? WHERE experiment_id = ?", (target, int(record.experiment_id))
        )
        connection.execute(
            "UPDATE runs SET artifact_uri = ? || substr(artifact_uri, ?) WHERE experiment_id = ? AND "
            "substr(artifact_uri, 1, ?) = ?",
            (target, len(old) + 1, int(record.experiment_id), len(old), old),
        )
        run_ids = [
            r[0]
            for r in connection.execute(
                "SELECT run_uuid FROM runs WHERE experiment_id = ?", (int(record.experiment_id),)
            )
        ]
    forget_artifact_locations(run_ids)


def forget_artifact_locations(run_ids: list[str]) -> None:
    """MLflow caches each run's artifact repository for the life of the process (by run id): drop
    the relocated runs' entries, so a process that used the original folder logs into the copy."""
    with contextlib.suppress(compat.CompatError):  # gone in a later MLflow: nothing cached there to drop
        for_mlflow.forget_artifact_repos(run_ids)


def read_trials(folder: StudyFolder) -> pa.Table:
    """The finished study's table; a missing file says how to finish, a damaged one how to rebuild."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not folder.trials_file.is_file():
        raise StudyError(
            f"STUDY_DIR: {folder.path} has no {TRIALS_FILE} yet; finish it first (`study resume {folder.path}`)"
        )
    try:
        return pq.read_table(folder.trials_file)
    except (pa.ArrowException, OSError) as exc:
        raise StudyError(
            f"STUDY_DIR: {folder.trials_file} is damaged ({str(exc).splitlines()[0]}); "
            f"`study resume {folder.path}` rebuilds it from Tune's and MLflow's record of the trials"
        ) from None


def trials_table_state(folder: StudyFolder) -> str:
    """``missing``, ``damaged`` or ``ok``: what ``trials.parquet`` is (it marks a finished study)."""
    if not folder.trials_file.is_file():
        return "missing"
    try:
        read_trials(folder)
    except StudyError:
        return "damaged"
    return "ok"


def load_optuna_study(folder: StudyFolder, record: StudyRecord, study_name: str) -> Any:
    """The study's Optuna study, without creating ``optuna.db`` when it is missing; on a shared
    database, the one this folder created (not another study's of the same name)."""
    import optuna

    stores = record.stores(folder)
    fix = "restore it from a backup (trials.parquet and MLflow keep every trial's parameters and results)"
    path = folder.optuna_file if stores.optuna_local else sqlite_path(stores.optuna_url)
    if path is not None:
        check_sqlite(path, "trials", "Optuna database", fix)
    where = folder.optuna_file if stores.optuna_local else stores.shown("optuna")
    try:
        study = optuna.load_study(study_name=study_name, storage=stores.optuna_storage())  # type: ignore[arg-type]
    except KeyError:
        raise StudyError(f"STUDY_DIR: {where} holds no study named {study_name!r}") from None
    except Exception as exc:  # a database server that does not answer
        raise StudyError(
            f"optuna_storage: {where} cannot be read ({first_line(exc)}); start it or fix the URL"
        ) from None
    uid = study.user_attrs.get(UID_ATTR)
    if record.uid and uid is not None and uid != record.uid:
        raise StudyError(
            f"optuna_storage: the study {study_name!r} in {where} belongs to another study folder "
            f"({study.user_attrs.get('bss_study.dir', '?')}); this folder's record names another"
        )
    return study


def first_line(exc: BaseException) -> str:
    """An exception's first line, any password in it redacted."""
    text = str(exc).strip().splitlines()
    return redact_text(text[0] if text else type(exc).__name__)


def open_study(path: Path) -> OpenStudy:
    """A launched study folder opened for a command: its spec, record and live stores."""

    folder = StudyFolder(path)
    folder.require_launched()
    spec = load_folder_spec(folder.path)
    record = StudyRecord.load(folder)
    return OpenStudy(folder, spec, record, record.stores(folder))


def open_record(path: Path) -> OpenRecord:
    """A launched study folder's record and stores, its spec not loaded (no check of the spec, so
    none of the fine-tuning core's imports): what ``ui`` and ``dashboard`` need."""
    folder = StudyFolder(path)
    folder.require_launched()
    record = StudyRecord.load(folder)
    return OpenRecord(folder, record, record.stores(folder))


@dataclass(frozen=True)
class OpenRecord:
    folder: StudyFolder
    record: StudyRecord
    stores: Stores


@dataclass(frozen=True)
class OpenStudy:
    folder: StudyFolder
    spec: Any  # study.spec.load.StudySpec (not imported here: the spec module imports the core)
    record: StudyRecord
    stores: Stores


def launched_spec(path: Path) -> StudySpec:
    """The spec of the study folder at ``path`` (one line if it is no launched study folder)."""
    folder = StudyFolder(path)
    folder.require_launched()
    return load_folder_spec(folder.path)


def ranked_rows(folder: StudyFolder, metric: str) -> list[dict[str, Any]]:
    """The trials of a finished study, best first by the study's selection metric."""
    from study.record.results import counts_for

    rows = read_trials(folder).to_pylist()
    ranked = [r for r in rows if r[metric] is not None and counts_for(metric, r["status"], r["early_stopped"])]
    return sorted(ranked, key=lambda r: r[metric], reverse=True)
