"""A study's Optuna trials as ``study status`` shows them, read directly from the storage's tables
(:func:`compat.for_optuna.read_summaries`): SQLite with the standard library, PostgreSQL with psycopg,
neither through Optuna's RDB storage (whose ORM and migrations take over a second to import). Any
other database goes through Optuna itself."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from compat import CompatError, for_optuna
from study.record.attrs import UID_ATTR
from study.record.folder import StudyFolder, StudyRecord, check_sqlite, first_line
from study.spec import StudyError, scheme, sqlite_path

OPTUNA_FIX = "restore it from a backup (trials.parquet and MLflow keep every trial's parameters and results)"


def _postgres(url: str) -> Any:
    """A psycopg connection from a SQLAlchemy-style URL (``postgresql[+driver]://user[:pw]@host:port/db``);
    a password not in the URL comes from PGPASSWORD or ~/.pgpass, as libpq reads them."""
    import psycopg

    parts = urlsplit(url)
    options: dict[str, Any] = {"dbname": parts.path.lstrip("/"), "connect_timeout": 10}
    for key, value in (("user", parts.username), ("password", parts.password), ("host", parts.hostname)):
        if value:
            options[key] = unquote(value)
    if parts.port:
        options["port"] = parts.port
    return psycopg.connect(autocommit=True, **options)


def trial_summaries(folder: StudyFolder, record: StudyRecord, study_name: str) -> list[for_optuna.TrialSummary]:
    """The study's trials in number order; one line when its storage is missing, damaged, does not
    answer, holds no study of that name, or holds another folder's study of that name."""
    stores = record.stores(folder)
    where = folder.optuna_file if stores.optuna_local else stores.shown("optuna")
    url = stores.optuna_url
    path: Path | None = folder.optuna_file if stores.optuna_local else sqlite_path(url)
    try:
        if path is not None:
            check_sqlite(path, "trials", "Optuna database", OPTUNA_FIX)
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
                found = for_optuna.read_summaries(connection, study_name)
        elif scheme(url) == "postgresql":
            with _postgres(url) as connection:
                found = for_optuna.read_summaries(connection, study_name, placeholder="%s")
        else:
            return _through_optuna(folder, record, study_name)
    except (StudyError, CompatError):
        raise
    except Exception as exc:  # a database server that does not answer
        raise StudyError(
            f"optuna_storage: {where} cannot be read ({first_line(exc)}); start it or fix the URL"
        ) from None
    if found is None:
        raise StudyError(f"STUDY_DIR: {where} holds no study named {study_name!r}")
    study_attrs, summaries = found
    uid = study_attrs.get(UID_ATTR)
    if record.uid and uid is not None and uid != record.uid:
        raise StudyError(
            f"optuna_storage: the study {study_name!r} in {where} belongs to another study folder "
            f"({study_attrs.get('bss_study.dir', '?')}); this folder's record names another"
        )
    return summaries


def _through_optuna(folder: StudyFolder, record: StudyRecord, study_name: str) -> list[for_optuna.TrialSummary]:
    from study.record.folder import load_optuna_study

    study = load_optuna_study(folder, record, study_name)
    return [
        for_optuna.TrialSummary(
            t.number,
            t.state.name,
            t.values[0] if t.values else None,
            max(t.intermediate_values.values()) if t.intermediate_values else None,
            dict(t.user_attrs),
        )
        for t in study.get_trials(deepcopy=False)
    ]
