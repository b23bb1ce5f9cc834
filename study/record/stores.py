"""One resolution of a study's stores (its MLflow tracking store and Optuna storage): the spec's
URIs, then ``MLFLOW_TRACKING_URI``, then the study folder's own files; recorded in ``study.json``
without credentials, opened by every command from there."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from study.spec import (
    OPTUNA_SCHEMES,
    TRACKING_SCHEMES,
    StudyError,
    absolute,
    check_driver,
    check_uri,
    expand,
    has_password,
    is_remote,
    redact,
    sqlite_path,
)

MLFLOW_FILE = "mlflow.db"

OPTUNA_FILE = "optuna.db"


@dataclass(frozen=True)
class Stores:
    """The live stores of one study for one command: URIs to connect to (credentials included
    where they come from the environment: never print these, print :meth:`shown`)."""

    tracking_uri: str
    optuna_url: str
    tracking_local: bool  # the folder's own mlflow.db
    optuna_local: bool  # the folder's own optuna.db

    @property
    def tracking_remote(self) -> bool:
        return is_remote(self.tracking_uri)

    def shown(self, which: str = "tracking") -> str:
        return redact(self.tracking_uri if which == "tracking" else self.optuna_url)

    def optuna_storage(self) -> object:
        """Optuna's storage on ``optuna_url``: a database server reconnects after a restart
        (``pool_pre_ping``) and a call that failed on a lost connection is retried."""
        from study.record.optuna_storage import open_storage

        return open_storage(self.optuna_url, retry=not self.optuna_local)


@dataclass(frozen=True)
class StoreChoice:
    """What ``study.json`` records of the stores: None for the folder's own file, else the URI as
    given (absolute for SQLite; ``${VAR}`` for one from the environment; never a password)."""

    tracking: str | None = None
    optuna: str | None = None

    def open(self, folder: Path, environ: Mapping[str, str] | None = None) -> Stores:
        tracking = expand(self.tracking, "tracking_uri", environ) if self.tracking else None
        optuna = expand(self.optuna, "optuna_storage", environ) if self.optuna else None
        return Stores(
            tracking_uri=tracking or f"sqlite:///{folder / MLFLOW_FILE}",
            optuna_url=optuna or f"sqlite:///{folder / OPTUNA_FILE}",
            tracking_local=tracking is None,
            optuna_local=optuna is None,
        )


def choose(
    tracking_uri: str | None,
    optuna_storage: str | None,
    folder: Path,
    cwd: Path,
    environ: Mapping[str, str] | None = None,
) -> StoreChoice:
    """The stores of a new study: the spec's values, then ``MLFLOW_TRACKING_URI``, then the folder's
    own files. Relative SQLite paths are resolved against ``cwd``; one that names the folder's own
    file is the folder default (so it moves with the folder). Raises StudyError naming the field."""
    env = os.environ if environ is None else environ
    check_uri(tracking_uri, "tracking_uri", TRACKING_SCHEMES, "an MLflow tracking URI")
    check_uri(optuna_storage, "optuna_storage", OPTUNA_SCHEMES, "an Optuna storage URL")
    tracking = tracking_uri
    if tracking is None and env.get("MLFLOW_TRACKING_URI", "").strip():
        from_env = env["MLFLOW_TRACKING_URI"].strip()
        try:
            check_uri(from_env, "MLFLOW_TRACKING_URI", TRACKING_SCHEMES, "an MLflow tracking URI")
        except StudyError as exc:
            message = str(exc).split(": ", 1)[1]
            if not has_password(from_env):
                raise StudyError(f"MLFLOW_TRACKING_URI (environment): {message}") from None
            check_driver(from_env, "MLFLOW_TRACKING_URI (environment)")
            tracking = "${MLFLOW_TRACKING_URI}"  # the password stays in the environment
        else:
            tracking = from_env
    return StoreChoice(
        _folder_or(tracking, folder / MLFLOW_FILE, cwd), _folder_or(optuna_storage, folder / OPTUNA_FILE, cwd)
    )


def _folder_or(uri: str | None, own: Path, cwd: Path) -> str | None:
    if uri is None:
        return None
    uri = absolute(uri, cwd)
    path = sqlite_path(uri)
    if path is not None and path.resolve() == own.resolve():
        return None
    return uri
